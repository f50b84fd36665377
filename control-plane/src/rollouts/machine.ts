/**
 * The rollout state machine as data: an event union, a transition table on the shared helper
 * (shared/machine), illegal transitions refused. Its mermaid diagram is generated with the trust machines' into
 * control-plane/src/trust/STATE_MACHINES.md (control-plane/src/trust/doc.ts) and checked by a test.
 */
import { defineMachine } from "../../../shared/machine/index.js";
import type { RolloutDeviceStatus } from "../../../shared/protocol/update.js";

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

export const ROLLOUT_EVENTS: readonly RolloutEvent[] = ["start", "pause", "resume", "cancel", "finish", "error-threshold"];

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

/** The rollout machine on the shared table-driven helper (shared/machine); drawn in trust/STATE_MACHINES.md. */
export const ROLLOUT_MACHINE = defineMachine<RolloutState, RolloutEvent>({
  name: "rollout",
  states: ROLLOUT_STATES,
  events: ROLLOUT_EVENTS,
  initial: "created",
  terminal: TERMINAL_ROLLOUT_STATES,
  table: ROLLOUT_TABLE,
  refusal: (from, event) => `a ${from} rollout cannot ${event}`,
});

export function canRolloutTransition(from: RolloutState, event: RolloutEvent): boolean {
  return ROLLOUT_MACHINE.can(from, event);
}

/** The next state, or IllegalTransitionError (a ConflictError, HTTP 409) naming the state and the refused event. */
export function rolloutTransition(from: RolloutState, event: RolloutEvent): RolloutState {
  return ROLLOUT_MACHINE.transition(from, event);
}

// The device status vocabulary and the progress phase -> status map are the wire contract (shared/protocol/update.ts).
export { ROLLOUT_DEVICE_STATUSES as DEVICE_STATUSES, ROLLOUT_STATUS_OF_PROGRESS as PHASE_STATUS, type RolloutDeviceStatus } from "../../../shared/protocol/update.js";
export const IN_PROGRESS: readonly RolloutDeviceStatus[] = ["issued", "downloading", "verifying", "installing", "health-check"];
export const FINISHED: readonly RolloutDeviceStatus[] = ["succeeded", "failed", "cancelled"];
