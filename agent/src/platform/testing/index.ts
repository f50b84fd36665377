/**
 * Test doubles for the Platform interface (only tests import this folder; the agent binary never does):
 * the recording fake Platform, a recording command executor, a recorded Antminer board in a temp dir,
 * the U-Boot board emulation, and the contract suite every Platform implementation runs.
 */
export { RecordingPlatform, type PlatformCall } from "./recording-platform.js";
export { RecordingExecutor } from "./recording-executor.js";
export { antminerTestBoard, type AntminerBoardState, type AntminerTestBoard, type AntminerTestBoardOptions } from "./antminer-board.js";
export { platformContract, slotsContract, type ObservedBoard, type PlatformUnderTest, type SlotsUnderTest } from "./contract.js";
export { UBootEmulator, ubootEmulatorSkipReason } from "./uboot.js";
