/**
 * Executes plane commands (rule HW-CMD-1).
 *
 * Order for each command, one at a time:
 *  1. Idempotent re-ack: same seq AND same sig as the last executed command -> re-send the stored ack,
 *     change nothing (the plane re-publishes until it sees an ack).
 *  2. shared verifyCommand against the PINNED plane key and the persisted lastCommandSeq. Any failure
 *     changes nothing and is reported as a signed "command-rejected" event.
 *  3. Execute through the Platform, then persist seq + ack + containment in one atomic write, then queue
 *     the signed ack in the outbox (acks survive being offline).
 * A crash between 3's execute and persist means the redelivered command executes again: every action is
 * idempotent, so that is safe; the opposite order could record a quarantine that never happened.
 *
 * An update can take minutes (download, install, health check), and a quarantine must never wait behind it
 * (rule HW-Q-3). So `update` is accepted in step 3 (its seq persisted), runs in the background, and its signed
 * ack is recorded and sent when it finishes; one update runs at a time. A redelivery while it runs is ignored;
 * after an agent restart it resumes it (the update engine's journal makes that idempotent).
 *
 * A state dir that refuses writes (HW-FAULT-10, agent/src/state): a quarantine is enforced and acked all the
 * same (its record waits in memory); a release that cannot be recorded is undone (the quarantine applied again)
 * and acked `failed`; any other command that cannot be recorded is acked `failed` naming the write error.
 */
import {
  fromBase64Url,
  nonceSchema,
  PROTOCOL_VERSION,
  signObject,
  verifyCommand,
  type Ack,
  type Command,
  type DeviceEventDetail,
} from "../../../shared/index.js";
import type { Logger } from "../log/index.js";
import { createEvent, type EventKind, type EventSeverity, type OutboxMessage } from "../outbox/index.js";
import type { Platform } from "../platform/index.js";
import { executeSetPolicy, type PolicyTarget } from "../policy/index.js";
import { StateWriteError, type Containment, type StateStore } from "../state/index.js";

export interface CommandDeps {
  deviceId: string;
  privateKey: Uint8Array;
  state: StateStore;
  platform: Platform;
  /** Hosts of controlPlaneUrl and mqttUrl: the only ones reachable in quarantine (read at execution time:
   * the MQTT URL may be learned from enrollment after this handler is built). */
  controlPlaneHosts: () => string[];
  /** Queues a durable message (ack or event) and triggers sending. */
  send: (entry: OutboxMessage) => void;
  /** Produces and sends evidence now; `nonce` only when the command carried one. */
  attestNow: (nonce: string | null) => Promise<void>;
  now: () => number;
  log: Logger;
  /** set-policy: the guard policy store (absent: the action fails with a reason). */
  policy?: PolicyTarget;
  /** update: the signed-update engine (agent/src/update; absent: the action fails with a reason). */
  updater?: { handle(command: Command): Promise<{ status: "done" | "failed"; reason?: string }> };
}

export type CommandOutcome =
  | { result: "executed"; ack: Ack }
  | { result: "re-acked"; ack: Ack }
  | { result: "started" }
  | { result: "in-progress" }
  | { result: "rejected"; reason: string };

export class CommandHandler {
  private queue: Promise<unknown> = Promise.resolve();
  /** Seq of the background command running in this process, if any. */
  private runningBackground: number | null = null;
  private background: Promise<void> = Promise.resolve();
  /** seq:sig of the last command rejected and reported, so its redeliveries are not reported again. */
  private lastRejected: string | null = null;

  constructor(private readonly deps: CommandDeps) {}

  /** Commands are handled strictly one after another: each check depends on the previous one's state. */
  handle(command: Command): Promise<CommandOutcome> {
    const run = this.queue.then(() => this.handleOne(command));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async handleOne(command: Command): Promise<CommandOutcome> {
    const { state, log } = this.deps;
    const stored = state.storedAckFor(command.seq, command.sig);
    if (stored) {
      log.info({ seq: command.seq, action: command.action }, "command redelivered; re-sending stored ack");
      this.deps.send({ kind: "ack", message: stored });
      return { result: "re-acked", ack: stored };
    }
    const accepted = state.unfinishedBackgroundCommand(command.seq, command.sig);
    if (accepted) {
      if (this.runningBackground === accepted.seq) return { result: "in-progress" };
      // Resume the copy verified at acceptance (HW-CMD-1): the redelivered body is never trusted, only its seq+sig
      // pointed at it. An accepted command that expired meanwhile is not started again.
      if (accepted.expiresAt <= this.deps.now()) {
        const ack = this.signAck(accepted, "failed", state.containment, `command ${accepted.seq} expired before it could resume`);
        state.completeBackgroundCommand(accepted.seq, accepted.sig, ack);
        this.deps.send({ kind: "ack", message: ack });
        return { result: "executed", ack };
      }
      log.info({ seq: accepted.seq, action: accepted.action }, "resuming a background command accepted before a restart");
      this.startBackground(accepted);
      return { result: "started" };
    }

    const nowMs = this.deps.now();
    try {
      const pinned = state.commandPublicKey;
      if (!pinned) throw new Error("no command key is pinned yet");
      // HW-CMD-1: signature by the pinned key, this device, not expired, seq above the last executed.
      verifyCommand(command, fromBase64Url(pinned), { deviceId: this.deps.deviceId, lastSeq: state.lastCommandSeq, nowMs });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      // The plane re-publishes a command until it is answered (every 5 s for its lifetime): a board that refuses
      // it (a clock off by hours, HW-FAULT-11) reports it once, not once per redelivery.
      const key = `${command.seq}:${command.sig}`;
      if (this.lastRejected === key) {
        log.debug({ seq: command.seq, action: command.action, reason }, "command rejected again (reported once)");
        return { result: "rejected", reason };
      }
      this.lastRejected = key;
      log.warn({ seq: command.seq, action: command.action, reason }, "command rejected");
      this.event("command-rejected", "warning", { reason, seq: command.seq, action: command.action }, nowMs);
      return { result: "rejected", reason };
    }

    if (command.action === "update" && this.runningBackground === null) {
      try {
        state.acceptBackgroundCommand(command);
      } catch (error) {
        if (!(error instanceof StateWriteError)) throw error;
        return this.notRecorded(command, state.containment, `update not accepted: ${error.message}`);
      }
      this.startBackground(command);
      return { result: "started" };
    }

    if (command.action === "release" && state.containment === "quarantined" && !state.retryPending()) {
      // HW-FAULT-10: the state dir is known to refuse writes; do not lift the quarantine only to put it back.
      const failed = this.signAck(command, "failed", "quarantined", `release not recorded, quarantine kept: ${state.writeFailure ?? "the state dir refuses writes"}`);
      state.recordCommand(command.seq, command.sig, failed, "quarantined"); // deferrable: stays quarantined
      this.deps.send({ kind: "ack", message: failed });
      return { result: "executed", ack: failed };
    }
    const { status, containment, reason } = await this.execute(command, nowMs);
    const ack = this.signAck(command, status, containment, reason);
    try {
      state.recordCommand(command.seq, command.sig, ack, containment);
    } catch (error) {
      if (!(error instanceof StateWriteError)) throw error;
      if (containment === "none" && state.containment === "quarantined") {
        // HW-FAULT-10: a release nobody can remember would come back as a quarantine at the next start while the
        // plane believes it lifted; fail closed instead: quarantine again, and say why.
        log.error({ seq: command.seq, err: error.message }, "release could not be recorded; re-applying the quarantine");
        await this.deps.platform.quarantine({ controlPlaneHosts: this.deps.controlPlaneHosts() });
        const failed = this.signAck(command, "failed", "quarantined", `release not recorded, quarantine kept: ${error.message}`);
        state.recordCommand(command.seq, command.sig, failed, "quarantined"); // deferrable: stays quarantined
        this.deps.send({ kind: "ack", message: failed });
        return { result: "executed", ack: failed };
      }
      return this.notRecorded(command, containment, `${command.action} not recorded: ${error.message}`);
    }
    this.deps.send({ kind: "ack", message: ack });
    log.info({ seq: command.seq, action: command.action, status, containment }, "command executed");
    return { result: "executed", ack };
  }

  /** A command whose record the state dir refused: a signed `failed` ack (sent, not stored), nothing recorded. */
  private notRecorded(command: Command, containment: Containment, reason: string): CommandOutcome {
    this.deps.log.error({ seq: command.seq, action: command.action, reason }, "command not recorded: the state dir refused the write");
    const ack = this.signAck(command, "failed", containment, reason);
    this.deps.send({ kind: "ack", message: ack });
    return { result: "executed", ack };
  }

  /** Resolves when the background command running now (if any) has finished and its ack was queued. */
  idle(): Promise<void> {
    return this.background;
  }

  private startBackground(command: Command): void {
    this.runningBackground = command.seq;
    this.background = (async () => {
      let outcome: { status: "done" | "failed"; reason?: string };
      try {
        outcome = this.deps.updater ? await this.deps.updater.handle(command) : { status: "failed", reason: "updates are not supported by this agent" };
      } catch (error) {
        outcome = { status: "failed", reason: `${command.action} failed: ${error instanceof Error ? error.message : String(error)}` };
      }
      const ack = this.signAck(command, outcome.status, this.deps.state.containment, outcome.reason);
      this.deps.state.completeBackgroundCommand(command.seq, command.sig, ack);
      this.deps.send({ kind: "ack", message: ack });
      this.deps.log.info({ seq: command.seq, action: command.action, status: outcome.status }, "background command finished");
    })()
      .catch((error: unknown) => this.deps.log.error({ seq: command.seq, err: error }, "background command could not be recorded"))
      .finally(() => {
        this.runningBackground = null;
      });
  }

  private signAck(command: Command, status: "done" | "failed", containment: Containment, reason: string | undefined): Ack {
    return signObject(
      {
        v: PROTOCOL_VERSION,
        type: "ack" as const,
        deviceId: this.deps.deviceId,
        seq: command.seq,
        action: command.action,
        status,
        containment,
        ...(reason ? { reason: reason.slice(0, 1024) } : {}),
        ts: this.deps.now(),
      },
      this.deps.privateKey,
    );
  }

  private async execute(command: Command, nowMs: number): Promise<{ status: "done" | "failed"; containment: Containment; reason?: string }> {
    const before = this.deps.state.containment;
    try {
      switch (command.action) {
        case "quarantine": {
          const controlPlaneHosts = this.deps.controlPlaneHosts();
          await this.deps.platform.quarantine({ controlPlaneHosts });
          this.event("quarantine-enforced", "critical", { seq: command.seq, controlPlaneHosts }, nowMs);
          return { status: "done", containment: "quarantined" };
        }
        case "release":
          await this.deps.platform.release();
          this.event("quarantine-lifted", "info", { seq: command.seq }, nowMs);
          return { status: "done", containment: "none" };
        case "attest-now": {
          const nonce = nonceSchema.safeParse(command.params["nonce"]);
          await this.deps.attestNow(nonce.success ? nonce.data : null);
          return { status: "done", containment: before };
        }
        case "set-policy":
          return { ...executeSetPolicy(command.params, this.deps.policy), containment: before };
        case "update":
          // Reached only while another update runs in the background (see handleOne).
          return { status: "failed", containment: before, reason: `another update (command ${this.runningBackground}) is in progress` };
        default: {
          // Unreachable for a parsed command (commandSchema lists every action); kept so a wider type fails closed.
          const action: never = command.action;
          return { status: "failed", containment: before, reason: `unsupported action ${String(action)}` };
        }
      }
    } catch (error) {
      const reason = `${command.action} failed: ${error instanceof Error ? error.message : String(error)}`;
      this.deps.log.error({ seq: command.seq, err: error }, "platform action failed");
      this.event("platform-error", "critical", { seq: command.seq, action: command.action, reason }, nowMs);
      // Report what the board is really in; a half-applied quarantine is re-applied on the next try.
      const containment: Containment = (await this.deps.platform.isQuarantined().catch(() => false)) ? "quarantined" : before;
      return { status: "failed", containment, reason };
    }
  }

  private event<K extends EventKind>(kind: K, severity: EventSeverity, detail: DeviceEventDetail<K>, nowMs: number): void {
    this.deps.send({ kind: "event", message: createEvent(this.deps.deviceId, this.deps.privateKey, kind, severity, detail, nowMs) });
  }
}
