/**
 * The trust state machines as data (ARCHITECTURE "Trust and containment"): for each machine an event union,
 * a transition table, and `transition()` which rejects anything not in the table with a ConflictError.
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
import { ConflictError } from "../errors.js";
import type { AppraisalState, ContainmentState, EnrollmentState, Tier } from "../service/types.js";

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

export const TABLES: { [M in MachineName]: readonly Edge<M>[] } = {
  enrollment: ENROLLMENT_TABLE,
  appraisal: APPRAISAL_TABLE,
  containment: CONTAINMENT_TABLE,
};

function indexTable<M extends MachineName>(table: readonly Edge<M>[]): Map<string, Machines[M]["to"]> {
  const map = new Map<string, Machines[M]["to"]>();
  for (const edge of table) {
    const key = `${edge.from}\u0000${edge.event}`;
    if (map.has(key)) throw new Error(`duplicate edge ${edge.from} --${edge.event}-->`);
    map.set(key, edge.to);
  }
  return map;
}

const INDEX: { [M in MachineName]: Map<string, Machines[M]["to"]> } = {
  enrollment: indexTable(ENROLLMENT_TABLE),
  appraisal: indexTable(APPRAISAL_TABLE),
  containment: indexTable(CONTAINMENT_TABLE),
};

/** The next state, or ConflictError (HTTP 409) when the table has no such edge. */
export function transition<M extends MachineName>(machine: M, from: Machines[M]["state"], event: Machines[M]["event"]): Machines[M]["to"] {
  const to = (INDEX[machine] as Map<string, Machines[M]["to"]>).get(`${from}\u0000${event}`);
  if (to === undefined) {
    throw new ConflictError(`${machine}: no transition from ${JSON.stringify(from)} on ${JSON.stringify(event)}`);
  }
  return to;
}

export function canTransition<M extends MachineName>(machine: M, from: Machines[M]["state"], event: Machines[M]["event"]): boolean {
  return (INDEX[machine] as Map<string, unknown>).has(`${from}\u0000${event}`);
}

/** The appraisal event an attestation verdict raises. */
export function appraisalEventFor(status: Tier): AppraisalEvent {
  return `appraised-${status}`;
}

/** One mermaid line per table edge; the initial pseudo-state is drawn as `[*]`. */
export function mermaidEdges(machine: MachineName): string[] {
  return (TABLES[machine] as readonly Edge<MachineName>[]).map(
    (edge) => `${edge.from === NEW ? "[*]" : edge.from} --> ${edge.to} : ${edge.event}`,
  );
}

export function mermaidDiagram(machine: MachineName): string {
  const lines = ["stateDiagram-v2", ...mermaidEdges(machine).map((line) => `    ${line}`)];
  if (machine === "enrollment") lines.push("    revoked --> [*]");
  return lines.join("\n");
}

const MACHINE_NOTES: Record<MachineName, string> = {
  enrollment:
    "A device enters `pending` when it enrolls without a token, `accepted` with a valid enrollment token or a " +
    "pre-authorized key. Re-enrolling never changes a state; only an operator accepts, rejects or revokes. " +
    "`revoked` is terminal (HW-TRUST-1).",
  appraisal:
    "Every appraisal sets the state from its verdict (affirming -> trusted, warning -> warning, contraindicated -> " +
    "contraindicated, none -> unknown), whatever the state was. Only the staleness timer enters `stale`, and not from " +
    "`contraindicated`: unreachable is not untrusted, and silence does not clear a bad verdict (HW-TRUST-2).\n\n" +
    "**Sequence reset (HW-EVD-2).** Evidence from the enrolled key whose seq is not above the last accepted one but " +
    "whose own timestamp is newer than that evidence's (or a hello whose `lastCommandSeq` is below the highest " +
    "command the device acked) means the agent lost its state. The plane refuses that evidence as current, " +
    "`sequence-reset` moves the verdict to `unknown` (a `contraindicated` verdict stays: deleting a file must not " +
    "clear it), sends a challenge at once and accepts no unsolicited evidence until a challenge answer with an " +
    "unused, unexpired nonce arrives; that answer starts a new evidence epoch (older evidence stays a replay).\n\n" +
    "**Appraisal under containment (HW-APPRAISE-3).** While containment is `quarantine_requested`, `quarantined` " +
    "or `release_requested`, the agent keeps observing and its evidence says, per input (`miner-api`, `sockets`, " +
    "`config`, `indicators`), whether it was observed. Evidence that did not observe an input cannot clear what " +
    "that input found before: those findings of the previous verdict are held (a live-pool hijack stays " +
    "`contraindicated` while the stopped miner is silent), and such evidence never yields `trusted` (at best " +
    "`warning`, `runtime-opaque`). A quarantined miner that still answers with an active pool or hashrate is a " +
    "contraindicated `miner-stop` finding: the stop failed. Evidence that observed everything is appraised as usual.",
  containment:
    "An operator (or the policy `contraindicated -> quarantine`) requests; the signed command is delivered until " +
    "acked or expired. Only the device's signed ack completes a request; an expired or failed command falls back " +
    "(HW-TRUST-3). A release supersedes a pending quarantine and vice versa. A device that says (hello) it is not " +
    "contained while `quarantined` here lost its state: `containment-lost` sends the quarantine again (HW-Q-1).",
};

/** The committed STATE_MACHINES.md, regenerated with `npx tsx control-plane/src/trust/write-doc.ts`. */
export function stateMachinesMarkdown(): string {
  const sections = (Object.keys(TABLES) as MachineName[]).map(
    (machine) => `## ${machine}\n\n${MACHINE_NOTES[machine]}\n\n\`\`\`mermaid\n${mermaidDiagram(machine)}\n\`\`\`\n`,
  );
  return [
    "# Trust state machines",
    "",
    "Generated from the transition tables in `control-plane/src/trust/index.ts` (a test fails when this file and",
    "the tables disagree). Every transition a device makes is stored with its reason, actor and evidence.",
    "",
    ...sections,
  ].join("\n");
}
