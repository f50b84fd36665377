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
 *
 * This file composes the concerns, each in a file of its own: ./auth.ts (CONNECT authentication, HW-AUTH-1,
 * shared with the RabbitMQ hooks), ./acl.ts (topic ACL, HW-TOPIC-1, shared too), ./dispatch.ts (ingest dispatch
 * and its HW-FAULT-2 retries), ./metrics.ts, ./packet-cap.ts (parser-level QoS and size caps).
 */
import type { EventEmitter } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from "aedes";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { NonceMemory } from "../../../shared/auth/connect-token.js";
import { ValidationError } from "../../../shared/errors/index.js";
import { downTopic, encodePayload, MAX_PAYLOAD_BYTES, type Challenge, type Command } from "../../../shared/protocol/index.js";
import { isTransientDatabaseError } from "../db/transient.js";
import { clipForLog } from "../log/index.js";
import type { DevicePublisher, DeviceSession, DeviceSideService } from "../service/index.js";
import { isOwnDownTopic, maySubscribe, ownUpKind } from "./acl.js";
import { CONNACK, ConnectRefusal, IdentityCache, RefusalLog, clientCertificateCn, peerAddress, verifyConnect } from "./auth.js";
import { DeviceWorkQueue } from "./device-queue.js";
import { createDispatch, DEFAULT_INGEST_RETRY_MS, oncePerClientLog } from "./dispatch.js";
import { brokerMetrics } from "./metrics.js";
import { capPacketSize, capSubscribeQos, MAX_GRANTED_QOS, PACKET_OVERHEAD_BYTES } from "./packet-cap.js";

export { MAX_GRANTED_QOS } from "./packet-cap.js";

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

/** Creates the embedded broker (aedes with the hooks above); call listen() to accept devices. */
export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { deviceSide, registry } = deps;
  const logger = deps.logger.child({ component: "mqtt" });
  const now = deps.now ?? Date.now;
  const maxPayloadBytes = Math.min(deps.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES);
  const identityCacheMs = deps.identityCacheMs ?? 10_000; // IdentityCache caps it at MAX_IDENTITY_CACHE_MS
  const maxClients = deps.maxClients ?? 20_000;
  const ingestRetryMs = deps.ingestRetryMs ?? DEFAULT_INGEST_RETRY_MS;

  /** Devices with an authenticated, live connection (the one aedes knows under their id). */
  const live = new Map<string, Client>();
  const metrics = brokerMetrics(registry, () => live.size);
  const { aclDenied, sessionTakeovers, connectRefused } = metrics;

  // HW-AUTH-1: each connect token is usable once for the broker's lifetime (nonces kept until expiry).
  const nonces = new NonceMemory();
  const identities = new IdentityCache((deviceIds) => deviceSide.identitiesForConnect(deviceIds), now, identityCacheMs, maxClients * 2);
  const refusals = new RefusalLog(logger, now);
  const logOncePerClient = oncePerClientLog(logger);
  /** HW-LIVE-1: the session of each authenticated connection (set once its CONNECT verified). */
  const sessions = new WeakMap<Client, DeviceSession>();
  /** Per-device ingest chain: messages and connect/disconnect events are handled one at a time, in order. */
  const queue = new DeviceWorkQueue();
  /** Set by close(): held messages stop waiting for the database. */
  let closing: Promise<void> | null = null;
  const dispatch = createDispatch({
    deviceSide,
    logger,
    metrics,
    identities,
    sessions,
    logOncePerClient,
    now,
    ingestRetryMs,
    isClosing: () => closing !== null,
  });

  const enqueue = (deviceId: string, work: () => Promise<void>): Promise<void> => queue.enqueue(deviceId, work);

  /** HW-AUTH-1 (./auth.ts); a verified CONNECT gets its connection's session (HW-LIVE-1). */
  async function authenticateClient(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const grant = await verifyConnect(
      { username, clientId: client.id, password },
      {
        identity: (deviceId) => identities.get(deviceId, "fresh"),
        // HW-AUTH-1: memory answers a replay on this process at once; the database remembers across restarts/replicas.
        rememberNonce: async (deviceId, nonce, exp, at) => nonces.remember(nonce, exp, at) && (await deviceSide.rememberConnectNonce(deviceId, nonce, exp)),
        now,
        onStoreFailure(deviceId, step, cause) {
          // A database outage refuses every CONNECT: one throttled line (HW-FAULT-2), not one error per device.
          if (isTransientDatabaseError(cause)) dispatch.noteUnavailable("connect", "CONNECT refused (server unavailable); the device retries");
          else logger.error({ deviceId, err: cause }, `${step} failed during CONNECT`);
        },
      },
    );
    sessions.set(client, { connectNonce: grant.nonce, publicKey: grant.identity.publicKey, lastHeartbeatSeq: -1 });
  }

  /** HW-LOG-1: refused CONNECTs are counted always, logged throttled per (peer, reason) (RefusalLog). */
  function logRefusal(client: Client, username: string | undefined, refusal: ConnectRefusal): void {
    connectRefused.inc({ reason: refusal.reason });
    refusals.note(peerAddress(client), username, client.id, refusal);
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

  /** HW-TOPIC-1: counts and logs an ACL refusal; the error makes aedes close the connection. */
  function denyAcl(client: Client, action: "publish" | "subscribe", reason: string, topic: string, callback: (error: Error) => void): void {
    aclDenied.inc({ action, reason });
    // HW-LOG-1: the topic is the client's choice (up to 64 KiB): clipped.
    logOncePerClient(client, `${action}:${reason}`, { action, topic: clipForLog(topic, 256) }, "mqtt client disconnected: ACL violation");
    callback(new Error(`${action} refused: ${reason} (${clipForLog(topic, 256)})`));
  }

  const aedes = await Aedes.createBroker({
    // Device ids are 27 characters; MQTT 3.1's 23-character limit would refuse them.
    maxClientsIdLength: 64,
    connectTimeout: deps.connectTimeoutMs ?? 10_000,
    maxTopicLevels: 8,
    // No delivery queue (mqemitter concurrency 0 = unlimited). With aedes' default of 100, messages beyond 100 in
    // delivery waited in mqemitter's queue, and draining it ran every message that completes synchronously (every
    // device message: nothing subscribes to up/) inside the previous one's callback: at 10,000 TLS devices the
    // recursion ended the plane with "Maximum call stack size exceeded". The queue was unbounded, so delivering
    // at once holds no more memory; a fleet-wide command also goes out in one round instead of 100 at a time.
    concurrency: 0,

    authenticate(client, username, password, done) {
      const certified = !deps.requireClientCertificate || clientCertificateCn(client) === username; // HW-MTLS-1
      (certified ? authenticateClient(client, username, password) : Promise.reject(new ConnectRefusal("client-certificate", CONNACK.notAuthorized, "client certificate is not the device's"))).then(
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
      // HW-TOPIC-1: a device publishes only under its own up/.
      const kind = ownUpKind(client.id, topic);
      if (kind === null) return denyAcl(client, "publish", "foreign-topic", topic, callback);
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
      const deviceId = client.id;
      const qos = packet.qos;
      enqueue(deviceId, () =>
        dispatch.ingestDurably(client, deviceId, kind, payload, qos).then(
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
      // HW-TOPIC-1: only its own down/ topics, as the one filter or a concrete topic.
      if (!maySubscribe(client.id, topic)) return denyAcl(client, "subscribe", "foreign-topic", topic, (error) => callback(error, null));
      // HW-MQTT-1: delivered at most at QoS 1 (capSubscribeQos already lowered the SUBACK's grant).
      const granted: Subscription = { ...subscription, qos: Math.min(subscription.qos, MAX_GRANTED_QOS) as 0 | 1 };
      callback(null, granted);
    },

    authorizeForward(client, packet) {
      // Defence in depth behind authorizeSubscribe: deliver only a client's own down/ messages.
      return isOwnDownTopic(client.id, packet.topic) ? packet : null;
    },
  });

  // 'client' fires when aedes registers the connection, before CONNACK: from then on it is the device's
  // connection (a takeover closes the older one first, which emits its clientDisconnect before this).
  aedes.on("client", (client) => {
    live.set(client.id, client);
    logger.info({ deviceId: client.id }, "mqtt device connected");
    void enqueue(client.id, () => dispatch.retryTransient("onConnected", client.id, () => deviceSide.onConnected(client.id)));
  });
  aedes.on("clientDisconnect", (client) => {
    // A takeover by a newer connection of the same device must not mark the device disconnected.
    if (live.get(client.id) !== client) return;
    live.delete(client.id);
    logger.info({ deviceId: client.id }, "mqtt device disconnected");
    void enqueue(client.id, () => dispatch.retryTransient("onDisconnected", client.id, () => deviceSide.onDisconnected(client.id)));
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
      identities.forget(deviceId);
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
