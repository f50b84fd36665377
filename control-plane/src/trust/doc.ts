/**
 * The one generator of every state machine diagram (STATE_MACHINES.md beside this file): the trust machines
 * (./index.ts), the rollout machine (../rollouts/machine.ts) and the agent's update journal
 * (shared/protocol/update.ts), all tables on the shared helper (shared/machine). A test fails when the committed
 * file and the tables disagree; regenerate with `npx tsx control-plane/src/trust/write-doc.ts`.
 */
import type { Machine } from "../../../shared/machine/index.js";
import { UPDATE_JOURNAL_MACHINE } from "../../../shared/protocol/update.js";
import { ROLLOUT_MACHINE } from "../rollouts/machine.js";
import { MACHINES, type MachineName } from "./index.js";

const TRUST_NOTES: Record<MachineName, string> = {
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
    "contraindicated `miner-stop` finding: the stop failed. Evidence that observed everything is appraised as usual.\n\n" +
    "**Farm alerts (HW-ALERT-2).** The plane also appraises the telemetry of accepted heartbeats: an alert that starts " +
    "or clears (zero hashrate, stopped fans, regular pool switching: contraindicated; a hashrate drop: warning) re-folds " +
    "the device's active farm-alert findings into its last result and fires the same `appraised-*` event, and every " +
    "later evidence keeps them folded in until telemetry clears them. A quarantined device's telemetry is not judged.",
  containment:
    "An operator (or the policy `contraindicated -> quarantine`) requests; the signed command is delivered until " +
    "acked or expired. Only the device's signed ack completes a request; an expired or failed command falls back " +
    "(HW-TRUST-3). A release supersedes a pending quarantine and vice versa. A device that says (hello) it is not " +
    "contained while `quarantined` here lost its state: `containment-lost` sends the quarantine again (HW-Q-1).",
};

const ROLLOUT_NOTE =
  "A rollout sends one release target to a selection of devices in groups (control-plane/src/rollouts/README.md). " +
  "The operator starts, pauses, resumes and cancels it; the engine finishes it when the last group reached its " +
  "success threshold, and stops it when failures in any group it reached reach the error threshold (HW-RO-1). " +
  "`completed`, `stopped` and `cancelled` are terminal. Each device's status inside it follows the update " +
  "vocabulary of shared/protocol/update.ts: waiting -> issued -> downloading -> verifying -> installing -> " +
  "health-check -> succeeded | failed (or cancelled).";

const UPDATE_JOURNAL_NOTE =
  "The agent's update journal (`<stateDir>/update.json`, agent/src/update/store.ts), one phase persisted before " +
  "the agent acts on it, so a power cut at any point leaves a bootable board that the next start finishes " +
  "(HW-UPD-5). `[*]` is no journal. Before the boot switch (`download`, `verify`, `install`) the board is " +
  "unchanged and a refusal or an interrupted install drops the journal (`abandon`); from `trial` on only the " +
  "health check decides, and anything failing goes back to the known-good slot (`rollback`). `committed` raises " +
  "the anti-rollback floor in the same write (HW-UPD-3). The store takes events, not phases: an edge not drawn " +
  "here is refused (IllegalTransitionError) and nothing is written. Progress events report these phases as " +
  "download | verify | install | health-check (trial, commit, rollback) | committed | rolled-back | rejected.";

const SECTIONS: Array<{ title: string; note: string; machine: Machine<string, string> }> = [
  ...(Object.keys(MACHINES) as MachineName[]).map((name) => ({ title: name, note: TRUST_NOTES[name], machine: MACHINES[name] as Machine<string, string> })),
  { title: "rollout", note: ROLLOUT_NOTE, machine: ROLLOUT_MACHINE as Machine<string, string> },
  { title: "update-journal", note: UPDATE_JOURNAL_NOTE, machine: UPDATE_JOURNAL_MACHINE as Machine<string, string> },
];

/** Every machine the generated document draws (the check test walks them). */
export const DRAWN_MACHINES: readonly Machine<string, string>[] = SECTIONS.map((section) => section.machine);

/** The committed STATE_MACHINES.md, regenerated with `npx tsx control-plane/src/trust/write-doc.ts`. */
export function stateMachinesMarkdown(): string {
  const sections = SECTIONS.map(({ title, note, machine }) => `## ${title}\n\n${note}\n\n\`\`\`mermaid\n${machine.mermaid()}\n\`\`\`\n`);
  return [
    "# State machines",
    "",
    "Generated from the transition tables on the shared helper (shared/machine): the trust machines in",
    "`control-plane/src/trust/index.ts`, the rollout machine in `control-plane/src/rollouts/machine.ts` and the",
    "agent's update journal in `shared/protocol/update.ts` (a test fails when this file and the tables disagree).",
    "Every trust transition a device makes is stored with its reason, actor and evidence.",
    "",
    ...sections,
  ].join("\n");
}
