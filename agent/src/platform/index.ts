export type { Platform, PlatformDescription, QuarantineOptions } from "./types.js";
export { SimulatedBoard, createSimulatedBoard, PlatformError, SIMULATED_MEASURE_PATHS, type NetworkPolicy, type SimulatedBoardOptions } from "./simulated.js";
export { RecordingPlatform, type PlatformCall } from "./fake.js";
import type { AgentConfig } from "../config/index.js";
import { SimulatedBoard } from "./simulated.js";
import type { Platform } from "./types.js";

/** Builds the configured platform. Only "simulated" exists so far; real boards add kinds here. */
export function createPlatform(config: Pick<AgentConfig, "platform">): Platform {
  switch (config.platform.kind) {
    case "simulated":
      return new SimulatedBoard(config.platform.root);
  }
}
