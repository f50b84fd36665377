/**
 * The external broker mode (HASHWARD_BROKER=rabbitmq): devices speak MQTT to RabbitMQ, RabbitMQ asks this plane's
 * hooks (./hooks.ts) who may connect and which routing keys they may use, and the plane talks AMQP 0-9-1 to
 * RabbitMQ with amqplib:
 *   - ingest (HW-BROKER-4): a durable quorum queue `hashward.ingest` bound to the MQTT exchange with
 *     `asic.v1.*.up.*`, single active consumer (one replica ingests at a time, in order; another takes over
 *     when it dies), prefetch-bounded. Each delivery goes through the same ingest as the embedded broker
 *     (../ingest.ts) one at a time per device, and is acknowledged only after its handler resolved (committed;
 *     heartbeats are buffered for a batched last-seen write). A replica killed mid-batch loses nothing: RabbitMQ
 *     redelivers what was not acknowledged. A handler failing for an internal reason is requeued, up to the
 *     queue's delivery limit.
 *   - commands and challenges: published persistent to the MQTT exchange with the device's `down` routing key,
 *     waiting for the broker's confirm, for the devices' QoS 1 subscriptions.
 *   - connection state: the rabbitmq_event_exchange's connection.created/closed events (an exclusive queue per
 *     replica), so every replica knows which devices are connected.
 *   - revocation: the management API closes the device's connections (DELETE /api/connections/username/<id>),
 *     and the hooks refuse it from then on.
 * The AMQP connection is re-established with backoff when RabbitMQ restarts (or another URL of a cluster answers).
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import { Counter } from "prom-client";
import { connectedDevicesGauge } from "../metrics.js";
import { downTopic, encodePayload, isDeviceId, type Challenge, type Command } from "../../../../shared/protocol/index.js";
import type { DevicePublisher } from "../../service/index.js";
import { createExternalIngest, type ExternalTransport, type ExternalTransportDeps } from "../external-ingest.js";
import type { BrokerConfig } from "../config.js";
import { redactUrl } from "../config.js";
import { createHookServer, type HookServer } from "./hooks.js";

export const INGEST_QUEUE = "hashward.ingest";
/** A delivery whose handler keeps failing internally is dropped after this many attempts (quorum queue delivery-limit). */
export const INGEST_DELIVERY_LIMIT = 20;
const EVENT_EXCHANGE = "amq.rabbitmq.event";

type RabbitConfig = Extract<BrokerConfig, { kind: "rabbitmq" }>;

/** RabbitMQ's transport deps (../external-ingest.ts). */
export type RabbitTransportDeps = ExternalTransportDeps<RabbitConfig>;
/** The RabbitMQ transport (`disconnect` closes the device's connections through the management API). */
export type RabbitTransport = ExternalTransport;

/** amqplib's Channel types lack the publish callback of a confirm channel in some versions: one narrow signature. */
type Publish = (exchange: string, key: string, content: Buffer, options: amqp.Options.Publish, callback: (error: unknown) => void) => boolean;

export async function startRabbitTransport(deps: RabbitTransportDeps): Promise<RabbitTransport> {
  const { config, deviceSide, db, registry } = deps;
  const logger = deps.logger.child({ component: "rabbitmq" });
  const now = deps.now ?? Date.now;

  const requeued = new Counter({ name: "hashward_broker_ingest_requeued_total", help: "Deliveries handed back to RabbitMQ after an internal failure (redelivered up to the delivery limit)", registers: [registry] });
  /** Device id -> names of its live connections (from the event exchange). */
  const connections = new Map<string, Set<string>>();
  const connectionOwner = new Map<string, string>();
  connectedDevicesGauge(registry, () => connections.size);

  // Made before the hooks (they report accepted nonces to it); reads identities through the hooks' cache.
  const ingest = createExternalIngest({
    deviceSide,
    db,
    identity: (deviceId) => startedHooks.identity(deviceId),
    logger,
    registry,
    now,
    ...(deps.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: deps.maxPayloadBytes }),
  });
  const startedHooks: HookServer = createHookServer({
    deviceSide,
    logger,
    registry,
    secret: config.hookSecret,
    exchange: config.exchange,
    vhost: config.vhost,
    now,
    onAuthenticated: (deviceId, nonce) => ingest.onAuthenticated(deviceId, nonce),
  });
  const hookPort = await startedHooks.listen(config.hookPort, config.hookHost);
  const enqueue = (deviceId: string, work: () => Promise<void>): Promise<void> => ingest.enqueue(deviceId, work);

  let connection: ChannelModel | null = null;
  let publishChannel: ConfirmChannel | null = null;
  let closing = false;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let attempt = 0;

  function onDelivery(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) return; // consumer cancelled by the broker (queue deleted): the reconnect path re-declares
    const topic = msg.fields.routingKey.split(".").join("/");
    void ingest.handle(topic, msg.content, async (outcome) => {
      if (outcome === "done") {
        channel.ack(msg);
        return;
      }
      // Back off before handing it back (the device's next messages wait behind it, in order): a database outage
      // must not burn the delivery limit in a second. Quorum queues count attempts in x-delivery-count.
      const attempts = Number(msg.properties.headers?.["x-delivery-count"] ?? 0);
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000 * 2 ** attempts, 30_000)));
      requeued.inc();
      channel.nack(msg, false, true);
    });
  }

  function markConnected(user: string, name: string): void {
    connectionOwner.set(name, user);
    const names = connections.get(user) ?? new Set<string>();
    const first = names.size === 0;
    names.add(name);
    connections.set(user, names);
    if (first) void enqueue(user, () => deviceSide.onConnected(user).catch((error: unknown) => logger.error({ deviceId: user, err: error }, "onConnected failed")));
  }

  function markClosed(name: string): void {
    const user = connectionOwner.get(name);
    if (user === undefined) return;
    connectionOwner.delete(name);
    const names = connections.get(user);
    names?.delete(name);
    if (names && names.size === 0) {
      connections.delete(user);
      void enqueue(user, () => deviceSide.onDisconnected(user).catch((error: unknown) => logger.error({ deviceId: user, err: error }, "onDisconnected failed")));
    }
  }

  /**
   * After (re)connecting, events missed while this replica was cut off are made up from the management API's list
   * of connections (a restarted node dropped every device; a cluster node's devices stayed).
   */
  async function reconcileConnections(): Promise<void> {
    if (!config.managementUrl) return;
    const base = new URL(config.managementUrl);
    const auth = Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString("base64");
    const response = await fetch(`${base.protocol}//${base.host}${base.pathname.replace(/\/$/, "")}/api/connections?columns=name,user`, { headers: { authorization: `Basic ${auth}` } });
    if (!response.ok) throw new Error(`management API answered ${response.status}`);
    const live = (await response.json()) as { name?: string; user?: string }[];
    const liveNames = new Set(live.map((c) => c.name ?? ""));
    for (const name of [...connectionOwner.keys()]) if (!liveNames.has(name)) markClosed(name);
    for (const { name, user } of live) if (name && user && isDeviceId(user) && !connectionOwner.has(name)) markConnected(user, name);
  }

  function onConnectionEvent(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) return;
    channel.ack(msg);
    const headers = msg.properties.headers ?? {};
    const name = String(headers.name ?? "");
    if (msg.fields.routingKey === "connection.created") {
      const user = String(headers.user ?? "");
      if (isDeviceId(user) && name !== "") markConnected(user, name);
    } else if (msg.fields.routingKey === "connection.closed") {
      markClosed(name);
    }
  }

  async function connectOnce(url: string): Promise<void> {
    const opened = await amqp.connect(url, { clientProperties: { connection_name: "hashward-plane" } });
    opened.on("error", (error: Error) => logger.warn({ err: error }, "rabbitmq connection error"));
    opened.on("close", () => {
      if (connection !== opened) return;
      connection = null;
      publishChannel = null;
      if (!closing) {
        logger.warn("rabbitmq connection lost; reconnecting");
        scheduleReconnect();
      }
    });
    const confirm = await opened.createConfirmChannel();
    confirm.on("error", (error: Error) => logger.warn({ err: error }, "rabbitmq publish channel error"));
    const ingestChannel = await opened.createChannel();
    ingestChannel.on("error", (error: Error) => logger.warn({ err: error }, "rabbitmq ingest channel error"));
    await ingestChannel.assertQueue(INGEST_QUEUE, {
      durable: true,
      arguments: { "x-queue-type": "quorum", "x-single-active-consumer": true, "x-delivery-limit": INGEST_DELIVERY_LIMIT },
    });
    await ingestChannel.bindQueue(INGEST_QUEUE, config.exchange, "asic.v1.*.up.*");
    await ingestChannel.prefetch(config.prefetch);
    const eventChannel = await opened.createChannel();
    eventChannel.on("error", (error: Error) => logger.warn({ err: error }, "rabbitmq event channel error"));
    const { queue: eventQueue } = await eventChannel.assertQueue("", { exclusive: true, autoDelete: true });
    await eventChannel.bindQueue(eventQueue, EVENT_EXCHANGE, "connection.created");
    await eventChannel.bindQueue(eventQueue, EVENT_EXCHANGE, "connection.closed");
    await eventChannel.consume(eventQueue, (msg) => onConnectionEvent(eventChannel, msg));
    await ingestChannel.consume(INGEST_QUEUE, (msg) => onDelivery(ingestChannel, msg), { noAck: false });
    connection = opened;
    publishChannel = confirm;
    attempt = 0;
    logger.info({ url: redactUrl(url), queue: INGEST_QUEUE, prefetch: config.prefetch }, "rabbitmq connected; consuming device messages");
    reconcileConnections().catch((error: unknown) => logger.warn({ err: error }, "could not list RabbitMQ connections; connected state follows events from now on"));
  }

  async function connectAny(): Promise<void> {
    const url = config.amqpUrls[attempt % config.amqpUrls.length]!;
    attempt += 1;
    try {
      await connectOnce(url);
    } catch (error) {
      if (closing) return;
      logger.warn({ url: redactUrl(url), err: error instanceof Error ? error.message : String(error) }, "rabbitmq not reachable; retrying");
      scheduleReconnect();
    }
  }

  function scheduleReconnect(): void {
    if (closing || reconnectTimer) return;
    const delay = Math.min(250 * 2 ** Math.min(attempt, 5), 5_000);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      void connectAny();
    }, delay);
  }

  // The plane starts even when RabbitMQ is not up yet (the broker may need the plane's TLS files first).
  void connectAny();

  const publisher = {
    publish(deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
      if (message.deviceId !== deviceId) return Promise.reject(new Error(`${kind} for ${message.deviceId} published to ${deviceId}`));
      const channel = publishChannel;
      if (!channel) return Promise.reject(new Error("RabbitMQ is not connected"));
      const key = downTopic(deviceId, kind).split("/").join(".");
      return new Promise<void>((resolve, reject) => {
        (channel.publish as unknown as Publish).call(
          channel,
          config.exchange,
          key,
          Buffer.from(encodePayload(message)),
          { persistent: true, contentType: "application/json", headers: { "x-mqtt-publish-qos": 1 } },
          (error) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve()),
        );
      });
    },
    isConnected(deviceId: string): boolean {
      return connections.has(deviceId);
    },
  } as DevicePublisher;

  async function closeConnectionsOf(deviceId: string): Promise<void> {
    if (!config.managementUrl) {
      logger.warn({ deviceId }, "no HASHWARD_RABBITMQ_MANAGEMENT_URL: a revoked device keeps its open connection until it reconnects (its CONNECT is refused)");
      return;
    }
    const base = new URL(config.managementUrl);
    const auth = Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString("base64");
    const url = `${base.protocol}//${base.host}${base.pathname.replace(/\/$/, "")}/api/connections/username/${encodeURIComponent(deviceId)}`;
    const response = await fetch(url, { method: "DELETE", headers: { authorization: `Basic ${auth}`, "x-reason": "device revoked" } });
    await response.arrayBuffer();
    if (!response.ok && response.status !== 404) throw new Error(`management API answered ${response.status}`);
    logger.info({ deviceId }, "device connections closed through the RabbitMQ management API");
  }

  return {
    publisher,
    hookPort,
    disconnect(deviceId) {
      startedHooks.forget(deviceId);
      ingest.forget(deviceId);
      closeConnectionsOf(deviceId).catch((error: unknown) => logger.error({ deviceId, err: error }, "could not close the revoked device's connections"));
    },
    async close() {
      closing = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      await startedHooks.close();
      await ingest.drain();
      await connection?.close().catch(() => undefined);
    },
  };
}
