/**
 * Scale: BENCH_DEVICES simulated devices (default 10,000; mqtt.js clients over real sockets, MQTT 3.1.1, in this
 * process) against RabbitMQ (a node of the bench's own, scripts/scale/rabbitmq-node.ts), BENCH_REPLICAS plane
 * replicas (default 2, HASHWARD_BROKER=rabbitmq) and PostgreSQL (a scratch database on BENCH_DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres; dropped after).
 *
 *   baseline     the same node and clients with no plane: an allow-all hook (no database) and one AMQP consumer
 *                counting deliveries from a queue bound like the plane's; BENCH_HEARTBEATS heartbeats per device,
 *                time from the first publish until all are delivered -> baselineMsgsPerSec
 *   heartbeats   the plane's hooks authenticate every device; the same burst; handled = sum over replicas of
 *                hashward_mqtt_messages_total{kind="heartbeat"} -> heartbeatsPerSec; persisted = every device's
 *                latest heartbeat seq in the database (telemetry.accepted) -> persistedPerSec
 *   events       one signed device event per device (QoS 1); lostEvents = sent - rows in device_events
 *   fan-out      one POST /api/v1/quarantine for all devices on the LAST replica; each device acks as the agent
 *                does; fanoutP99Ms = p99 of call start -> command received; duplicateCommands = command
 *                deliveries beyond one per (device, seq)
 * MQTT is plaintext here (the TLS cost is bench/heartbeat-ingest.ts's ratio). Usage: npm run bench -- scale
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { join } from "node:path";
import amqp from "amqplib";
import pg from "pg";
import { signObject } from "../shared/index.js";
import { MAX_PAYLOAD_BYTES, upTopic, type Ack, type Command, type DeviceEvent } from "../shared/protocol/index.js";
import { ApiClient } from "../test/support/api.js";
import { startControlPlane, type ControlPlane } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "../scripts/scale/rabbitmq-node.js";
import { rabbitPlaneEnv } from "../test/support/rabbitmq.js";
import { connectAll, disconnectAll, enrollAll, heartbeatPayload, heartbeatTopic, makeDevices, type SimDevice } from "./support/devices.js";
import { createEnrollmentToken, createScratchDatabase, listAllDevices, metricValue } from "./support/plane.js";
import { emitResult, envInt, mapPool, percentile, pollUntil, printTable, progress, ratio, round, withRetry } from "./support/report.js";

const DEVICES = envInt("BENCH_DEVICES", 10_000, { max: 20_000 });
const REPLICAS = envInt("BENCH_REPLICAS", 2, { min: 1, max: 4 });
const HEARTBEATS = envInt("BENCH_HEARTBEATS", 3, { max: 100 });
const TIMEOUT_MS = envInt("BENCH_TIMEOUT_MS", 300_000, { max: 1_800_000 });
const TOTAL = DEVICES * HEARTBEATS;

async function burst(devices: readonly SimDevice[]): Promise<{ startedAt: number; startedWallMs: number }> {
  const bootAt = Date.now();
  const messages: Array<{ device: SimDevice; payload: string }> = [];
  for (let seq = 1; seq <= HEARTBEATS; seq++) for (const device of devices) messages.push({ device, payload: heartbeatPayload(device, seq, bootAt) });
  const startedWallMs = Date.now();
  const startedAt = performance.now();
  await mapPool(messages, 2_000, ({ device, payload }) => device.client!.publishAsync(heartbeatTopic(device), payload, { qos: 1 }).then(() => undefined));
  return { startedAt, startedWallMs };
}

/** An allow-all stand-in for the plane's hooks (baseline only: what the broker costs without any plane). */
async function allowAllHooks(port: number): Promise<() => Promise<void>> {
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => response.end("allow"));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
  return () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function measureBaseline(node: RabbitNode, hookPort: number, devices: SimDevice[]) {
  const stopHooks = await allowAllHooks(hookPort);
  const connection = await amqp.connect(node.amqpUrl);
  try {
    const channel = await connection.createChannel();
    const queue = "bench.baseline";
    await channel.assertQueue(queue, { durable: true, arguments: { "x-queue-type": "quorum" } });
    await channel.bindQueue(queue, "amq.topic", "asic.v1.*.up.*");
    await channel.prefetch(256);
    let delivered = 0;
    await channel.consume(queue, (msg) => {
      if (!msg) return;
      delivered += 1;
      channel.ack(msg);
    });
    const connectMs = await connectAll(node.mqttUrl, devices, { concurrency: 64 });
    progress(`baseline: ${devices.length} clients connected in ${Math.round(connectMs)} ms`);
    const sent = await burst(devices);
    const done = await pollUntil(async () => (delivered >= TOTAL ? performance.now() : undefined), { timeoutMs: TIMEOUT_MS, intervalMs: 20 });
    const handledMs = (done ?? performance.now()) - sent.startedAt;
    await disconnectAll(devices);
    await channel.deleteQueue(queue);
    return { connectMs, handledMs, delivered, complete: done !== undefined };
  } finally {
    await connection.close().catch(() => undefined);
    await stopHooks();
  }
}

async function sumMetric(replicas: ControlPlane[], name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const replica of replicas) {
    const admin = new ApiClient(replica.httpUrl, replica.adminToken);
    const { body } = await withRetry(() => admin.request<string>("GET", "/metrics"));
    total += metricValue(typeof body === "string" ? body : "", name, labels);
  }
  return total;
}

function eventPayload(device: SimDevice): string {
  const event: DeviceEvent = signObject(
    { v: 1 as const, type: "event" as const, deviceId: device.deviceId, id: `bench-${randomBytes(8).toString("hex")}`, ts: Date.now(), kind: "watch-change" as const, severity: "info" as const, detail: { bench: true } },
    device.keyPair.privateKey,
  );
  return JSON.stringify(event);
}

/** Every command delivery per device and seq; answers each as the agent does (signed ack). */
function answerCommands(devices: readonly SimDevice[]) {
  const firstAt = new Map<string, number>();
  const deliveries = new Map<string, number>();
  for (const device of devices) {
    device.client!.on("message", (topic, payload) => {
      if (!topic.endsWith("/down/command")) return;
      let command: Command;
      try {
        command = JSON.parse(payload.toString("utf8")) as Command;
      } catch {
        return;
      }
      const key = `${device.deviceId}#${command.seq}`;
      deliveries.set(key, (deliveries.get(key) ?? 0) + 1);
      if (!firstAt.has(device.deviceId)) firstAt.set(device.deviceId, Date.now());
      const ack: Ack = signObject(
        { v: 1 as const, type: "ack" as const, deviceId: device.deviceId, seq: command.seq, action: command.action, status: "done" as const, containment: "quarantined" as const, ts: Date.now() },
        device.keyPair.privateKey,
      );
      device.client!.publish(upTopic(device.deviceId, "ack"), JSON.stringify(ack), { qos: 1 });
    });
  }
  return { firstAt, duplicates: () => [...deliveries.values()].reduce((sum, n) => sum + n - 1, 0) };
}

async function main(): Promise<void> {
  const missing = rabbitmqMissing();
  if (missing) throw new Error(missing);
  const database = await createScratchDatabase(process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
  const ports = await freePorts();
  const hookPorts = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
  const planePassword = randomBytes(16).toString("hex");
  const secret = randomBytes(24).toString("hex");
  const node = new RabbitNode({
    dir: join(tempDir("bench-scale").path, "rabbitmq"),
    name: `hwbench${ports.amqp}`,
    ports,
    planeUser: "hashward",
    planePassword,
    hookBaseUrl: `http://127.0.0.1:${hookPorts[0]}/${secret}`,
    tls: null,
    maxMessageBytes: MAX_PAYLOAD_BYTES + 1024,
    cookie: newCookie(),
  });
  const replicas: ControlPlane[] = [];
  try {
    progress(`starting RabbitMQ node ${node.nodename}`);
    await node.start();
    const devices = makeDevices(DEVICES);
    // Baseline: the allow-all hook answers on the path the node asks (secret included in the URL, any answer allow).
    const baseline = await measureBaseline(node, hookPorts[0]!, devices);
    progress(`baseline: ${baseline.delivered}/${TOTAL} delivered in ${Math.round(baseline.handledMs)} ms`);

    const dataDir = tempDir("bench-scale-plane").path;
    for (let index = 0; index < REPLICAS; index += 1) {
      replicas.push(
        await startControlPlane({
          dataDir,
          tls: false,
          env: {
            DATABASE_URL: database.url,
            ...rabbitPlaneEnv([node], hookPorts[index]!, secret),
            // Production defaults (the test harness retries every 500 ms): a retry is a re-delivery the device sees.
            HASHWARD_COMMAND_RETRY_MS: "5000",
          },
        }),
      );
    }
    // startControlPlane reads admin.token from the shared data folder: every replica has the same admin token.
    const admin = new ApiClient(replicas[0]!.httpUrl, replicas[0]!.adminToken);
    const last = new ApiClient(replicas.at(-1)!.httpUrl, replicas.at(-1)!.adminToken);
    const token = await createEnrollmentToken(admin, devices.length);
    const enrollMs = await enrollAll(replicas[0]!.httpUrl, devices, token);
    const connectMs = await connectAll(node.mqttUrl, devices, { subscribeDown: true, concurrency: 64 });
    progress(`plane: ${devices.length} devices enrolled in ${Math.round(enrollMs)} ms, connected through RabbitMQ in ${Math.round(connectMs)} ms`);

    const sent = await burst(devices);
    const handledAt = await pollUntil(
      async () => ((await sumMetric(replicas, "hashward_mqtt_messages_total", { kind: "heartbeat" })) >= TOTAL ? performance.now() : undefined),
      { timeoutMs: TIMEOUT_MS, intervalMs: 250 },
    );
    const ours = new Set(devices.map((d) => d.deviceId));
    const persistedAt = await pollUntil(
      async () => {
        const rows = await listAllDevices(admin, devices.length);
        return rows.filter((r) => ours.has(r.deviceId) && r.telemetry?.accepted === HEARTBEATS).length >= devices.length ? performance.now() : undefined;
      },
      { timeoutMs: TIMEOUT_MS, intervalMs: 1000 },
    );
    const handledMs = (handledAt ?? performance.now()) - sent.startedAt;
    const persistedMs = (persistedAt ?? performance.now()) - sent.startedAt;
    progress(`plane: heartbeats handled in ${Math.round(handledMs)} ms, persisted in ${Math.round(persistedMs)} ms`);

    await mapPool(devices, 2_000, (device) => device.client!.publishAsync(upTopic(device.deviceId, "event"), eventPayload(device), { qos: 1 }).then(() => undefined));
    const countEvents = async (): Promise<number> => {
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>("select count(*) as n from device_events where kind = 'watch-change'");
        return Number(rows[0]!.n);
      } finally {
        await client.end();
      }
    };
    const storedEvents = (await pollUntil(async () => {
      const n = await countEvents();
      return n >= devices.length ? n : undefined;
    }, { timeoutMs: TIMEOUT_MS, intervalMs: 1000 })) ?? (await countEvents());

    const commands = answerCommands(devices);
    const fanoutWallMs = Date.now();
    const fanoutStarted = performance.now();
    await last.post("/api/v1/quarantine", { deviceIds: devices.map((d) => d.deviceId), reason: "bench: fleet-wide quarantine" });
    const fanoutApiMs = performance.now() - fanoutStarted;
    const quarantinedAt = await pollUntil(
      async () => ((await listAllDevices(admin, devices.length, "&containment=quarantined")).filter((r) => ours.has(r.deviceId)).length >= devices.length ? performance.now() : undefined),
      { timeoutMs: TIMEOUT_MS, intervalMs: 1000 },
    );
    const received = [...commands.firstAt.values()].map((t) => t - fanoutWallMs);
    const fanout = {
      received: received.length,
      p50: percentile(received, 50),
      p99: percentile(received, 99),
      quarantinedMs: (quarantinedAt ?? performance.now()) - fanoutStarted,
      apiMs: fanoutApiMs,
    };
    await disconnectAll(devices);

    const figures = {
      devices: DEVICES,
      replicas: REPLICAS,
      heartbeats: TOTAL,
      baselineMsgsPerSec: round((baseline.delivered / baseline.handledMs) * 1000),
      heartbeatsPerSec: round((TOTAL / handledMs) * 1000),
      persistedPerSec: round((TOTAL / persistedMs) * 1000),
      ratioPersistedToBaseline: ratio(TOTAL / persistedMs, baseline.delivered / baseline.handledMs),
      connectPerSec: round((DEVICES / connectMs) * 1000),
      enrollPerSec: round((DEVICES / enrollMs) * 1000),
      fanoutP50Ms: round(fanout.p50),
      fanoutP99Ms: round(fanout.p99),
      fanoutReceived: fanout.received,
      fanoutApiMs: round(fanout.apiMs),
      quarantinedAllMs: round(fanout.quarantinedMs),
      lostEvents: devices.length - storedEvents,
      duplicateCommands: commands.duplicates(),
      complete: baseline.complete && handledAt !== undefined && persistedAt !== undefined && quarantinedAt !== undefined && fanout.received === DEVICES,
    };
    printTable(`scale: ${DEVICES} devices, ${REPLICAS} replicas, RabbitMQ, PostgreSQL`, Object.entries(figures).map(([k, v]) => [k, String(v)]));
    emitResult("scale", figures);
  } finally {
    await Promise.all(replicas.map((replica) => replica.proc.kill("SIGTERM")));
    await node.kill();
    await node.stopEpmd();
    await database.drop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
