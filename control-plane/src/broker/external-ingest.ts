/**
 * Device messages that arrive through an external broker (RabbitMQ over AMQP, EMQX over an MQTT 5 shared
 * subscription): the checks the embedded broker makes at PUBLISH time, made at delivery, then the shared ingest
 * (./ingest.ts), one message at a time per device, in arrival order.
 *   - the topic must be a device's up topic and the payload at most the cap (HW-BROKER-3, reason `oversize`);
 *   - the device must still be `accepted` (identity from the hooks' cache; revocation clears it);
 *   - HW-LIVE-1: a message does not say which connection carried it, so the session is the device's latest
 *     authenticated connection: the nonce a hook accepted last for it (this replica's memory, else the database's
 *     newest unexpired nonce row). When neither knows one (connection older than the token lifetime and ingest
 *     moved to another replica since) the message's own nonce is adopted.
 * `settle` is called with the outcome inside the device's slot, so the broker acknowledgement (AMQP ack, MQTT
 * PUBACK) keeps the device's order: "done" = handled or dropped for good, "retry" = an internal failure (the
 * database), to be handed back to the broker.
 */
import { and, desc, eq, gt } from "drizzle-orm";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { ingestMetrics } from "./metrics.js";
import { isDeviceId, MAX_PAYLOAD_BYTES, parsePayload, parseTopic, upSchemas, type UpKind } from "../../../shared/protocol/index.js";
import { connectTokenNonces, type Database } from "../db/index.js";
import type { ConnectIdentity, DevicePublisher, DeviceSession, DeviceSideService } from "../service/index.js";
import { DeviceWorkQueue } from "./device-queue.js";
import { dispatchUp, rejectionReason } from "./ingest.js";

/** What every external-broker transport (RabbitMQ, EMQX) is started with; `C` is its section of the broker config. */
export interface ExternalTransportDeps<C> {
  config: C;
  deviceSide: DeviceSideService;
  db: Database;
  logger: Logger;
  registry: Registry;
  now?: () => number;
  /** Largest payload handled (bytes); default and cap MAX_PAYLOAD_BYTES. */
  maxPayloadBytes?: number;
}

/** What every external-broker transport gives the plane. */
export interface ExternalTransport {
  publisher: DevicePublisher;
  /** The bound hook port (HASHWARD_BROKER_HOOK_PORT, or the one port 0 picked). */
  hookPort: number;
  /** Closes the device's connections through the broker's management API and forgets its cached identity. */
  disconnect(deviceId: string): void;
  close(): Promise<void>;
}

/** What became of one delivery. */
export type IngestOutcome = "done" | "retry";

export interface ExternalIngestDeps {
  deviceSide: DeviceSideService;
  db: Database;
  /** The device's identity, from the hooks' cache (throws when the lookup fails: the delivery is retried). */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  logger: Logger;
  registry: Registry;
  now?: () => number;
  /** Largest payload handled (bytes); default and cap MAX_PAYLOAD_BYTES. */
  maxPayloadBytes?: number;
  /**
   * When set, a "retry" outcome is tried again in the device's slot with backoff (100 ms doubling to 2 s) for as
   * long as this answers true, and settled "retry" only once it answers false (HW-FAULT-2: a database outage holds
   * the message; the broker's own redelivery is the fallback). Unset: settled "retry" at once (RabbitMQ requeues).
   */
  keepRetrying?: (firstFailureAt: number) => boolean;
}

export interface ExternalIngest {
  /**
   * Handles one delivery of MQTT `topic` (asic/v1/<id>/up/<kind>) in its device's order; `settle` runs with the
   * outcome in the device's slot (acknowledge there). Resolves when settled. Never rejects: a throwing settle is logged.
   */
  handle(topic: string, payload: Buffer, settle: (outcome: IngestOutcome) => Promise<void> | void): Promise<void>;
  /** A hook accepted this connect-token nonce for the device (its current connection, HW-LIVE-1). */
  onAuthenticated(deviceId: string, connectNonce: string): void;
  /** Forgets the device's session (revocation). */
  forget(deviceId: string): void;
  /** Runs `work` in the device's slot (connect/disconnect bookkeeping in order with its messages). */
  enqueue(deviceId: string, work: () => Promise<void>): Promise<void>;
  /** Waits for everything queued. */
  drain(): Promise<void>;
}

const MAX_REMEMBERED = 200_000;

/** The ingest both external broker transports share (see the file comment). */
export function createExternalIngest(deps: ExternalIngestDeps): ExternalIngest {
  const { deviceSide, db, logger, registry } = deps;
  const now = deps.now ?? Date.now;
  const maxPayloadBytes = Math.min(deps.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES);
  const { messagesTotal, messagesRejected, ingestRetries: retries } = ingestMetrics(registry);
  const queue = new DeviceWorkQueue();
  /** HW-LIVE-1: the session of each device's current connection. */
  const sessions = new Map<string, DeviceSession>();
  /** Nonces this replica's hooks accepted last, per device (the fast path; the database answers for the others). */
  const acceptedNonce = new Map<string, string>();

  /** The latest unexpired connect-token nonce any replica recorded for the device (its current connection). */
  async function latestNonce(deviceId: string): Promise<string | null> {
    const rows = await db
      .select({ nonce: connectTokenNonces.nonce })
      .from(connectTokenNonces)
      .where(and(eq(connectTokenNonces.deviceId, deviceId), gt(connectTokenNonces.expiresAt, new Date(now()))))
      .orderBy(desc(connectTokenNonces.expiresAt))
      .limit(1);
    return rows[0]?.nonce ?? null;
  }

  async function sessionFor(deviceId: string, messageNonce: string, publicKey: string): Promise<DeviceSession> {
    const current = sessions.get(deviceId);
    if (current && current.connectNonce === messageNonce) {
      current.publicKey = publicKey;
      return current;
    }
    const latest = acceptedNonce.get(deviceId) === messageNonce ? messageNonce : await latestNonce(deviceId);
    const nonce = latest ?? messageNonce;
    if (current && current.connectNonce === nonce) return current;
    const session: DeviceSession = { connectNonce: nonce, publicKey, lastHeartbeatSeq: -1 };
    if (sessions.size >= MAX_REMEMBERED) sessions.clear();
    sessions.set(deviceId, session);
    return session;
  }

  async function ingest(deviceId: string, kind: UpKind, payload: Buffer): Promise<IngestOutcome> {
    const identity = await deps.identity(deviceId).catch((error: unknown) => {
      logger.error({ deviceId, err: error }, "identity lookup failed during ingest");
      return undefined;
    });
    if (identity === undefined) return "retry";
    if (identity?.enrollment !== "accepted") {
      messagesRejected.inc({ kind, reason: "not-accepted" });
      return "done";
    }
    try {
      const message = parsePayload(upSchemas[kind], payload, `${kind} from ${deviceId}`);
      if (message.deviceId !== deviceId) {
        messagesRejected.inc({ kind, reason: "device-mismatch" });
        return "done";
      }
      const session = message.type === "hello" || message.type === "heartbeat" ? await sessionFor(deviceId, message.connectNonce, identity.publicKey) : null;
      await dispatchUp(deviceSide, message, () => session as DeviceSession);
      messagesTotal.inc({ kind });
      return "done";
    } catch (error) {
      const reason = rejectionReason(kind, error);
      if (reason === "internal") {
        logger.error({ deviceId, kind, err: error }, "device message handler failed; handing it back to the broker");
        return "retry";
      }
      messagesRejected.inc({ kind, reason });
      logger.debug({ deviceId, kind, reason, detail: error instanceof Error ? error.message.slice(0, 512) : String(error) }, "device message dropped");
      return "done";
    }
  }

  async function ingestHolding(deviceId: string, kind: UpKind, payload: Buffer): Promise<IngestOutcome> {
    const firstAt = now();
    for (let attempt = 0; ; attempt++) {
      const outcome = await ingest(deviceId, kind, payload);
      if (outcome === "done" || !deps.keepRetrying?.(firstAt)) return outcome;
      retries.inc({ kind });
      await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** attempt)));
    }
  }

  async function settleSafely(settle: (outcome: IngestOutcome) => Promise<void> | void, outcome: IngestOutcome, deviceId: string): Promise<void> {
    try {
      await settle(outcome);
    } catch (error) {
      // The channel or connection closed meanwhile: the broker redelivers (handlers are idempotent per id/seq).
      logger.warn({ deviceId, err: error }, "could not acknowledge a delivery; it will be redelivered");
    }
  }

  return {
    async handle(topic, payload, settle) {
      const parsed = parseTopic(topic);
      if (parsed === null || parsed.direction !== "up" || !isDeviceId(parsed.deviceId)) {
        messagesRejected.inc({ kind: "unknown", reason: "foreign-topic" });
        await settleSafely(settle, "done", "unknown");
        return;
      }
      const { deviceId, kind } = parsed;
      if (payload.length > maxPayloadBytes) {
        messagesRejected.inc({ kind, reason: "oversize" }); // HW-BROKER-3
        await settleSafely(settle, "done", deviceId);
        return;
      }
      await queue.enqueue(deviceId, async () => settleSafely(settle, await ingestHolding(deviceId, kind, payload), deviceId));
    },
    onAuthenticated(deviceId, nonce) {
      if (acceptedNonce.size >= MAX_REMEMBERED) acceptedNonce.clear();
      acceptedNonce.set(deviceId, nonce);
    },
    forget(deviceId) {
      sessions.delete(deviceId);
    },
    enqueue: (deviceId, work) => queue.enqueue(deviceId, work),
    drain: () => queue.drain(),
  };
}
