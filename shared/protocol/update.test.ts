/**
 * The update vocabulary (shared/protocol/update.ts): one list of phases from the agent's journal to the progress
 * event to the rollout status, and a journal machine without dead ends (HW-UPD-5).
 */
import { describe, expect, it } from "vitest";
import {
  FINAL_JOURNAL_PHASES,
  PRE_SWITCH_JOURNAL_PHASES,
  PROGRESS_PHASE_OF_JOURNAL,
  ROLLOUT_STATUS_OF_PROGRESS,
  UPDATE_JOURNAL_MACHINE,
  UPDATE_JOURNAL_PHASES,
  UPDATE_PROGRESS_PHASES,
  type UpdateJournalState,
} from "./update.js";

function reachable(from: UpdateJournalState): Set<UpdateJournalState> {
  const seen = new Set<UpdateJournalState>([from]);
  const queue = [from];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const edge of UPDATE_JOURNAL_MACHINE.table.filter((e) => e.from === at && !seen.has(e.to))) {
      seen.add(edge.to);
      queue.push(edge.to);
    }
  }
  return seen;
}

describe("update vocabulary", () => {
  it("every journal phase reports a progress phase, and every progress phase a rollout status", () => {
    expect(Object.keys(PROGRESS_PHASE_OF_JOURNAL).sort()).toEqual([...UPDATE_JOURNAL_PHASES].sort());
    expect(Object.keys(ROLLOUT_STATUS_OF_PROGRESS).sort()).toEqual([...UPDATE_PROGRESS_PHASES].sort());
    // Only `rejected` (refused before a journal exists) is a progress phase no journal phase reports.
    const reported = new Set(Object.values(PROGRESS_PHASE_OF_JOURNAL));
    expect(UPDATE_PROGRESS_PHASES.filter((p) => !reported.has(p))).toEqual(["rejected"]);
    expect(ROLLOUT_STATUS_OF_PROGRESS.committed).toBe("succeeded");
    expect(ROLLOUT_STATUS_OF_PROGRESS["rolled-back"]).toBe("failed");
  });

  it("the journal machine: every phase is reachable from no journal, and every unfinished phase can still finish", () => {
    expect(reachable("idle")).toEqual(new Set(UPDATE_JOURNAL_MACHINE.states));
    for (const phase of UPDATE_JOURNAL_PHASES) {
      const ahead = reachable(phase);
      expect(FINAL_JOURNAL_PHASES.some((f) => ahead.has(f)) || ahead.has("idle"), phase).toBe(true);
    }
  });

  it("HW-UPD-5: only a pre-switch phase drops the journal, and committed is entered only from a passed health check", () => {
    const drops = UPDATE_JOURNAL_MACHINE.table.filter((e) => e.to === "idle").map((e) => e.from);
    expect(drops.sort()).toEqual([...PRE_SWITCH_JOURNAL_PHASES].sort());
    expect(UPDATE_JOURNAL_MACHINE.table.filter((e) => e.to === "committed")).toEqual([{ from: "commit", event: "committed", to: "committed" }]);
    expect(UPDATE_JOURNAL_MACHINE.table.filter((e) => e.to === "commit")).toEqual([{ from: "trial", event: "healthy", to: "commit" }]);
  });
});
