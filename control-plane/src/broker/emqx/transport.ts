/**
 * The EMQX mode (HASHWARD_BROKER=emqx; docs/emqx.md): devices speak MQTT to EMQX, EMQX asks this plane's hooks
 * (./hooks.ts) who may connect and which topics they may use, and the plane is an MQTT 5 client of EMQX (mqtt.js):
 *   - ingest (HW-BROKER-5): `ingestConnections` clients per replica, each subscribed to
 *     `$share/<group>/asic/v1/+/up/+` at QoS 1, so EMQX hands every device message to one of them across all
 *     replicas. A message is acknowledged (PUBACK) only after its handler committed (../external-ingest.ts); while
 *     the database is unreachable it is held and tried again, and a client that stops leaves its un-acknowledged
 *     messages to EMQX, which dispatches a shared subscriber's in-flight messages to another member when its session
 *     ends (clean start: the session ends with the connection). mqtt.js reads one connection's packets in order and
 *     waits for each acknowledgement, so each client ingests one message at a time; the clients run in parallel.
 *   - control client: publishes commands and challenges at QoS 1 (resolves on EMQX's PUBACK) and follows EMQX's
 *     client events (`$SYS/brokers/+/clients/+/connected|disconnected`, not shared: every replica sees them) so
 *     `isConnected` and the `connected` column follow EMQX.
 *   - revocation: `DELETE /api/v5/clients/<id>` on EMQX's REST API kicks the device; the hooks refuse it from then on.
 * Every client reconnects by itself (mqtt.js, 1 s) and cycles through HASHWARD_EMQX_MQTT_URL's servers.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { connectedDevicesGauge } from "../metrics.js";
import { downTopic, encodePayload, isDeviceId, UP_FILTER, type Challenge, type Command } from "../../../../shared/protocol/index.js";
import type { DevicePublisher } from "../../service/index.js";
import type { BrokerConfig } from "../config.js";
import { redactUrl } from "../config.js";
import { createExternalIngest, type ExternalTransport, type ExternalTransportDeps } from "../external-ingest.js";
import { CLIENT_EVENTS_FILTER, DeviceConnections, parseClientEvent } from "./client-events.js";
import { createEmqxHooks, PLANE_USERNAME, type EmqxHooks } from "./hooks.js";

type EmqxConfig = Extract<BrokerConfig, { kind: "emqx" }>;

/** How long a device whose message this replica ingested counts as connected without an event saying so. */
const SEEN_CONNECTED_MS = 60_000;
/** Devices remembered as seen at most (then the memory starts over). */
const MAX_SEEN = 200_000;
/** How long a message is held while its handler fails internally before the client reconnects (EMQX redispatches). */
const HOLD_MS = 30_000;

/** EMQX's transport deps (../external-ingest.ts) and its own options. */
export interface EmqxTransportDeps extends ExternalTransportDeps<EmqxConfig> {
  /** PEM of the CA to trust for mqtts:// (the plane's own CA when EMQX serves its certificate); system CAs otherwise. */
  caPem?: string;
  /** Ingest clients per replica (each one message at a time); default 4. */
  ingestConnections?: number;
  /** HW-MTLS-1: devices must present a client certificate whose CN is their username (EMQX verifies the chain). */
  requireClientCertificate?: boolean;
}

/** The EMQX transport (`disconnect` kicks the device through EMQX's REST API). */
export interface EmqxTransport extends ExternalTransport {
  /** Resolves once the control client is connected and every ingest client holds its shared subscription. */
  ready(): Promise<void>;
}

/** The shared subscription every replica's ingest clients hold: one group, so each message reaches one client. */
export function ingestSubscription(shareGroup: string): string {
  return `$share/${shareGroup}/${UP_FILTER}`;
}

/** mqtt.js server entries for a list of mqtt(s):// URLs (tried in turn on reconnect). */
function serversOf(urls: string[]): NonNullable<IClientOptions["servers"]> {
  return urls.map((u) => {
    const url = new URL(u);
    const tls = url.protocol === "mqtts:";
    return { host: url.hostname, port: Number(url.port || (tls ? 8883 : 1883)), protocol: tls ? "mqtts" : "mqtt" };
  });
}

/** A marker error: handed to mqtt.js's ack callback it sends no PUBACK (EMQX keeps the message in flight). */
class NoAck extends Error {}

/**
 * Kicks `deviceId` through EMQX's REST API: `DELETE <apiUrl>/api/v5/clients/<id>` with Basic auth from the URL's
 * user info (API key and secret). 404 (not connected) is fine; any other failure throws naming the status.
 */
export async function kickClient(apiUrl: string, deviceId: string): Promise<void> {
  const base = new URL(apiUrl);
  const auth = Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString("base64");
  const url = `${base.protocol}//${base.host}${base.pathname.replace(/\/$/, "")}/api/v5/clients/${encodeURIComponent(deviceId)}`;
  const response = await fetch(url, { method: "DELETE", headers: { authorization: `Basic ${auth}` } });
  await response.arrayBuffer();
  if (!response.ok && response.status !== 404) throw new Error(`EMQX REST API answered ${response.status} to DELETE /api/v5/clients/${deviceId}`);
}

/** Starts the hooks and the MQTT clients; resolves once the hooks listen (EMQX may come up later: clients retry). */
export async function startEmqxTransport(deps: EmqxTransportDeps): Promise<EmqxTransport> {
  const { config, deviceSide, db, registry } = deps;
  const logger = deps.logger.child({ component: "emqx" });
  const now = deps.now ?? Date.now;
  let closing = false;

  // Made before the hooks (they report accepted nonces to it); reads identities through the hooks' cache.
  const ingest = createExternalIngest({
    deviceSide,
    db,
    identity: (deviceId) => hooks.identity(deviceId),
    logger,
    registry,
    now,
    keepRetrying: (firstAt) => !closing && now() - firstAt < HOLD_MS,
    ...(deps.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: deps.maxPayloadBytes }),
  });
  const hooks: EmqxHooks = createEmqxHooks({
    deviceSide,
    logger,
    registry,
    secret: config.hookSecret,
    now,
    requireClientCertificate: deps.requireClientCertificate === true,
    onAuthenticated: (deviceId, nonce) => ingest.onAuthenticated(deviceId, nonce),
  });
  const hookPort = await hooks.listen(config.hookPort, config.hookHost);

  const connections = new DeviceConnections();
  /** Device id -> when this replica last ingested one of its messages. */
  const seen = new Map<string, number>();
  connectedDevicesGauge(registry, () => connections.size);

  const clientId = (role: string) => `${PLANE_USERNAME}-${hostname().slice(0, 32)}-${process.pid}-${randomBytes(3).toString("hex")}-${role}`;
  const baseOptions = (role: string): IClientOptions => ({
    protocolVersion: 5,
    clientId: clientId(role),
    username: PLANE_USERNAME,
    password: config.hookSecret,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 1_000,
    connectTimeout: 10_000,
    servers: serversOf(config.mqttUrls),
    ...(deps.caPem === undefined ? {} : { ca: deps.caPem }),
  });

  function watch(client: MqttClient, role: string): void {
    client.on("connect", () => logger.info({ role, urls: config.mqttUrls.map(redactUrl) }, "connected to EMQX"));
    client.on("error", (error) => {
      if (!(error instanceof NoAck)) logger.warn({ role, err: error.message }, "EMQX client error");
    });
    client.on("offline", () => {
      if (!closing) logger.warn({ role }, "EMQX not reachable; reconnecting");
    });
  }

  function onClientEvent(topic: string, payload: Buffer): void {
    const event = parseClientEvent(topic, payload);
    if (event === null) return;
    const { deviceId } = event;
    const change = connections.apply(event);
    if (change === "connected") {
      void ingest.enqueue(deviceId, () => deviceSide.onConnected(deviceId).catch((error: unknown) => logger.error({ deviceId, err: error }, "onConnected failed")));
    } else if (change === "disconnected") {
      seen.delete(deviceId);
      void ingest.enqueue(deviceId, () => deviceSide.onDisconnected(deviceId).catch((error: unknown) => logger.error({ deviceId, err: error }, "onDisconnected failed")));
    }
  }

  // The control client: commands out, client events in.
  const control = mqtt.connect(baseOptions("control"));
  watch(control, "control");
  const readiness: Promise<void>[] = [new Promise((resolve) => control.once("connect", () => resolve()))];
  control.on("connect", () => {
    control.subscribe(CLIENT_EVENTS_FILTER, { qos: 0 }, (error) => {
      if (error) logger.error({ err: error }, "could not subscribe to EMQX's client events; connected state follows ingest only");
    });
  });
  control.on("message", (topic, payload) => onClientEvent(topic, payload));

  // The ingest clients: one shared-subscription member each.
  const ingestClients: MqttClient[] = [];
  for (let i = 0; i < Math.max(1, deps.ingestConnections ?? 4); i += 1) {
    let generation = 0;
    let subscribed: () => void = () => undefined;
    readiness.push(new Promise((resolve) => (subscribed = resolve)));
    const client = mqtt.connect({
      ...baseOptions(`ingest${i}`),
      // PUBACK after the handler settled: mqtt.js holds this connection's next packets until `ack` is called.
      customHandleAcks: (topic, payload, _packet, ack) => {
        const at = generation;
        void ingest.handle(topic, payload, (outcome) => {
          // A message of a connection that has since dropped must not be acknowledged on the new one (its packet
          // id may name another message there); EMQX redispatches it.
          if (outcome === "done" && at === generation) {
            const deviceId = topic.split("/")[2] ?? "";
            if (isDeviceId(deviceId)) {
              if (seen.size >= MAX_SEEN) seen.clear(); // bounded; a device is seen again at its next message
              seen.set(deviceId, now());
            }
            ack(0);
          } else {
            ack(new NoAck("not acknowledged: handed back to EMQX"));
            if (outcome === "retry" && !closing) client.reconnect(); // session ends: EMQX redispatches what is in flight
          }
        });
      },
    });
    client.on("connect", () => {
      generation += 1;
      client.subscribe(ingestSubscription(config.shareGroup), { qos: 1 }, (error) => {
        if (error) logger.error({ err: error }, "could not subscribe to the ingest shared subscription");
        else {
          logger.info({ subscription: ingestSubscription(config.shareGroup) }, "EMQX connected; consuming device messages");
          subscribed();
        }
      });
    });
    client.on("close", () => {
      generation += 1;
    });
    watch(client, `ingest${i}`);
    ingestClients.push(client);
  }

  const publisher = {
    publish(deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
      if (message.deviceId !== deviceId) return Promise.reject(new Error(`${kind} for ${message.deviceId} published to ${deviceId}`));
      if (!control.connected) return Promise.reject(new Error("EMQX is not connected"));
      return new Promise<void>((resolve, reject) => {
        control.publish(downTopic(deviceId, kind), Buffer.from(encodePayload(message)), { qos: 1, retain: false }, (error) => (error ? reject(error) : resolve()));
      });
    },
    isConnected(deviceId: string): boolean {
      if (connections.has(deviceId)) return true;
      const at = seen.get(deviceId);
      return at !== undefined && now() - at < SEEN_CONNECTED_MS;
    },
  } as DevicePublisher;

  return {
    publisher,
    hookPort,
    ready: () => Promise.all(readiness).then(() => undefined),
    disconnect(deviceId) {
      hooks.forget(deviceId);
      ingest.forget(deviceId);
      seen.delete(deviceId);
      if (!config.apiUrl) {
        logger.warn({ deviceId }, "no HASHWARD_EMQX_API_URL: a revoked device keeps its open connection until it reconnects (its CONNECT is refused)");
        return;
      }
      kickClient(config.apiUrl, deviceId).then(
        () => logger.info({ deviceId }, "device kicked through EMQX's REST API"),
        (error: unknown) => logger.error({ deviceId, err: error }, "could not kick the revoked device through EMQX's REST API"),
      );
    },
    async close() {
      closing = true;
      await hooks.close();
      await ingest.drain();
      await Promise.all([control, ...ingestClients].map((client) => client.endAsync().catch(() => undefined)));
    },
  };
}
