/**
 * HW-UPD-5: the update journal moves only along UPDATE_JOURNAL_MACHINE (shared/protocol/update.ts). Every edge
 * the table lacks is refused by the store with IllegalTransitionError, and update.json is left byte for byte as it was.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IllegalTransitionError } from "../../../shared/machine/index.js";
import { UPDATE_JOURNAL_EVENTS, UPDATE_JOURNAL_MACHINE, type UpdateJournalEvent, type UpdateJournalState } from "../../../shared/protocol/update.js";
import { tempDir } from "../testing/index.js";
import { UpdateStore, type NewUpdateJournal } from "./store.js";

const NEW_JOURNAL: NewUpdateJournal = {
  commandSeq: 7,
  targetName: "fw-s19-2.0.0",
  version: "2.0.0",
  rolloutId: null,
  sha256: "a".repeat(64),
  length: 10,
  fromSlot: "a",
  toSlot: null,
  reason: null,
  startedAt: 1000,
};

/** The events that walk a fresh store into `state` along the table (shortest path, breadth first). */
function pathTo(state: UpdateJournalState): UpdateJournalEvent[] {
  const queue: Array<[UpdateJournalState, UpdateJournalEvent[]]> = [["idle", []]];
  const seen = new Set<UpdateJournalState>(["idle"]);
  while (queue.length > 0) {
    const [at, path] = queue.shift()!;
    if (at === state) return path;
    for (const edge of UPDATE_JOURNAL_MACHINE.table.filter((e) => e.from === at && !seen.has(e.to))) {
      seen.add(edge.to);
      queue.push([edge.to, [...path, edge.event]]);
    }
  }
  throw new Error(`${state} is unreachable`);
}

describe("update journal machine (HW-UPD-5)", () => {
  let dir: { path: string; cleanup: () => void };
  beforeEach(() => {
    dir = tempDir("journal");
  });
  afterEach(() => dir.cleanup());

  function storeIn(state: UpdateJournalState): UpdateStore {
    const store = UpdateStore.open(join(dir.path, state), "1.0.0");
    for (const event of pathTo(state)) {
      if (event === "start") store.begin(NEW_JOURNAL);
      else store.advance(event, event === "installed" ? { toSlot: "b" } : {}, 2000);
    }
    expect(store.journal?.phase ?? "idle").toBe(state);
    return store;
  }

  it("walks the happy path and the rollback path, raising the floor only on commit", () => {
    const store = storeIn("committed");
    expect(store.snapshot).toMatchObject({ floor: "2.0.0", firmwareVersion: "2.0.0", journal: { phase: "committed", toSlot: "b", reported: false } });
    store.markReported();
    expect(store.journal?.reported).toBe(true);
    const rolled = storeIn("rolled-back");
    expect(rolled.snapshot).toMatchObject({ floor: "1.0.0", firmwareVersion: "1.0.0", journal: { phase: "rolled-back" } });
    // A finished journal is replaced by the next install.
    expect(rolled.begin({ ...NEW_JOURNAL, commandSeq: 8 })).toMatchObject({ phase: "download", commandSeq: 8, reported: false });
  });

  it("drops the journal only before the boot switch", () => {
    for (const state of ["download", "verify", "install"] as const) {
      const store = storeIn(state);
      expect(store.advance("abandon", {}, 3000)).toBeNull();
      expect(store.journal).toBeNull();
    }
  });

  const states: UpdateJournalState[] = [...UPDATE_JOURNAL_MACHINE.states];
  const illegal = states.flatMap((from) => UPDATE_JOURNAL_EVENTS.filter((event) => !UPDATE_JOURNAL_MACHINE.can(from, event)).map((event) => [from, event] as const));

  it("has illegal edges to test (the table is not complete)", () => {
    expect(illegal.length).toBeGreaterThan(40);
    // The dangerous ones, spelled out: no commit without a passed health check, no journal dropped after the switch.
    for (const [from, event] of [["install", "committed"], ["download", "healthy"], ["trial", "abandon"], ["commit", "abandon"], ["rollback", "abandon"], ["rollback", "committed"], ["trial", "start"], ["idle", "committed"]] as const) {
      expect(illegal).toContainEqual([from, event]);
    }
  });

  it.each(illegal)("refuses %s --%s--> and leaves update.json unchanged", (from, event) => {
    const store = storeIn(from);
    const file = join(dir.path, from, "update.json");
    const before = readFileSync(file, "utf8");
    const act = () => (event === "start" ? store.begin({ ...NEW_JOURNAL, commandSeq: 9 }) : store.advance(event, { reason: "x" }, 9000));
    expect(act).toThrow(IllegalTransitionError);
    expect(readFileSync(file, "utf8")).toBe(before);
    expect(store.journal?.phase ?? "idle").toBe(from);
  });
});
