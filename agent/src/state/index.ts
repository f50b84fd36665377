/**
 * The agent's persistent trusted state (`<stateDir>/state.json`, written atomically on every change).
 *
 * Trusted state changes only through the ordered methods below; each checks sequence (a command seq
 * must increase, evidence/heartbeat seqs only grow) and persists before the caller acts on the new value.
 * A missing file starts fresh; a corrupt or foreign one is refused, because silently resetting
 * lastCommandSeq would re-open the door to replayed commands.
 *
 * A full or unwritable state dir (HW-FAULT-10): every write is atomic (shared/fs/atomic.ts), so a failed one leaves
 * the previous file whole. What happens to the change then depends on its direction:
 *  - deferrable changes (heartbeat and evidence seqs, a command whose result is `quarantined`, a background
 *    command's ack) take effect in memory and stay pending: the agent keeps reporting and keeps its quarantine,
 *    and a restart before they land is the state loss the plane already handles (HW-EVD-2 sequence reset,
 *    HW-Q-1 re-asserted quarantine), which only errs toward containment;
 *  - everything else (a release, accepting an update, pinning a key, enrollment) throws StateWriteError and
 *    changes nothing: a change that lifts containment or widens trust happens only once it is on disk.
 * Pending state is written again by `retryPending()` (the agent calls it on a timer) and with the next write.
 */
import { join } from "node:path";
import { z } from "zod";
import { ackSchema, commandSchema, ConfigError, FreshnessError, HashwardError, VerificationError, type Ack, type Command } from "../../../shared/index.js";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";

export type Containment = "none" | "quarantined";

export const HEARTBEAT_SEQ_BLOCK = 100;

const stateSchema = z.strictObject({
  v: z.literal(1),
  deviceId: z.string(),
  /** The plane's command key, pinned once (config or first enrollment) and never replaced. */
  commandPublicKey: z.string().nullable(),
  enrollment: z.enum(["unknown", "pending", "accepted"]),
  /** mqttUrl learned from the enrollment response (used only when the config has none). */
  mqttUrl: z.string().nullable(),
  lastCommandSeq: z.number().int().nonnegative(),
  /** The ack sent for lastCommandSeq, re-sent verbatim when the same command is redelivered. */
  lastAck: z.strictObject({ seq: z.number().int().positive(), commandSig: z.string(), message: ackSchema }).nullable(),
  /**
   * The last long-running command (an update), accepted (its seq counts as executed) and running in the
   * background so containment commands are never queued behind a download; `ack` is set once it finished.
   */
  background: z
    .strictObject({
      seq: z.number().int().positive(),
      commandSig: z.string(),
      /** The command as verified when accepted: a resume runs this copy, never a redelivered body. */
      command: commandSchema,
      ack: ackSchema.nullable(),
    })
    .nullable()
    .default(null),
  evidenceSeq: z.number().int().nonnegative(),
  /** Highest heartbeat seq reserved (see nextHeartbeatSeq). */
  heartbeatSeq: z.number().int().nonnegative(),
  containment: z.enum(["none", "quarantined"]),
});
export type AgentState = z.infer<typeof stateSchema>;

/**
 * A state change that must be on disk before it takes effect could not be written (ENOSPC, EDQUOT, EROFS, EIO...).
 * Nothing changed, in memory or on disk. `code` is the errno code of the failed write, when there is one.
 */
export class StateWriteError extends HashwardError {
  override name = "StateWriteError";
  constructor(
    readonly file: string,
    readonly code: string | undefined,
    options: { cause: unknown },
  ) {
    super(`cannot write ${file}: ${code ?? (options.cause instanceof Error ? options.cause.message : String(options.cause))}`, options);
  }
}

/** How the store reports writes that failed and landed later (HW-FAULT-10). Both are called once per episode. */
export interface StatePersistenceReport {
  /** The first write of an episode failed (what it changed lives only in memory until it lands, or was refused). */
  notPersisted(detail: { file: string; err: string; code: string | undefined }): void;
  /** The pending state is on disk again. */
  persisted(detail: { file: string; pendingForMs: number }): void;
}

type Durability = "required" | "deferrable";

export class StateStore {
  /** Since when (ms, Date.now) writes fail; null while they succeed. */
  private failingSince: number | null = null;
  /** The state in memory is ahead of state.json (a deferrable write failed). */
  private pendingWrite = false;
  private failure: string | null = null;

  private constructor(
    private readonly stateFile: JsonStateFile<AgentState>,
    private state: AgentState,
    private readonly report: StatePersistenceReport | undefined,
  ) {}

  /**
   * Opens (or creates) `<stateDir>/state.json`. Throws ConfigError when the file is corrupt or belongs to another
   * device, StateWriteError when a fresh state cannot be written.
   */
  static open(stateDir: string, deviceId: string, report?: StatePersistenceReport): StateStore {
    const file = jsonStateFile(join(stateDir, "state.json"), stateSchema, { indent: 2 });
    const parsed = file.load("with reset sequence numbers");
    if (parsed === undefined) {
      const store = new StateStore(file, {
        v: 1,
        deviceId,
        commandPublicKey: null,
        enrollment: "unknown",
        mqttUrl: null,
        lastCommandSeq: 0,
        lastAck: null,
        background: null,
        evidenceSeq: 0,
        heartbeatSeq: 0,
        containment: "none",
      }, report);
      store.persist();
      return store;
    }
    if (parsed.deviceId !== deviceId) {
      throw new ConfigError(`stateDir: ${file.path} belongs to ${parsed.deviceId}, but the key file is ${deviceId}`, "stateDir");
    }
    return new StateStore(file, parsed, report);
  }

  /** True while the state in memory has changes state.json does not have yet (the state dir is full). */
  get pending(): boolean {
    return this.pendingWrite;
  }

  /** The error of the failing write episode (`cannot write <file>: ENOSPC`), null while writes succeed. */
  get writeFailure(): string | null {
    return this.failure;
  }

  /** Writes pending state again; true when nothing is pending any more. Never throws. */
  retryPending(): boolean {
    if (!this.pendingWrite) return true;
    try {
      this.commit(this.state, "required");
    } catch {
      return false;
    }
    return true;
  }

  /** A frozen copy; callers never mutate state directly. */
  get snapshot(): Readonly<AgentState> {
    return structuredClone(this.state);
  }

  get containment(): Containment {
    return this.state.containment;
  }

  get lastCommandSeq(): number {
    return this.state.lastCommandSeq;
  }

  get commandPublicKey(): string | null {
    return this.state.commandPublicKey;
  }

  /** Pins the plane's command key. Never replaces a pinned key: a different one throws VerificationError. */
  pinCommandKey(key: string): void {
    // HW-PIN-1
    if (this.state.commandPublicKey === key) return;
    if (this.state.commandPublicKey !== null) {
      throw new VerificationError(`command key ${key} differs from the pinned ${this.state.commandPublicKey}; refusing to replace it`);
    }
    this.commit({ ...this.state, commandPublicKey: key });
  }

  recordEnrollment(enrollment: "pending" | "accepted", mqttUrl: string | undefined): void {
    const next = { ...this.state, enrollment, mqttUrl: mqttUrl ?? this.state.mqttUrl };
    if (next.enrollment === this.state.enrollment && next.mqttUrl === this.state.mqttUrl) return;
    this.commit(next);
  }

  /**
   * Records an executed command: lastCommandSeq, the ack to re-send on redelivery, and the containment it
   * produced, in one atomic write. HW-CMD-1: seq must be strictly above the last executed one.
   */
  recordCommand(seq: number, commandSig: string, ack: Ack, containment: Containment): void {
    // HW-CMD-1 (seq) and HW-Q-1 (containment persisted with the ack, in one write)
    if (seq <= this.state.lastCommandSeq) {
      throw new FreshnessError(`command seq ${seq} is not above the last executed ${this.state.lastCommandSeq}`);
    }
    if (ack.seq !== seq) throw new FreshnessError(`ack seq ${ack.seq} does not match command seq ${seq}`);
    // HW-FAULT-10: a result that leaves the board quarantined takes effect even when it cannot be written yet
    // (containment wins); one that lifts it must be on disk first.
    this.commit({ ...this.state, lastCommandSeq: seq, lastAck: { seq, commandSig, message: ack }, containment }, containment === "quarantined" ? "deferrable" : "required");
  }

  /** The stored ack when `seq`/`sig` are exactly an executed command's (idempotent re-ack), else null. */
  storedAckFor(seq: number, commandSig: string): Ack | null {
    const last = this.state.lastAck;
    if (last && last.seq === seq && last.commandSig === commandSig) return last.message;
    const background = this.state.background;
    return background && background.seq === seq && background.commandSig === commandSig ? background.ack : null;
  }

  /** The accepted background command as verified, when `seq`/`sig` are exactly it and it has not finished, else null. */
  unfinishedBackgroundCommand(seq: number, commandSig: string): Command | null {
    const background = this.state.background;
    return background && background.seq === seq && background.commandSig === commandSig && background.ack === null ? background.command : null;
  }

  /**
   * Accepts a long-running command: its seq becomes the last executed one now (HW-CMD-1: strictly above), so a
   * later quarantine is checked against it and a replay of it is refused; its ack is recorded when it finishes.
   */
  acceptBackgroundCommand(command: Command): void {
    if (command.seq <= this.state.lastCommandSeq) {
      throw new FreshnessError(`command seq ${command.seq} is not above the last executed ${this.state.lastCommandSeq}`);
    }
    this.commit({ ...this.state, lastCommandSeq: command.seq, background: { seq: command.seq, commandSig: command.sig, command, ack: null } });
  }

  /** Records the ack of the accepted background command (containment is not touched: updates do not change it). */
  completeBackgroundCommand(seq: number, commandSig: string, ack: Ack): void {
    const background = this.state.background;
    if (!background || background.seq !== seq || background.commandSig !== commandSig) {
      throw new FreshnessError(`command seq ${seq} is not the accepted background command`);
    }
    if (ack.seq !== seq) throw new FreshnessError(`ack seq ${ack.seq} does not match command seq ${seq}`);
    // The seq was persisted at acceptance; only the ack to re-send is recorded here (HW-FAULT-10: deferrable).
    this.commit({ ...this.state, background: { ...background, ack } }, "deferrable");
  }

  /**
   * Evidence seq is persisted BEFORE the evidence leaves the device, so a crash can never reuse one. On a full
   * state dir it is used from memory (HW-FAULT-10): a restart before it lands reuses seqs, which the plane treats
   * as a sequence reset (HW-EVD-2); silence would leave the last verdict standing instead.
   */
  nextEvidenceSeq(): number {
    const seq = this.state.evidenceSeq + 1;
    this.commit({ ...this.state, evidenceSeq: seq }, "deferrable");
    return seq;
  }

  /**
   * Heartbeat seqs are reserved in blocks: the file records the highest seq that may have been used, and is
   * written once per HEARTBEAT_SEQ_BLOCK beats instead of every beat (flash wear on controller boards: every
   * 10 s is 8640 writes a day). After a restart numbering resumes above the reservation, so it only grows.
   */
  nextHeartbeatSeq(): number {
    const seq = (this.heartbeatSeqInMemory ?? this.state.heartbeatSeq) + 1;
    // HW-FAULT-10: deferrable; a heartbeat is valid only on its own connection (HW-LIVE-1), so a seq reused after a
    // restart on a full disk is no replay.
    if (seq > this.state.heartbeatSeq) this.commit({ ...this.state, heartbeatSeq: seq + HEARTBEAT_SEQ_BLOCK - 1 }, "deferrable");
    this.heartbeatSeqInMemory = seq;
    return seq;
  }

  private heartbeatSeqInMemory: number | null = null;

  private get file(): string {
    return this.stateFile.path;
  }

  /**
   * Writes `next` atomically, then makes it current. A failed write: `required` throws StateWriteError with
   * nothing changed; `deferrable` makes `next` current in memory and leaves it pending (HW-FAULT-10).
   */
  private commit(next: AgentState, durability: Durability = "required"): void {
    const checked = stateSchema.parse(next);
    try {
      this.stateFile.save(checked);
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      this.failure = `cannot write ${this.file}: ${code ?? (cause instanceof Error ? cause.message : String(cause))}`;
      if (this.failingSince === null) {
        this.failingSince = Date.now();
        this.report?.notPersisted({ file: this.file, err: cause instanceof Error ? cause.message : String(cause), code });
      }
      if (durability === "required") throw new StateWriteError(this.file, code, { cause });
      this.pendingWrite = true;
      this.state = checked;
      return;
    }
    this.state = checked;
    this.pendingWrite = false;
    this.failure = null;
    if (this.failingSince !== null) {
      this.report?.persisted({ file: this.file, pendingForMs: Date.now() - this.failingSince });
      this.failingSince = null;
    }
  }

  private persist(): void {
    this.commit(this.state);
  }
}
