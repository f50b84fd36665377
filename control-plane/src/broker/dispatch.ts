/**
 * The embedded broker's ingest dispatch: one accepted up/ PUBLISH re-checked against the device's enrollment
 * (HW-AUTH-1), schema-parsed, handed to the DeviceSideService through ./ingest.ts, and held and retried while the
 * database is unreachable (HW-FAULT-2). Malformed or refused payloads are dropped, counted and logged once per
 * (client, reason); the client stays connected.
 */
import type { Client } from "aedes";
import type { Logger } from "pino";
import { parsePayload, upSchemas, type UpKind } from "../../../shared/protocol/index.js";
import { isTransientDatabaseError } from "../db/transient.js";
import { LivenessRefusal } from "../errors.js";
import { clipForLog } from "../log/index.js";
import type { ConnectIdentity, DeviceSession, DeviceSideService } from "../service/index.js";
import type { IdentityCache } from "./auth.js";
import { dispatchUp, rejectionReason } from "./ingest.js";
import type { BrokerMetrics } from "./metrics.js";

/** Default HW-FAULT-2 hold time of a QoS 1 message while the database is unreachable, ms. */
export const DEFAULT_INGEST_RETRY_MS = 30_000;
const INGEST_RETRY_MIN_DELAY_MS = 100;
const INGEST_RETRY_MAX_DELAY_MS = 2_000;
const UNAVAILABLE_LOG_INTERVAL_MS = 10_000;

/** What handling one device message came to: handled (or refused for good), or the database was unreachable. */
type IngestOutcome = "done" | "unavailable";

/** Waits the backoff before retry `attempt` (0-based): doubling from 100 ms, at most 2 s. */
function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(INGEST_RETRY_MAX_DELAY_MS, INGEST_RETRY_MIN_DELAY_MS * 2 ** attempt)));
}

/** Warn lines about one client, each `reason` logged at most once for the client's lifetime. */
export type ClientLog = (client: Client, reason: string, fields: Record<string, unknown>, msg: string) => void;

/** A ClientLog writing to `logger` (keyed weakly on the client, so a closed client's memory goes with it). */
export function oncePerClientLog(logger: Logger): ClientLog {
  const logged = new WeakMap<Client, Set<string>>();
  return (client, reason, fields, msg) => {
    let seen = logged.get(client);
    if (!seen) logged.set(client, (seen = new Set()));
    if (seen.has(reason)) return;
    seen.add(reason);
    logger.warn({ deviceId: client.id, reason, ...fields }, msg);
  };
}

/** What the dispatch needs from the broker that owns it. */
export interface DispatchDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  metrics: BrokerMetrics;
  identities: IdentityCache;
  /** HW-LIVE-1: the session of each authenticated connection. */
  sessions: WeakMap<Client, DeviceSession>;
  logOncePerClient: ClientLog;
  now: () => number;
  /** HW-FAULT-2: how long a QoS 1 message is held while the database is unreachable, ms. */
  ingestRetryMs: number;
  /** True once the broker is closing: held messages stop waiting. */
  isClosing(): boolean;
}

/** The dispatch's entry points (see createDispatch). */
export interface Dispatch {
  /**
   * HW-FAULT-2: handles one up/ message before its PUBACK. Resolves true when it was handled (the PUBACK may go),
   * false when the device must send it again (refused without PUBACK). Never rejects for a handler's error.
   */
  ingestDurably(client: Client, deviceId: string, kind: UpKind, payload: Buffer, qos: number): Promise<boolean>;
  /** Runs connect/disconnect bookkeeping, waiting out a database outage as long as message ingest would; logs a failure. */
  retryTransient(what: string, deviceId: string, work: () => Promise<void>): Promise<void>;
  /** One warn line per 10 s while the database is out, not one per message or CONNECT. */
  noteUnavailable(subject: UpKind | "connect", what: string): void;
}

/** Builds the embedded broker's ingest dispatch. */
export function createDispatch(deps: DispatchDeps): Dispatch {
  const { deviceSide, logger, metrics, now, logOncePerClient } = deps;
  const unavailableSince = { loggedAt: Number.NEGATIVE_INFINITY, count: 0 };

  /** Every publishing client authenticated through verifyConnect; a missing session fails closed. */
  function sessionOf(session: DeviceSession | undefined, kind: string): DeviceSession {
    if (!session) throw new LivenessRefusal(`${kind} on a connection without a verified session`, "wrong-connection");
    return session;
  }

  /**
   * Revocation bites within identityCacheMs even for a connection that is already open (HW-AUTH-1).
   * Resolves "unavailable" (having changed nothing that a second attempt would not redo) when the database could
   * not be reached, so the caller can hold the message and try again (HW-FAULT-2); anything else is "done".
   */
  async function ingestIfAccepted(client: Client, deviceId: string, kind: UpKind, payload: Buffer): Promise<IngestOutcome> {
    let identity: ConnectIdentity | null;
    try {
      identity = await deps.identities.get(deviceId, "cached");
    } catch (error) {
      if (isTransientDatabaseError(error)) return "unavailable";
      logger.error({ deviceId, err: error }, "identity lookup failed during PUBLISH");
      metrics.messagesRejected.inc({ kind, reason: "identity-unavailable" });
      return "done";
    }
    if (identity?.enrollment !== "accepted") {
      metrics.aclDenied.inc({ action: "publish", reason: "not-accepted" });
      logOncePerClient(client, "publish:not-accepted", { kind }, "mqtt client disconnected: no longer accepted");
      client.close();
      return "done";
    }
    const session = deps.sessions.get(client);
    // Key rotation: hello and heartbeat verify with the key enrolled now (as evidence, events and acks do).
    if (session) session.publicKey = identity.publicKey;
    return ingest(client, deviceId, kind, payload, session);
  }

  async function ingest(client: Client, deviceId: string, kind: UpKind, payload: Buffer, session: DeviceSession | undefined): Promise<IngestOutcome> {
    try {
      const message = parsePayload(upSchemas[kind], payload, `${kind} from ${deviceId}`);
      if (message.deviceId !== deviceId) {
        // A device signs with its own key, but a payload naming another device is never handed over.
        metrics.messagesRejected.inc({ kind, reason: "device-mismatch" });
        logOncePerClient(client, "device-mismatch", { kind, payloadDeviceId: clipForLog(message.deviceId) }, "mqtt message dropped");
        return "done";
      }
      await dispatchUp(deviceSide, message, () => sessionOf(session, message.type));
      metrics.messagesTotal.inc({ kind });
    } catch (error) {
      // Every handler writes in one transaction (HW-DB-1) and is idempotent for a redelivered message (event ids
      // stored once, an ack recorded once, evidence seq checked), so a failed attempt can simply be made again.
      if (isTransientDatabaseError(error)) return "unavailable";
      const reason = rejectionReason(kind, error);
      metrics.messagesRejected.inc({ kind, reason });
      if (reason === "internal") {
        logger.error({ deviceId, kind, err: error }, "mqtt message handler failed");
      } else {
        const detail = error instanceof Error ? error.message : String(error);
        logOncePerClient(client, `${kind}:${reason}`, { kind, detail: detail.slice(0, 512) }, "mqtt message dropped");
      }
    }
    return "done";
  }

  /**
   * HW-FAULT-2: a device deletes a QoS 1 message (an ack, an event from its outbox) once it has the PUBACK, so the
   * message is handled (committed) BEFORE the PUBACK goes out. While the database is unreachable the message is
   * held and tried again with backoff, keeping the device's order (its ingest chain and socket wait); after
   * `ingestRetryMs`, or if the broker closes, it is refused: aedes closes the connection without a PUBACK and the
   * device sends it again after reconnecting. A QoS 0 message (heartbeats) is the device's fire-and-forget: it
   * is dropped and counted (reason `unavailable`), never held.
   */
  async function ingestDurably(client: Client, deviceId: string, kind: UpKind, payload: Buffer, qos: number): Promise<boolean> {
    const deadline = now() + deps.ingestRetryMs;
    for (let attempt = 0; ; attempt++) {
      const outcome = await ingestIfAccepted(client, deviceId, kind, payload);
      if (outcome === "done") return true;
      const gone = deps.isClosing() || (client as unknown as { closed?: boolean }).closed === true;
      if (qos === 0 || gone || now() >= deadline) {
        metrics.messagesRejected.inc({ kind, reason: "unavailable" });
        noteUnavailable(kind, qos === 0 ? "dropped (QoS 0)" : "refused without PUBACK; the device sends it again");
        return qos === 0;
      }
      metrics.ingestRetries.inc({ kind });
      noteUnavailable(kind, "held for retry");
      await backoff(attempt);
    }
  }

  function noteUnavailable(subject: UpKind | "connect", what: string): void {
    unavailableSince.count += 1;
    const at = now();
    if (at - unavailableSince.loggedAt < UNAVAILABLE_LOG_INTERVAL_MS) return;
    logger.warn({ subject, action: what, sinceLastLine: unavailableSince.count }, "database unavailable: device messages held or refused (HW-FAULT-2)");
    unavailableSince.loggedAt = at;
    unavailableSince.count = 0;
  }

  async function retryTransient(what: string, deviceId: string, work: () => Promise<void>): Promise<void> {
    const deadline = now() + deps.ingestRetryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await work();
        return;
      } catch (error) {
        if (!isTransientDatabaseError(error) || deps.isClosing() || now() >= deadline) {
          logger.error({ deviceId, err: error }, `${what} failed`);
          return;
        }
      }
      await backoff(attempt);
    }
  }

  return { ingestDurably, retryTransient, noteUnavailable };
}
