/**
 * The agent's persistent trusted state (`<stateDir>/state.json`, written atomically on every change).
 *
 * STYLE rule 4: state changes only through the ordered methods below; each checks sequence (a command seq
 * must increase, evidence/heartbeat seqs only grow) and persists before the caller acts on the new value.
 * A missing file starts fresh; a corrupt or foreign one is refused, because silently resetting
 * lastCommandSeq would re-open the door to replayed commands.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ackSchema, commandSchema, ConfigError, FreshnessError, VerificationError, type Ack, type Command } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";

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

export class StateStore {
  private constructor(
    private readonly file: string,
    private state: AgentState,
  ) {}

  static open(stateDir: string, deviceId: string): StateStore {
    const file = join(stateDir, "state.json");
    if (!existsSync(file)) {
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
      });
      store.persist();
      return store;
    }
    let parsed: AgentState;
    try {
      parsed = stateSchema.parse(JSON.parse(readFileSync(file, "utf8")));
    } catch (cause) {
      throw new ConfigError(`stateDir: ${file} is corrupt; refusing to start with reset sequence numbers (${String(cause).slice(0, 200)})`, "stateDir", { cause });
    }
    if (parsed.deviceId !== deviceId) {
      throw new ConfigError(`stateDir: ${file} belongs to ${parsed.deviceId}, but the key file is ${deviceId}`, "stateDir");
    }
    return new StateStore(file, parsed);
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
    this.commit({ ...this.state, lastCommandSeq: seq, lastAck: { seq, commandSig, message: ack }, containment });
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
    this.commit({ ...this.state, background: { ...background, ack } });
  }

  /** Evidence seq is persisted BEFORE the evidence leaves the device, so a crash can never reuse one. */
  nextEvidenceSeq(): number {
    const seq = this.state.evidenceSeq + 1;
    this.commit({ ...this.state, evidenceSeq: seq });
    return seq;
  }

  /**
   * Heartbeat seqs are reserved in blocks: the file records the highest seq that may have been used, and is
   * written once per HEARTBEAT_SEQ_BLOCK beats instead of every beat (flash wear on controller boards: every
   * 10 s is 8640 writes a day). After a restart numbering resumes above the reservation, so it only grows.
   */
  nextHeartbeatSeq(): number {
    const seq = (this.heartbeatSeqInMemory ?? this.state.heartbeatSeq) + 1;
    if (seq > this.state.heartbeatSeq) this.commit({ ...this.state, heartbeatSeq: seq + HEARTBEAT_SEQ_BLOCK - 1 });
    this.heartbeatSeqInMemory = seq;
    return seq;
  }

  private heartbeatSeqInMemory: number | null = null;

  private commit(next: AgentState): void {
    const checked = stateSchema.parse(next);
    writeFileAtomicSync(this.file, `${JSON.stringify(checked, null, 2)}\n`, 0o600);
    this.state = checked;
  }

  private persist(): void {
    this.commit(this.state);
  }
}
