/**
 * The rollout state machine as data (STYLE 6): an event union, a transition table, illegal transitions refused.
 * The mermaid diagram in README.md is generated from ROLLOUT_TABLE (`renderRolloutMermaid`) and checked by a test.
 */
import { ConflictError } from "../errors.js";

export const ROLLOUT_STATES = ["created", "running", "paused", "completed", "stopped", "cancelled"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export type RolloutEvent =
  /** Operator (or creation with start: true). */
  | "start"
  | "pause"
  | "resume"
  /** Operator: cancel = emergency stop (no further commands; pending ones superseded). */
  | "cancel"
  /** Engine: the last group reached its success threshold and every device in it finished. */
  | "finish"
  /** Engine: failures in the current group reached the error threshold. */
  | "error-threshold";

export interface RolloutEdge {
  from: RolloutState;
  event: RolloutEvent;
  to: RolloutState;
}

export const ROLLOUT_TABLE: readonly RolloutEdge[] = [
  { from: "created", event: "start", to: "running" },
  { from: "created", event: "cancel", to: "cancelled" },
  { from: "running", event: "pause", to: "paused" },
  { from: "running", event: "cancel", to: "cancelled" },
  { from: "running", event: "finish", to: "completed" },
  { from: "running", event: "error-threshold", to: "stopped" },
  { from: "paused", event: "resume", to: "running" },
  { from: "paused", event: "cancel", to: "cancelled" },
];

export const TERMINAL_ROLLOUT_STATES: readonly RolloutState[] = ["completed", "stopped", "cancelled"];

export function canRolloutTransition(from: RolloutState, event: RolloutEvent): boolean {
  return ROLLOUT_TABLE.some((edge) => edge.from === from && edge.event === event);
}

/** The next state, or a ConflictError (HTTP 409) naming the state and the refused event. */
export function rolloutTransition(from: RolloutState, event: RolloutEvent): RolloutState {
  const edge = ROLLOUT_TABLE.find((e) => e.from === from && e.event === event);
  if (!edge) throw new ConflictError(`a ${from} rollout cannot ${event}`);
  return edge.to;
}

/** Per-device update status inside a rollout, from the agent's update-progress events and the command's ack. */
export const DEVICE_STATUSES = [
  "waiting",
  "issued",
  "downloading",
  "verifying",
  "installing",
  "health-check",
  "succeeded",
  "failed",
  "cancelled",
] as const;
export type RolloutDeviceStatus = (typeof DEVICE_STATUSES)[number];
export const IN_PROGRESS: readonly RolloutDeviceStatus[] = ["issued", "downloading", "verifying", "installing", "health-check"];
export const FINISHED: readonly RolloutDeviceStatus[] = ["succeeded", "failed", "cancelled"];

/** update-progress `phase` (agent/src/update) -> device status. */
export const PHASE_STATUS: Readonly<Record<string, RolloutDeviceStatus>> = {
  download: "downloading",
  verify: "verifying",
  install: "installing",
  "health-check": "health-check",
  committed: "succeeded",
  "rolled-back": "failed",
  rejected: "failed",
};

export function renderRolloutMermaid(): string {
  const lines = ["stateDiagram-v2", "    [*] --> created"];
  for (const edge of ROLLOUT_TABLE) lines.push(`    ${edge.from} --> ${edge.to}: ${edge.event}`);
  for (const state of TERMINAL_ROLLOUT_STATES) lines.push(`    ${state} --> [*]`);
  return lines.join("\n");
}
