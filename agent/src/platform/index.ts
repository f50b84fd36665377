export type { MinerControl, Platform, PlatformDescription, QuarantineOptions } from "./types.js";
export { SimulatedBoard, createSimulatedBoard, PlatformError, SIMULATED_MEASURE_PATHS, type NetworkPolicy, type SimulatedBoardOptions } from "./simulated.js";
export { RecordingPlatform, type PlatformCall } from "./fake.js";
export { AntminerPlatform, NodeCommandExecutor, RecordingExecutor, FIREWALL_CHAINS, type AntminerOptions, type CommandExecutor, type CommandResult } from "./antminer.js";
import type { AgentConfig } from "../config/index.js";
import { HostResolver } from "../guards/net.js";
import { AntminerPlatform } from "./antminer.js";
import { SimulatedBoard } from "./simulated.js";
import type { Platform } from "./types.js";

/** Builds the configured platform. Only "simulated" exists so far; real boards add kinds here. */
export function createPlatform(config: Pick<AgentConfig, "platform"> & Partial<Pick<AgentConfig, "stateDir">>): Platform {
  switch (config.platform.kind) {
    case "simulated":
      return new SimulatedBoard(config.platform.root);
    case "antminer": {
      const { root, initScripts, upgradeCgiPaths, iptables, ip6tables } = config.platform;
      return new AntminerPlatform({ root, initScripts, upgradeCgiPaths, iptables, ip6tables, resolver: new HostResolver(), ...(config.stateDir ? { stateDir: config.stateDir } : {}) });
    }
  }
}
