export type { MinerControl, Platform, PlatformDescription, QuarantineOptions } from "./types.js";
export { PlatformError } from "./paths.js";
export { SimulatedBoard, createSimulatedBoard, SIMULATED_MEASURE_PATHS, type NetworkPolicy, type SimulatedBoardOptions } from "./simulated.js";
export { UBootSlots, UBOOT_ENV, SLOT_CMDLINE_PARAM, type SlotDevice, type UBootSlotsOptions } from "./uboot.js";
export { AntminerPlatform, NodeCommandExecutor, FIREWALL_CHAINS, type AntminerOptions, type CommandExecutor, type CommandResult } from "./antminer.js";
import { join } from "node:path";
import type { AgentConfig } from "../config/index.js";
import { HostResolver } from "../guards/net.js";
import { AntminerPlatform } from "./antminer.js";
import { SimulatedBoard } from "./simulated.js";
import { UBootSlots, type SlotDevice } from "./uboot.js";
import type { Platform } from "./types.js";

/** Builds the configured platform: "simulated" (a board in a folder) or "antminer" (a real board; with `slots`, A/B on U-Boot). */
export function createPlatform(config: Pick<AgentConfig, "platform"> & Partial<Pick<AgentConfig, "stateDir">>): Platform {
  switch (config.platform.kind) {
    case "simulated":
      return new SimulatedBoard(config.platform.root);
    case "antminer": {
      const { root, initScripts, upgradeCgiPaths, iptables, ip6tables, slots } = config.platform;
      return new AntminerPlatform({
        root,
        initScripts,
        upgradeCgiPaths,
        iptables,
        ip6tables,
        resolver: new HostResolver(),
        ...(config.stateDir ? { stateDir: config.stateDir } : {}),
        ...(slots ? { slots: ubootSlots(root, slots) } : {}),
      });
    }
  }
}

type AntminerSlotsConfig = NonNullable<Extract<AgentConfig["platform"], { kind: "antminer" }>["slots"]>;

/** UBootSlots from the agent config; device paths (validated absolute, no '..') resolve under the board root. */
function ubootSlots(root: string, config: AntminerSlotsConfig): UBootSlots {
  const under = (devicePath: string) => (root === "/" ? devicePath : join(root, devicePath));
  const device = (d: SlotDevice): SlotDevice =>
    d.kind === "block" ? { ...d, path: under(d.path) } : d.kind === "mtd" ? { kind: "mtd", device: under(d.device) } : { kind: "ubi", volume: under(d.volume) };
  return new UBootSlots({
    slots: { a: device(config.a), b: device(config.b) },
    fwEnvConfig: under(config.fwEnvConfig),
    cmdlineFile: under("/proc/cmdline"),
    bootlimit: config.bootlimit,
    rebootCommand: config.rebootCommand,
    ...(config.healthCommand ? { healthCommand: config.healthCommand } : {}),
  });
}
