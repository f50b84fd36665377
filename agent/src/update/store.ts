/**
 * The update engine's persisted state, `<stateDir>/update.json` (atomic writes, STYLE rule 4):
 *  - `floor`: the anti-rollback floor (HW-UPD-3). A target installs only if its version is strictly above it;
 *    raised to the installed version in the same write that records the commit.
 *  - `firmwareVersion`: the committed running firmware (reported in hello and evidence).
 *  - `journal`: the install in progress (or the last one's outcome), one phase at a time, so a SIGKILL at any
 *    step lets the next start complete or roll back (HW-UPD-5). A finished journal keeps its outcome, keyed by
 *    the command seq, so a redelivered command gets the same answer without installing twice.
 * A corrupt file stops the agent (like state.json): silently resetting the floor would re-open rollback.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import { isSemVer } from "../../../shared/semver/index.js";

export const JOURNAL_PHASES = ["download", "verify", "install", "trial", "commit", "rollback", "committed", "rolled-back"] as const;
export type JournalPhase = (typeof JOURNAL_PHASES)[number];
export const FINAL_PHASES: readonly JournalPhase[] = ["committed", "rolled-back"];

const slot = z.enum(["a", "b"]);

const journalSchema = z.strictObject({
  commandSeq: z.number().int().nonnegative(),
  targetName: z.string().min(1).max(512),
  version: z.string().min(1).max(256),
  rolloutId: z.string().max(128).nullable(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  length: z.number().int().nonnegative(),
  phase: z.enum(JOURNAL_PHASES),
  fromSlot: slot.nullable(),
  toSlot: slot.nullable(),
  reason: z.string().max(1024).nullable(),
  /** The final update-progress event is in the outbox (set once; a crash before it re-sends at start). */
  reported: z.boolean().default(false),
  startedAt: z.number().int().nonnegative(),
  updatedAt: z.number().int().nonnegative(),
});
export type UpdateJournal = z.output<typeof journalSchema>;

const updateStateSchema = z.strictObject({
  v: z.literal(1),
  floor: z.string().refine(isSemVer, "must be a semantic version"),
  firmwareVersion: z.string().min(1).max(128),
  journal: journalSchema.nullable(),
});
export type UpdateState = z.infer<typeof updateStateSchema>;

export class UpdateStore {
  private constructor(
    private readonly file: string,
    private state: UpdateState,
  ) {}

  /** Opens `<stateDir>/update.json`; a first start takes the floor from the configured firmware version. */
  static open(stateDir: string, configuredFirmwareVersion: string): UpdateStore {
    const file = join(stateDir, "update.json");
    if (!existsSync(file)) {
      const store = new UpdateStore(file, {
        v: 1,
        floor: isSemVer(configuredFirmwareVersion) ? configuredFirmwareVersion : "0.0.0",
        firmwareVersion: configuredFirmwareVersion,
        journal: null,
      });
      store.commit(store.state);
      return store;
    }
    try {
      return new UpdateStore(file, updateStateSchema.parse(JSON.parse(readFileSync(file, "utf8"))));
    } catch (cause) {
      throw new ConfigError(`stateDir: ${file} is corrupt; refusing to start with a reset anti-rollback floor (${String(cause).slice(0, 200)})`, "stateDir", { cause });
    }
  }

  get snapshot(): Readonly<UpdateState> {
    return structuredClone(this.state);
  }

  get journal(): UpdateJournal | null {
    return this.state.journal ? { ...this.state.journal } : null;
  }

  /** Records the next phase of the install in progress (persisted before the caller acts on it). */
  setJournal(journal: UpdateJournal | null): void {
    this.commit({ ...this.state, journal });
  }

  /** HW-UPD-3: the commit raises the floor and the running version in the same write as the journal outcome. */
  recordCommit(journal: UpdateJournal): void {
    this.commit({ ...this.state, floor: journal.version, firmwareVersion: journal.version, journal });
  }

  private commit(next: UpdateState): void {
    const checked = updateStateSchema.parse(next);
    writeFileAtomicSync(this.file, `${JSON.stringify(checked, null, 2)}\n`, 0o600);
    this.state = checked;
  }
}
