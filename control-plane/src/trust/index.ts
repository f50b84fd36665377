/**
 * The trust state machines as data: for each machine an event union,
 * a transition table on the shared helper (shared/machine), and `transition()` which rejects anything not in the
 * table with IllegalTransitionError (a ConflictError).
 * STATE_MACHINES.md beside this file carries a mermaid diagram of every table; a test keeps them in sync.
 *
 * Rules enforced here:
 *  HW-TRUST-1  revoked is terminal: no edge leaves it.
 *  HW-TRUST-2  unreachable is not untrusted: only the staleness timer enters `stale`, and only from a state
 *              that a silent device could still hold honestly (a contraindicated device stays contraindicated);
 *              the next appraisal leaves it.
 *  HW-EVD-2    a sequence reset (the agent lost its state; its evidence seq starts again from a known key)
 *              holds the verdict at `unknown` until a fresh challenge answer; never from `contraindicated`
 *              (deleting a state file must not clear a bad verdict).
 *  HW-APPRAISE-3  under containment, evidence that could not observe the cause of the quarantine does not
 *              clear it (control-plane/src/appraisal; described in STATE_MACHINES.md).
 *  HW-TRUST-3  containment moves to quarantined/none only on the device's signed ack; an expired or failed
 *              command falls back to the state before the request.
 */
import { defineMachine, type Machine } from "../../../shared/machine/index.js";
import type { Tier } from "../appraisal/types.js";
import type { AppraisalState, ContainmentState, EnrollmentState } from "./types.js";

export type { AppraisalState, ContainmentState, EnrollmentState } from "./types.js";

/** The state a device is in before its first enrollment transition (drawn as `[*]`). */
export const NEW = "new" as const;
export type New = typeof NEW;

export type EnrollmentEvent = "enroll" | "enroll-with-token" | "preauthorize" | "accept" | "reject" | "revoke";
export type AppraisalEvent =
  | "appraised-affirming"
  | "appraised-warning"
  | "appraised-contraindicated"
  | "appraised-none"
  | "stale-timer"
  | "sequence-reset";
export type ContainmentEvent =
  | "quarantine-requested"
  | "release-requested"
  | "quarantine-acked"
  | "release-acked"
  | "command-expired"
  | "command-failed"
  | "containment-lost";

export interface Machines {
  enrollment: { state: EnrollmentState | New; to: EnrollmentState; event: EnrollmentEvent };
  appraisal: { state: AppraisalState; to: AppraisalState; event: AppraisalEvent };
  containment: { state: ContainmentState; to: ContainmentState; event: ContainmentEvent };
}
export type MachineName = keyof Machines;

export interface Edge<M extends MachineName> {
  from: Machines[M]["state"];
  event: Machines[M]["event"];
  to: Machines[M]["to"];
}

export const ENROLLMENT_TABLE: readonly Edge<"enrollment">[] = [
  { from: NEW, event: "enroll", to: "pending" },
  { from: NEW, event: "enroll-with-token", to: "accepted" },
  { from: NEW, event: "preauthorize", to: "accepted" },
  { from: "pending", event: "enroll-with-token", to: "accepted" },
  { from: "pending", event: "accept", to: "accepted" },
  { from: "pending", event: "reject", to: "rejected" },
  { from: "pending", event: "revoke", to: "revoked" },
  // An operator may correct a rejection; the device itself never can (re-enrolling keeps it rejected).
  { from: "rejected", event: "accept", to: "accepted" },
  { from: "rejected", event: "revoke", to: "revoked" },
  { from: "accepted", event: "revoke", to: "revoked" },
  // HW-TRUST-1: nothing leaves revoked.
];

const APPRAISAL_STATES: readonly AppraisalState[] = ["unknown", "trusted", "warning", "contraindicated", "stale"];
const APPRAISED: ReadonlyArray<[AppraisalEvent, AppraisalState]> = [
  ["appraised-affirming", "trusted"],
  ["appraised-warning", "warning"],
  ["appraised-contraindicated", "contraindicated"],
  ["appraised-none", "unknown"],
];

export const APPRAISAL_TABLE: readonly Edge<"appraisal">[] = [
  // Every appraisal sets the state from its verdict, whatever the state was (stale included: HW-TRUST-2).
  ...APPRAISAL_STATES.flatMap((from) => APPRAISED.map(([event, to]) => ({ from, event, to }))),
  // HW-TRUST-2: only the staleness timer enters stale; contraindicated is kept, silence does not clear it.
  { from: "unknown", event: "stale-timer", to: "stale" },
  { from: "trusted", event: "stale-timer", to: "stale" },
  { from: "warning", event: "stale-timer", to: "stale" },
  // HW-EVD-2: lost agent state holds the verdict at unknown until a fresh challenge answer; a bad verdict stays.
  { from: "unknown", event: "sequence-reset", to: "unknown" },
  { from: "trusted", event: "sequence-reset", to: "unknown" },
  { from: "warning", event: "sequence-reset", to: "unknown" },
  { from: "stale", event: "sequence-reset", to: "unknown" },
];

export const CONTAINMENT_TABLE: readonly Edge<"containment">[] = [
  { from: "none", event: "quarantine-requested", to: "quarantine_requested" },
  { from: "quarantine_requested", event: "quarantine-acked", to: "quarantined" },
  // A release supersedes a pending quarantine command (and vice versa below).
  { from: "quarantine_requested", event: "release-requested", to: "release_requested" },
  { from: "quarantine_requested", event: "command-expired", to: "none" },
  { from: "quarantine_requested", event: "command-failed", to: "none" },
  { from: "quarantined", event: "release-requested", to: "release_requested" },
  { from: "release_requested", event: "release-acked", to: "none" },
  { from: "release_requested", event: "quarantine-requested", to: "quarantine_requested" },
  { from: "release_requested", event: "command-expired", to: "quarantined" },
  { from: "release_requested", event: "command-failed", to: "quarantined" },
  // HW-Q-1: the device says it is not contained (it lost its state): the quarantine is sent again.
  { from: "quarantined", event: "containment-lost", to: "quarantine_requested" },
];

const ENROLLMENT_STATES: readonly (EnrollmentState | New)[] = [NEW, "pending", "accepted", "rejected", "revoked"];
const CONTAINMENT_STATES: readonly ContainmentState[] = ["none", "quarantine_requested", "quarantined", "release_requested"];
const eventsOf = <E extends string>(table: readonly { event: E }[]): E[] => [...new Set(table.map((edge) => edge.event))];

/** The three trust machines on the shared table-driven helper (shared/machine). */
export const MACHINES: { [M in MachineName]: Machine<Machines[M]["state"], Machines[M]["event"]> } = {
  enrollment: defineMachine({ name: "enrollment", states: ENROLLMENT_STATES, events: eventsOf(ENROLLMENT_TABLE), start: NEW, terminal: ["revoked"], table: ENROLLMENT_TABLE }),
  appraisal: defineMachine({ name: "appraisal", states: APPRAISAL_STATES, events: eventsOf(APPRAISAL_TABLE), table: APPRAISAL_TABLE }),
  containment: defineMachine({ name: "containment", states: CONTAINMENT_STATES, events: eventsOf(CONTAINMENT_TABLE), table: CONTAINMENT_TABLE }),
};

export const TABLES: { [M in MachineName]: readonly Edge<M>[] } = {
  enrollment: ENROLLMENT_TABLE,
  appraisal: APPRAISAL_TABLE,
  containment: CONTAINMENT_TABLE,
};

/** The next state, or IllegalTransitionError (a ConflictError, HTTP 409) when the table has no such edge. */
export function transition<M extends MachineName>(machine: M, from: Machines[M]["state"], event: Machines[M]["event"]): Machines[M]["to"] {
  return (MACHINES[machine] as Machine<string, string>).transition(from, event) as Machines[M]["to"];
}

export function canTransition<M extends MachineName>(machine: M, from: Machines[M]["state"], event: Machines[M]["event"]): boolean {
  return (MACHINES[machine] as Machine<string, string>).can(from, event);
}

/** The appraisal event an attestation verdict raises. */
export function appraisalEventFor(status: Tier): AppraisalEvent {
  return `appraised-${status}`;
}

/** One mermaid line per table edge; the initial pseudo-state is drawn as `[*]`. */
export function mermaidEdges(machine: MachineName): string[] {
  return MACHINES[machine].mermaidEdges();
}

export function mermaidDiagram(machine: MachineName): string {
  return MACHINES[machine].mermaid();
}
