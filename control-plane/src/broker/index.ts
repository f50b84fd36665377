/**
 * The embedded MQTT 3.1.1 broker (aedes) and the device ingest.
 *
 * Broker policy is aedes hook options, each one failing closed:
 *   - authenticate: username = device id, clientId = username, password = a connect token signed by that
 *     device's enrolled key, single-use, and the device must be `accepted` (HW-AUTH-1).
 *   - authorizePublish: only `asic/v1/<own id>/up/<kind>`, payload <= MAX_PAYLOAD_BYTES, device still accepted
 *     (HW-TOPIC-1). Anything else is an error, and aedes closes the connection.
 *   - authorizeSubscribe: only the client's own down/ topics (HW-TOPIC-1); anything else closes the connection.
 *   - authorizeForward: a message reaches a client only when it is that client's own down/ topic, so a device
 *     message is never relayed to another device whatever the subscriptions.
 *   - authorizePublish also hands every accepted up/ message, parsed with its schema, to the DeviceSideService,
 *     in arrival order per device, BEFORE aedes sends the PUBACK; while the database is unreachable the message
 *     is held and retried, and refused without a PUBACK if that lasts (HW-FAULT-2).
 *   - liveness (HW-LIVE-1): each authenticated connection gets a DeviceSession (its connect token's nonce, the
 *     enrolled key, the last heartbeat seq accepted on it) handed to the service with every hello and heartbeat;
 *     the service takes last-seen and telemetry only from those whose signature verifies for this connection.
 *     An unsigned one is reason `unsigned`; refused ones carry the LivenessRefusal reason.
 *
 * Malformed or refused payloads (bad JSON, schema, signature, freshness, deviceId != topic's) are dropped,
 * counted in hashward_mqtt_messages_rejected_total{kind,reason} and logged once per (client, reason); the client
 * stays connected, because a well-formed topic from an authenticated device is not an attack on the broker and
 * a buggy or outdated agent should keep its heartbeat and command path. Topic and size violations disconnect.
 */
import type { EventEmitter } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from "aedes";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { verifyConnectToken, NonceMemory } from "../../../shared/auth/connect-token.js";
import { fromBase64Url, verifyBytesFast } from "../../../shared/crypto/index.js";
import { FreshnessError, ValidationError } from "../../../shared/errors/index.js";
import {
  downFilter,
  downTopic,
  encodePayload,
  isDeviceId,
  MAX_PAYLOAD_BYTES,
  parsePayload,
  parseTopic,
  upSchemas,
  type Challenge,
  type Command,
  type UpKind,
} from "../../../shared/protocol/index.js";
import { isTransientDatabaseError } from "../db/transient.js";
import { LivenessRefusal } from "../errors.js";
import { dispatchUp, rejectionReason } from "./ingest.js";
import { clipForLog } from "../log/index.js";
import type { ConnectIdentity, DevicePublisher, DeviceSession, DeviceSideService } from "../service/index.js";
import { DeviceWorkQueue } from "./device-queue.js";

export interface BrokerDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  registry: Registry;
  now?: () => number;
  /** Largest accepted PUBLISH payload; default MAX_PAYLOAD_BYTES. */
  maxPayloadBytes?: number;
  /** How long a device's enrollment state is trusted without asking again; default 10000, capped at 30000. Revoke and reject through this plane disconnect at once (disconnect()); this bounds the other paths. */
  identityCacheMs?: number;
  /** Concurrent TCP connections the listener accepts; default 20000. */
  maxClients?: number;
  /** A socket that has not completed CONNECT by then is closed; default 10000. */
  connectTimeoutMs?: number;
  /**
   * HW-MTLS-1: the listener already demands a client certificate from the plane's CA; the CONNECT username must
   * also be its subject CN (a device's certificate does not let it pose as another device).
   */
  requireClientCertificate?: boolean;
  /**
   * HW-FAULT-2: how long a QoS 1 device message is held and retried while the database is unreachable before it
   * is refused without a PUBACK (the device sends it again after reconnecting); default 30000.
   */
  ingestRetryMs?: number;
}

/** What handling one device message came to: handled (or refused for good), or the database was unreachable. */
type IngestOutcome = "done" | "unavailable";
const DEFAULT_INGEST_RETRY_MS = 30_000;
const INGEST_RETRY_MIN_DELAY_MS = 100;
const INGEST_RETRY_MAX_DELAY_MS = 2_000;
const UNAVAILABLE_LOG_INTERVAL_MS = 10_000;

export interface Broker {
  aedes: Aedes;
  publisher: DevicePublisher;
  /**
   * Starts an MQTT listener; resolves with the bound port (useful with port 0). `makeServer` builds the listening
   * server around the connection handler (default plain TCP; the plane passes tls.createServer, HW-TLS-1).
   */
  listen(port: number, host?: string, makeServer?: (onConnection: (socket: Socket) => void) => Server): Promise<number>;
  /** Closes a device's live connection now (call after revoke/reject so revocation bites at once). */
  disconnect(deviceId: string): void;
  /** Stops accepting, closes every client, waits for in-flight ingest. Idempotent. */
  close(): Promise<void>;
}

/** aedes' CONNACK return codes (MQTT 3.1.1 table 3.1). */
const CONNACK = {
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

const MAX_IDENTITY_CACHE_MS = 30_000;
const MAX_PASSWORD_BYTES = 2_048;
/** Topic, length prefixes and message id on top of the payload. */
const PACKET_OVERHEAD_BYTES = 1_024;
const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** HW-LOG-1: peers whose last refusal time is remembered; the oldest is forgotten beyond this. */
const REFUSAL_LOG_MAX_PEERS = 1_024;
/** HW-LOG-1: refused-CONNECT lines per REFUSAL_LOG_INTERVAL_MS for all peers together (many source addresses). */
const REFUSAL_LOG_MAX_LINES_PER_INTERVAL = 100;
/** The peer's address ("ip:port" is too fine: one attacker opens many ports), or "unknown". */
function peerAddress(client: Client): string {
  const conn = (client as unknown as { conn?: { remoteAddress?: string } }).conn;
  return conn?.remoteAddress ?? "unknown";
}

type RefusalReason =
  | "bad-username"
  | "client-certificate"
  | "client-id-mismatch"
  | "unknown-device"
  | "not-accepted"
  | "bad-token"
  | "expired-token"
  | "replayed-token"
  | "unavailable";

class ConnectRefusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly returnCode: number,
    detail: string,
  ) {
    super(detail);
  }
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { deviceSide, registry } = deps;
  const logger = deps.logger.child({ component: "mqtt" });
  const now = deps.now ?? Date.now;
  const maxPayloadBytes = Math.min(deps.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES);
  const identityCacheMs = Math.min(deps.identityCacheMs ?? 10_000, MAX_IDENTITY_CACHE_MS);
  const maxClients = deps.maxClients ?? 20_000;
  const ingestRetryMs = deps.ingestRetryMs ?? DEFAULT_INGEST_RETRY_MS;

  const messagesTotal = new Counter({
    name: "hashward_mqtt_messages_total",
    help: "Device messages accepted and handled, by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const messagesRejected = new Counter({
    name: "hashward_mqtt_messages_rejected_total",
    help: "Device messages dropped, by kind and reason (invalid, device-mismatch, stale, unverified, internal, unavailable: the database was unreachable; for hello and heartbeat also unsigned, bad-signature, wrong-connection, replay, clock)",
    labelNames: ["kind", "reason"] as const,
    registers: [registry],
  });
  const ingestRetries = new Counter({
    name: "hashward_mqtt_ingest_retries_total",
    help: "Device messages tried again because the database was unreachable (HW-FAULT-2), by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const aclDenied = new Counter({
    name: "hashward_mqtt_acl_denied_total",
    help: "Publishes/subscriptions refused by the topic ACL or size cap (the client is disconnected)",
    labelNames: ["action", "reason"] as const,
    registers: [registry],
  });
  const sessionTakeovers = new Counter({
    name: "hashward_mqtt_session_takeovers_total",
    help: "Authenticated CONNECTs that took over a device's live session (HW-AUTH-2)",
    registers: [registry],
  });
  const connectRefused = new Counter({
    name: "hashward_mqtt_connect_refused_total",
    help: "MQTT CONNECTs refused, by reason",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  /** Devices with an authenticated, live connection (the one aedes knows under their id). */
  const live = new Map<string, Client>();
  new Gauge({
    name: "hashward_mqtt_connected_devices",
    help: "Devices with a live authenticated MQTT connection",
    registers: [registry],
    collect() {
      this.set(live.size);
    },
  });

  // HW-AUTH-1: each connect token is usable once for the broker's lifetime (nonces kept until expiry).
  const nonces = new NonceMemory();
  const identities = new Map<string, { identity: ConnectIdentity | null; at: number }>();
  /** HW-LOG-1: last refusal line per (peer address, reason), insertion-ordered so the oldest goes first. */
  const refusalLoggedAt = new Map<string, number>();
  const refusalWindow = { startedAt: 0, lines: 0, suppressed: 0 };
  const loggedPerClient = new WeakMap<Client, Set<string>>();
  /** HW-LIVE-1: the session of each authenticated connection (set once its CONNECT verified). */
  const sessions = new WeakMap<Client, DeviceSession>();
  /** Per-device ingest chain: messages and connect/disconnect events are handled one at a time, in order. */
  const queue = new DeviceWorkQueue();
  /** Set by close(): held messages stop waiting for the database. */
  let closing: Promise<void> | null = null;
  const unavailableSince = { loggedAt: Number.NEGATIVE_INFINITY, count: 0 };

  function logOncePerClient(client: Client, reason: string, fields: Record<string, unknown>, msg: string): void {
    let seen = loggedPerClient.get(client);
    if (!seen) loggedPerClient.set(client, (seen = new Set()));
    if (seen.has(reason)) return;
    seen.add(reason);
    logger.warn({ deviceId: client.id, reason, ...fields }, msg);
  }

  async function lookupIdentity(deviceId: string, fresh: boolean): Promise<ConnectIdentity | null> {
    const at = now();
    const cached = identities.get(deviceId);
    if (!fresh && cached && at - cached.at < identityCacheMs) return cached.identity;
    const identity = await deviceSide.identityForConnect(deviceId);
    if (identities.size >= maxClients * 2) identities.clear(); // bounded; entries are cheap to refetch
    identities.set(deviceId, { identity, at });
    return identity;
  }

  const enqueue = (deviceId: string, work: () => Promise<void>): Promise<void> => queue.enqueue(deviceId, work);

  async function verifyConnect(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    if (username === undefined || !isDeviceId(username)) {
      throw new ConnectRefusal("bad-username", CONNACK.badUsernameOrPassword, "username is not a device id");
    }
    if (client.id !== username) {
      // [MQTT-3.1.3-9]: a refused client identifier is answered with return code 2.
      throw new ConnectRefusal("client-id-mismatch", CONNACK.identifierRejected, `clientId ${JSON.stringify(clipForLog(client.id))} is not the username`);
    }
    if (password === undefined || password.length === 0 || password.length > MAX_PASSWORD_BYTES) {
      throw new ConnectRefusal("bad-token", CONNACK.badUsernameOrPassword, "password is missing or too long");
    }
    let identity: ConnectIdentity | null;
    try {
      identity = await lookupIdentity(username, true);
    } catch (cause) {
      // A database outage refuses every CONNECT: one throttled line (HW-FAULT-2), not one error per device.
      if (isTransientDatabaseError(cause)) noteUnavailable("connect", "CONNECT refused (server unavailable); the device retries");
      else logger.error({ deviceId: username, err: cause }, "identity lookup failed during CONNECT");
      throw new ConnectRefusal("unavailable", CONNACK.serverUnavailable, "identity lookup failed");
    }
    if (identity === null) throw new ConnectRefusal("unknown-device", CONNACK.notAuthorized, "device is not enrolled");
    if (identity.enrollment !== "accepted") {
      throw new ConnectRefusal("not-accepted", CONNACK.notAuthorized, `enrollment is ${identity.enrollment}`);
    }
    const at = now();
    let claims;
    try {
      claims = verifyConnectToken(password.toString("utf8"), username, fromBase64Url(identity.publicKey), at, verifyBytesFast);
    } catch (error) {
      if (error instanceof FreshnessError) throw new ConnectRefusal("expired-token", CONNACK.badUsernameOrPassword, error.message);
      const detail = error instanceof Error ? error.message : String(error);
      throw new ConnectRefusal("bad-token", CONNACK.badUsernameOrPassword, detail);
    }
    // HW-AUTH-1: memory answers a replay on this process at once; the database remembers across restarts/replicas.
    let fresh = nonces.remember(claims.nonce, claims.exp, at);
    if (fresh) {
      try {
        fresh = await deviceSide.rememberConnectNonce(username, claims.nonce, claims.exp);
      } catch (cause) {
        if (isTransientDatabaseError(cause)) noteUnavailable("connect", "CONNECT refused (server unavailable); the device retries");
        else logger.error({ deviceId: username, err: cause }, "token nonce could not be recorded during CONNECT");
        throw new ConnectRefusal("unavailable", CONNACK.serverUnavailable, "token nonce could not be recorded");
      }
    }
    if (!fresh) {
      throw new ConnectRefusal("replayed-token", CONNACK.badUsernameOrPassword, "connect token nonce was already used");
    }
    sessions.set(client, { connectNonce: claims.nonce, publicKey: identity.publicKey, lastHeartbeatSeq: -1 });
  }

  /** Every publishing client authenticated through verifyConnect; a missing session fails closed. */
  function sessionOf(session: DeviceSession | undefined, kind: string): DeviceSession {
    if (!session) throw new LivenessRefusal(`${kind} on a connection without a verified session`, "wrong-connection");
    return session;
  }

  /**
   * HW-LOG-1: refused CONNECTs are counted always and logged at most once per REFUSAL_LOG_INTERVAL_MS per
   * (peer address, reason), never keyed on what the peer chose (username, client id); at most
   * REFUSAL_LOG_MAX_LINES_PER_INTERVAL lines per interval overall, then one line saying how many were suppressed;
   * every attacker-chosen field is clipped (clipForLog).
   */
  function logRefusal(client: Client, username: string | undefined, refusal: ConnectRefusal): void {
    connectRefused.inc({ reason: refusal.reason });
    const peer = peerAddress(client);
    const key = `${peer}\u0000${refusal.reason}`;
    const at = now();
    const last = refusalLoggedAt.get(key);
    if (last !== undefined && at - last < REFUSAL_LOG_INTERVAL_MS) return;
    if (at - refusalWindow.startedAt >= REFUSAL_LOG_INTERVAL_MS) {
      if (refusalWindow.suppressed > 0) {
        logger.warn({ suppressed: refusalWindow.suppressed, intervalMs: REFUSAL_LOG_INTERVAL_MS }, "mqtt connect refusals not logged (too many peers)");
      }
      Object.assign(refusalWindow, { startedAt: at, lines: 0, suppressed: 0 });
    }
    if (refusalWindow.lines >= REFUSAL_LOG_MAX_LINES_PER_INTERVAL) {
      refusalWindow.suppressed += 1;
      return;
    }
    refusalWindow.lines += 1;
    refusalLoggedAt.delete(key);
    refusalLoggedAt.set(key, at);
    while (refusalLoggedAt.size > REFUSAL_LOG_MAX_PEERS) {
      const oldest = refusalLoggedAt.keys().next().value;
      if (oldest === undefined) break;
      refusalLoggedAt.delete(oldest);
    }
    logger.warn(
      {
        peer,
        deviceId: clipForLog(username ?? "(none)"),
        clientId: clipForLog(client.id),
        reason: refusal.reason,
        returnCode: refusal.returnCode,
        detail: clipForLog(refusal.message, 256),
      },
      "mqtt connect refused",
    );
  }

  /**
   * HW-AUTH-2: a second authenticated CONNECT under a device's id closes its live session (MQTT 3.1.1 3.1.4-2).
   * Either the device reconnected before its old socket died, or its key or token leaked: a warn line with both
   * peer addresses, a metric, and a device event that counts against the device (service onSessionTakeover).
   */
  function noteTakeover(deviceId: string, previous: Client, next: Client): void {
    const peers = { previousPeer: peerAddress(previous), newPeer: peerAddress(next) };
    sessionTakeovers.inc();
    logger.warn({ deviceId, ...peers }, "mqtt session takeover: a second authenticated CONNECT replaced the device's live session");
    void enqueue(deviceId, async () => {
      await deviceSide.onSessionTakeover?.(deviceId, peers).catch((error: unknown) => {
        logger.error({ deviceId, err: error }, "onSessionTakeover failed");
      });
    });
  }

  function denyAcl(client: Client, action: "publish" | "subscribe", reason: string, topic: string, callback: (error: Error) => void): void {
    aclDenied.inc({ action, reason });
    // HW-LOG-1: the topic is the client's choice (up to 64 KiB): clipped.
    logOncePerClient(client, `${action}:${reason}`, { action, topic: clipForLog(topic, 256) }, "mqtt client disconnected: ACL violation");
    callback(new Error(`${action} refused: ${reason} (${clipForLog(topic, 256)})`));
  }

  /**
   * Revocation bites within identityCacheMs even for a connection that is already open (HW-AUTH-1).
   * Resolves "unavailable" (having changed nothing that a second attempt would not redo) when the database could
   * not be reached, so the caller can hold the message and try again (HW-FAULT-2); anything else is "done".
   */
  async function ingestIfAccepted(client: Client, deviceId: string, kind: UpKind, payload: Buffer): Promise<IngestOutcome> {
    let identity: ConnectIdentity | null;
    try {
      identity = await lookupIdentity(deviceId, false);
    } catch (error) {
      if (isTransientDatabaseError(error)) return "unavailable";
      logger.error({ deviceId, err: error }, "identity lookup failed during PUBLISH");
      messagesRejected.inc({ kind, reason: "identity-unavailable" });
      return "done";
    }
    if (identity?.enrollment !== "accepted") {
      aclDenied.inc({ action: "publish", reason: "not-accepted" });
      logOncePerClient(client, "publish:not-accepted", { kind }, "mqtt client disconnected: no longer accepted");
      client.close();
      return "done";
    }
    const session = sessions.get(client);
    // Key rotation: hello and heartbeat verify with the key enrolled now (as evidence, events and acks do).
    if (session) session.publicKey = identity.publicKey;
    return ingest(client, deviceId, kind, payload, session);
  }

  async function ingest(client: Client, deviceId: string, kind: UpKind, payload: Buffer, session: DeviceSession | undefined): Promise<IngestOutcome> {
    try {
      const message = parsePayload(upSchemas[kind], payload, `${kind} from ${deviceId}`);
      if (message.deviceId !== deviceId) {
        // A device signs with its own key, but a payload naming another device is never handed over.
        messagesRejected.inc({ kind, reason: "device-mismatch" });
        logOncePerClient(client, "device-mismatch", { kind, payloadDeviceId: clipForLog(message.deviceId) }, "mqtt message dropped");
        return "done";
      }
      await dispatchUp(deviceSide, message, () => sessionOf(session, message.type));
      messagesTotal.inc({ kind });
    } catch (error) {
      // Every handler writes in one transaction (HW-DB-1) and is idempotent for a redelivered message (event ids
      // stored once, an ack recorded once, evidence seq checked), so a failed attempt can simply be made again.
      if (isTransientDatabaseError(error)) return "unavailable";
      const reason = rejectionReason(kind, error);
      messagesRejected.inc({ kind, reason });
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
   * Resolves true when the message was handled (PUBACK may go), false when the device must send it again.
   */
  async function ingestDurably(client: Client, deviceId: string, kind: UpKind, payload: Buffer, qos: number): Promise<boolean> {
    const deadline = now() + ingestRetryMs;
    for (let attempt = 0; ; attempt++) {
      const outcome = await ingestIfAccepted(client, deviceId, kind, payload);
      if (outcome === "done") return true;
      const gone = closing !== null || (client as unknown as { closed?: boolean }).closed === true;
      if (qos === 0 || gone || now() >= deadline) {
        messagesRejected.inc({ kind, reason: "unavailable" });
        noteUnavailable(kind, qos === 0 ? "dropped (QoS 0)" : "refused without PUBACK; the device sends it again");
        return qos === 0;
      }
      ingestRetries.inc({ kind });
      noteUnavailable(kind, "held for retry");
      await new Promise((resolve) => setTimeout(resolve, Math.min(INGEST_RETRY_MAX_DELAY_MS, INGEST_RETRY_MIN_DELAY_MS * 2 ** attempt)));
    }
  }

  /** One warn line per UNAVAILABLE_LOG_INTERVAL_MS while the database is out, not one per message. */
  function noteUnavailable(subject: UpKind | "connect", what: string): void {
    unavailableSince.count += 1;
    const at = now();
    if (at - unavailableSince.loggedAt < UNAVAILABLE_LOG_INTERVAL_MS) return;
    logger.warn({ subject, action: what, sinceLastLine: unavailableSince.count }, "database unavailable: device messages held or refused (HW-FAULT-2)");
    unavailableSince.loggedAt = at;
    unavailableSince.count = 0;
  }

  /** onConnected/onDisconnected bookkeeping waits out a database outage too (bounded like message ingest). */
  async function retryTransient(what: string, deviceId: string, work: () => Promise<void>): Promise<void> {
    const deadline = now() + ingestRetryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await work();
        return;
      } catch (error) {
        if (!isTransientDatabaseError(error) || closing !== null || now() >= deadline) {
          logger.error({ deviceId, err: error }, `${what} failed`);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(INGEST_RETRY_MAX_DELAY_MS, INGEST_RETRY_MIN_DELAY_MS * 2 ** attempt)));
    }
  }

  const aedes = await Aedes.createBroker({
    // Device ids are 27 characters; MQTT 3.1's 23-character limit would refuse them.
    maxClientsIdLength: 64,
    connectTimeout: deps.connectTimeoutMs ?? 10_000,
    maxTopicLevels: 8,

    authenticate(client, username, password, done) {
      const certified = !deps.requireClientCertificate || clientCertificateCn(client) === username; // HW-MTLS-1
      (certified ? verifyConnect(client, username, password) : Promise.reject(new ConnectRefusal("client-certificate", CONNACK.notAuthorized, "client certificate is not the device's"))).then(
        () => {
          // HW-AUTH-2: a valid token for a device that is connected right now: the session is being taken over.
          const previous = live.get(client.id);
          if (previous !== undefined && previous !== client) noteTakeover(client.id, previous, client);
          done(null, true);
        },
        (error: unknown) => {
          const refusal =
            error instanceof ConnectRefusal
              ? error
              : new ConnectRefusal("unavailable", CONNACK.serverUnavailable, String(error));
          logRefusal(client, username, refusal);
          const authError = Object.assign(new Error(refusal.message), { returnCode: refusal.returnCode }) as AuthenticateError;
          done(authError, false);
        },
      );
    },

    authorizePublish(client, packet, callback) {
      if (client === null) return callback(null); // the plane's own publishes
      const topic = packet.topic;
      const parsed = parseTopic(topic);
      // HW-TOPIC-1: a device publishes only under its own up/.
      if (parsed === null || parsed.direction !== "up" || parsed.deviceId !== client.id) {
        return denyAcl(client, "publish", "foreign-topic", topic, callback);
      }
      const size = packet.payload.length;
      if (size > maxPayloadBytes) return denyAcl(client, "publish", "oversize", `${topic} (${size} bytes)`, callback);
      // Retained device messages would sit in broker memory and be replayed to later subscribers; none may exist.
      packet.retain = false;
      // HW-FAULT-2: the message is handled here, before aedes writes the PUBACK (aedes 1.2 acks a QoS 1 PUBLISH
      // before its `published` hook runs, so a message handled there was lost when the database or the process
      // failed after the PUBACK). aedes hands over the packets of one socket read together, each through this hook
      // synchronously and in order: enqueueing here keeps the device's order (the ingest chain), and the answers
      // come back in that order, so the PUBACKs do too. The device's enrollment is re-checked in the chain; aedes
      // reads the client's next packets only when these are answered (per-client backpressure).
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const { deviceId, kind } = parsed;
      const qos = packet.qos;
      enqueue(deviceId, () =>
        ingestDurably(client, deviceId, kind, payload, qos).then(
          (handled) => callback(handled ? null : new Error(`${kind} not handled: the database is unavailable (the device sends it again)`)),
          (error: unknown) => {
            // ingest catches what handlers throw; this is a bug in the broker itself: say so, never stall the client.
            logger.error({ deviceId, kind, err: error }, "mqtt ingest failed");
            callback(null);
          },
        ),
      );
    },

    authorizeSubscribe(client, subscription, callback) {
      const topic = subscription.topic;
      const parsed = parseTopic(topic);
      // HW-TOPIC-1: only its own down/ topics, as the one filter or a concrete topic.
      const own = topic === downFilter(client.id) || (parsed?.direction === "down" && parsed.deviceId === client.id);
      if (!own) return denyAcl(client, "subscribe", "foreign-topic", topic, (error) => callback(error, null));
      // HW-MQTT-1: delivered at most at QoS 1 (capSubscribeQos already lowered the SUBACK's grant).
      const granted: Subscription = { ...subscription, qos: Math.min(subscription.qos, MAX_GRANTED_QOS) as 0 | 1 };
      callback(null, granted);
    },

    authorizeForward(client, packet) {
      const parsed = parseTopic(packet.topic);
      // Defence in depth behind authorizeSubscribe: deliver only a client's own down/ messages.
      if (parsed?.direction === "down" && parsed.deviceId === client.id) return packet;
      return null;
    },


  });

  // 'client' fires when aedes registers the connection, before CONNACK: from then on it is the device's
  // connection (a takeover closes the older one first, which emits its clientDisconnect before this).
  aedes.on("client", (client) => {
    live.set(client.id, client);
    logger.info({ deviceId: client.id }, "mqtt device connected");
    void enqueue(client.id, () => retryTransient("onConnected", client.id, () => deviceSide.onConnected(client.id)));
  });
  aedes.on("clientDisconnect", (client) => {
    // A takeover by a newer connection of the same device must not mark the device disconnected.
    if (live.get(client.id) !== client) return;
    live.delete(client.id);
    logger.info({ deviceId: client.id }, "mqtt device disconnected");
    void enqueue(client.id, () => retryTransient("onDisconnected", client.id, () => deviceSide.onDisconnected(client.id)));
  });
  // HW-LOG-1: client ids and error texts can carry what an unauthenticated peer sent: clipped.
  aedes.on("clientError", (client, error) => {
    logger.debug({ deviceId: clipForLog(client.id), peer: peerAddress(client), err: clipForLog(error.message, 256) }, "mqtt client error");
  });
  aedes.on("connectionError", (client, error) => {
    logger.debug({ clientId: clipForLog(client.id), peer: peerAddress(client), err: clipForLog(error.message, 256) }, "mqtt connection error");
  });
  // aedes emits 'error' for persistence failures; an unhandled 'error' event would kill the process.
  (aedes as EventEmitter).on("error", (error: Error) => logger.error({ err: error }, "mqtt broker error"));

  const publisher: DevicePublisher = {
    publish(deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
      if (message.deviceId !== deviceId) {
        return Promise.reject(new ValidationError(`${kind} for ${message.deviceId} published to ${deviceId}`, "deviceId"));
      }
      const packet: PublishPacket = {
        cmd: "publish",
        topic: downTopic(deviceId, kind),
        payload: encodePayload(message),
        qos: 1,
        retain: false,
        dup: false,
      };
      return new Promise((resolve, reject) => aedes.publish(packet, (error) => (error ? reject(error) : resolve())));
    },
    isConnected(deviceId: string): boolean {
      return live.has(deviceId);
    },
  } as DevicePublisher;

  const maxPacketBytes = maxPayloadBytes + PACKET_OVERHEAD_BYTES;
  const servers: Server[] = [];

  function handleSocket(socket: Socket): void {
    const client = aedes.handle(socket);
    capSubscribeQos(client);
    capPacketSize(client, maxPacketBytes, () => {
      aclDenied.inc({ action: "packet", reason: "oversize" });
      logger.warn({ clientId: clipForLog(client.id), peer: peerAddress(client), reason: "oversize", maxPacketBytes }, "mqtt client disconnected: packet too large");
    });
  }

  return {
    aedes,
    publisher,
    listen(port: number, host = "0.0.0.0", makeServer = (onConnection: (socket: Socket) => void): Server => createServer(onConnection)): Promise<number> {
      const server = makeServer(handleSocket);
      server.maxConnections = maxClients;
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          server.on("error", (error) => logger.error({ err: error }, "mqtt listener error"));
          servers.push(server);
          const address = server.address();
          resolve(typeof address === "object" && address !== null ? address.port : port);
        });
      });
    },
    disconnect(deviceId: string): void {
      identities.delete(deviceId);
      const client = live.get(deviceId);
      if (!client) return;
      logger.info({ deviceId }, "mqtt device disconnected by the plane");
      client.close();
    },
    close(): Promise<void> {
      closing ??= (async () => {
        const stopped = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await Promise.all(stopped);
        await queue.drain();
      })();
      return closing;
    },
  };
}

/** The highest QoS the broker delivers with: the plane publishes commands and challenges at QoS 1. */
export const MAX_GRANTED_QOS = 1;

/**
 * HW-MQTT-1: a SUBACK grants min(requested, MAX_GRANTED_QOS) ([MQTT-3.9.3-1]: the granted QoS is the maximum the
 * server delivers with). aedes 1.2 copies the requested QoS into the SUBACK before authorizeSubscribe runs, so
 * the requested QoS is lowered as the SUBSCRIBE packet leaves the parser, before any handler sees it. When the
 * internals differ, authorizeSubscribe still caps the QoS actually delivered.
 */
function capSubscribeQos(client: Client): void {
  const parser = (client as unknown as { _parser?: EventEmitter })._parser;
  if (!parser || typeof parser.prependListener !== "function") return;
  parser.prependListener("packet", (packet: { cmd?: string; subscriptions?: { qos: number }[] }) => {
    if (packet.cmd !== "subscribe" || !Array.isArray(packet.subscriptions)) return;
    for (const subscription of packet.subscriptions) {
      subscription.qos = Math.min(subscription.qos, MAX_GRANTED_QOS);
    }
  });
}

/** The subject CN of the TLS client certificate on `client`'s connection, or null. */
function clientCertificateCn(client: Client): string | null {
  const conn = (client as unknown as { conn?: { getPeerCertificate?: () => { subject?: { CN?: string | string[] } } } }).conn;
  const cn = conn?.getPeerCertificate?.()?.subject?.CN;
  return typeof cn === "string" ? cn : null;
}

interface PacketParser {
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(error: Error): void;
}

/**
 * Refuses an oversize packet as soon as its fixed header announces the length, before buffering the body
 * (aedes 1.2 offers no parser limit; mqtt-packet's parser lives on client._parser). When the internals differ
 * the size check in authorizePublish still applies, after buffering.
 */
function capPacketSize(client: Client, maxPacketBytes: number, onRefused: () => void): void {
  const parser = (client as unknown as { _parser?: PacketParser })._parser;
  if (!parser || typeof parser._parseLength !== "function" || typeof parser._emitError !== "function") return;
  const parseLength = parser._parseLength;
  parser._parseLength = function cappedParseLength(this: PacketParser): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > maxPacketBytes) {
      onRefused();
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds ${maxPacketBytes}`));
      return false;
    }
    return complete;
  };
}
