/**
 * The update engine's persisted state, `<stateDir>/update.json` (atomic writes; changed only through ordered methods):
 *  - `floor`: the anti-rollback floor (HW-UPD-3). A target installs only if its version is strictly above it;
 *    raised to the installed version in the same write that records the commit.
 *  - `firmwareVersion`: the committed running firmware (reported in hello and evidence).
 *  - `journal`: the install in progress (or the last one's outcome), one phase at a time, so a SIGKILL at any
 *    step lets the next start complete or roll back (HW-UPD-5). A finished journal keeps its outcome, keyed by
 *    the command seq, so a redelivered command gets the same answer without installing twice. The phase moves only
 *    by the journal machine's table (UPDATE_JOURNAL_MACHINE, shared/protocol/update.ts): the store takes events,
 *    not phases, and refuses an illegal one with IllegalTransitionError before anything is written.
 * A corrupt file stops the agent (like state.json): silently resetting the floor would re-open rollback.
 */
import { join } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";
import { isSemVer } from "../../../shared/semver/index.js";
import { IllegalTransitionError } from "../../../shared/machine/index.js";
import { FINAL_JOURNAL_PHASES, UPDATE_JOURNAL_MACHINE, UPDATE_JOURNAL_PHASES, type UpdateJournalEvent } from "../../../shared/protocol/update.js";

const slot = z.enum(["a", "b"]);

const journalSchema = z.strictObject({
  commandSeq: z.number().int().nonnegative(),
  targetName: z.string().min(1).max(512),
  version: z.string().min(1).max(256),
  rolloutId: z.string().max(128).nullable(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  length: z.number().int().nonnegative(),
  phase: z.enum(UPDATE_JOURNAL_PHASES),
  fromSlot: slot.nullable(),
  toSlot: slot.nullable(),
  reason: z.string().max(1024).nullable(),
  /** The final update-progress event is in the outbox (set once; a crash before it re-sends at start). */
  reported: z.boolean().default(false),
  startedAt: z.number().int().nonnegative(),
  updatedAt: z.number().int().nonnegative(),
});
export type UpdateJournal = z.output<typeof journalSchema>;
/** What an install starts with: the journal without its machine-owned fields. */
export type NewUpdateJournal = Omit<UpdateJournal, "phase" | "reported" | "updatedAt">;
/** Fields an event may change besides the phase. */
export type JournalPatch = Partial<Pick<UpdateJournal, "toSlot" | "reason">>;

const updateStateSchema = z.strictObject({
  v: z.literal(1),
  floor: z.string().refine(isSemVer, "must be a semantic version"),
  firmwareVersion: z.string().min(1).max(128),
  journal: journalSchema.nullable(),
});
export type UpdateState = z.infer<typeof updateStateSchema>;

export class UpdateStore {
  private constructor(
    private readonly file: JsonStateFile<UpdateState>,
    private state: UpdateState,
  ) {}

  /** Opens `<stateDir>/update.json`; a first start takes the floor from the configured firmware version. */
  static open(stateDir: string, configuredFirmwareVersion: string): UpdateStore {
    const file = jsonStateFile(join(stateDir, "update.json"), updateStateSchema, { indent: 2 });
    const stored = file.load("with a reset anti-rollback floor");
    if (stored === undefined) {
      const store = new UpdateStore(file, {
        v: 1,
        floor: isSemVer(configuredFirmwareVersion) ? configuredFirmwareVersion : "0.0.0",
        firmwareVersion: configuredFirmwareVersion,
        journal: null,
      });
      store.commit(store.state);
      return store;
    }
    return new UpdateStore(file, stored);
  }

  get snapshot(): Readonly<UpdateState> {
    return structuredClone(this.state);
  }

  get journal(): UpdateJournal | null {
    return this.state.journal ? { ...this.state.journal } : null;
  }

  /**
   * Starts a new install's journal in phase `download` (event `start`: only with no journal or a finished one).
   * Throws IllegalTransitionError while another install is unfinished; nothing is written then.
   */
  begin(journal: NewUpdateJournal): UpdateJournal {
    const phase = UPDATE_JOURNAL_MACHINE.transition(this.state.journal?.phase ?? "idle", "start");
    if (phase === "idle") throw new Error("unreachable: start leads to download");
    const next: UpdateJournal = { ...journal, phase, reported: false, updatedAt: journal.startedAt };
    this.commit({ ...this.state, journal: next });
    return { ...next };
  }

  /**
   * Moves the install in progress by `event` (UPDATE_JOURNAL_MACHINE), persisted before the caller acts on it:
   * `abandon` drops the journal (before the boot switch only), `committed` raises the floor and the running
   * version in the same write as the outcome (HW-UPD-3). Returns the new journal (null once dropped). Throws
   * IllegalTransitionError for an event the current phase has no edge for (no journal counts as `idle`); nothing
   * is written then.
   */
  advance(event: UpdateJournalEvent, patch: JournalPatch, nowMs: number): UpdateJournal | null {
    const current = this.state.journal;
    if (event === "start") throw new IllegalTransitionError(UPDATE_JOURNAL_MACHINE.name, current?.phase ?? "idle", event, "update-journal: an install starts with begin()");
    const phase = UPDATE_JOURNAL_MACHINE.transition(current?.phase ?? "idle", event);
    if (phase === "idle" || !current) {
      this.commit({ ...this.state, journal: null });
      return null;
    }
    const journal: UpdateJournal = { ...current, ...patch, phase, updatedAt: nowMs };
    this.commit(phase === "committed" ? { ...this.state, floor: journal.version, firmwareVersion: journal.version, journal } : { ...this.state, journal });
    return { ...journal };
  }

  /** Records that the outcome's update-progress event is in the outbox (a finished journal only; else a no-op). */
  markReported(): void {
    const journal = this.state.journal;
    if (!journal || !FINAL_JOURNAL_PHASES.includes(journal.phase) || journal.reported) return;
    this.commit({ ...this.state, journal: { ...journal, reported: true } });
  }

  private commit(next: UpdateState): void {
    this.state = this.file.save(next);
  }
}
