/**
 * Event stream under load: BENCH_DEVICES devices (default 2,000) send BENCH_ROUNDS rounds (default 2) of 8
 * heartbeats each whose telemetry raises a farm alert twice per round (3 x 0 GH/s, one healthy, 3 x 0, one
 * healthy: HW-ALERT-1), so every round writes 2 x devices `farm.alert` events. One plane process, two bursts:
 *   without = no stream clients connected
 *   with    = BENCH_SSE_CLIENTS (default 100) clients on GET /api/v1/events/stream, each reading every event
 * Figures: time until the plane handled every heartbeat (hashward_mqtt_messages_total), time until every client
 * received every event of its burst, and the ingest ratio with/without (1.0 = the stream costs ingest nothing).
 * Usage: npx tsx bench/event-stream.ts
 */
import { planeFetch } from "../test/support/api.js";
import { connectAll, disconnectAll, enrollAll, heartbeatPayload, heartbeatTopic, makeDevices, type SimDevice } from "./support/devices.js";
import { createEnrollmentToken, readMetric, startBenchPlane } from "./support/plane.js";
import { emitResult, envInt, pollUntil, printTable, progress, ratio, round } from "./support/report.js";

const DEVICES = envInt("BENCH_DEVICES", 2000, { max: 20_000 });
const CLIENTS = envInt("BENCH_SSE_CLIENTS", 100, { max: 1000 });
const TIMEOUT_MS = envInt("BENCH_TIMEOUT_MS", 120_000, { max: 600_000 });
const PATTERN = [0, 0, 0, 95_000, 0, 0, 0, 95_000];
const PER_BURST = DEVICES * PATTERN.length;
const EVENTS_PER_BURST = DEVICES * 2;

function payload(device: SimDevice, seq: number, hashrateGhs: number, bootAt: number): string {
  // HW-LIVE-1: signed for the device's connection, as the agent sends it.
  return heartbeatPayload(device, seq, bootAt, { hashrateGhs, accepted: seq, rejected: 0, temperaturesC: [64, 66, 65], fanRpm: [5400, 5460] });
}

/** A stream client counting `farm.alert` events; reads as fast as it can. */
function streamClient(url: string, token: string) {
  const controller = new AbortController();
  let events = 0;
  let ended = false;
  const done = (async () => {
    // The plane's own CA (HTTPS by default, HW-TLS-1): Node's global fetch would refuse it and no client would connect.
    const response = await planeFetch(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done: finished } = await reader.read();
      if (finished) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        if (buffer.slice(0, cut).includes("event: farm.alert")) events++;
        buffer = buffer.slice(cut + 2);
      }
    }
  })()
    .catch(() => undefined)
    .finally(() => {
      ended = true;
    });
  return {
    get events() {
      return events;
    },
    get ended() {
      return ended;
    },
    async close() {
      controller.abort();
      await done;
    },
  };
}

// The stream is woken by the plane's own commits (HW-SSE-2); the fallback poll stays at its default. A zero-hashrate
// alert is contraindicated (HW-ALERT-2): auto-quarantine is off so the burst measures alerts and the stream, not
// 4,000 quarantine commands to devices that never ack.
const { plane, admin, describe, close } = await startBenchPlane({ HASHWARD_EVENT_STREAM_MAX_QUEUE: "100000", HASHWARD_EVENT_STREAMS_PER_TOKEN: "1000", HASHWARD_AUTO_QUARANTINE: "off" });
try {
  // The pattern's three zero heartbeats are the fleet's grace (HW-ALERT-3; the built-in default is 18).
  await admin.ok("PUT", "/api/v1/policies/farm-alerts", { zeroHashrateSamples: 3 });
  const devices = makeDevices(DEVICES);
  const token = await createEnrollmentToken(admin, devices.length);
  await enrollAll(plane.httpUrl, devices, token);
  await connectAll(plane.mqttUrl, devices, { ca: plane.caPem });
  progress(`plane: ${DEVICES} devices enrolled and connected`);
  const bootAt = Date.now();
  let seq = 0;
  const labels = { kind: "heartbeat" };

  async function burst(): Promise<{ handledMs: number; complete: boolean; startedAt: number }> {
    const messages: Array<{ device: SimDevice; topic: string; payload: string }> = [];
    for (const hashrate of PATTERN) {
      seq += 1;
      for (const device of devices) messages.push({ device, topic: heartbeatTopic(device), payload: payload(device, seq, hashrate, bootAt) });
    }
    const before = await readMetric(admin, "hashward_mqtt_messages_total", labels);
    const startedAt = performance.now();
    await Promise.all(messages.map(({ device, topic, payload: body }) => device.client!.publishAsync(topic, body, { qos: 0 })));
    const handledAt = await pollUntil(
      async () => ((await readMetric(admin, "hashward_mqtt_messages_total", labels)) - before >= PER_BURST ? performance.now() : undefined),
      { timeoutMs: TIMEOUT_MS, intervalMs: 100 },
    );
    return { handledMs: (handledAt ?? performance.now()) - startedAt, complete: handledAt !== undefined, startedAt };
  }

  const without = await burst();
  progress(`without stream clients: handled in ${Math.round(without.handledMs)} ms`);
  const clients = Array.from({ length: CLIENTS }, () => streamClient(`${plane.httpUrl}/api/v1/events/stream?kind=farm.alert`, plane.adminToken));
  await pollUntil(async () => ((await readMetric(admin, "hashward_sse_clients")) >= CLIENTS ? true : undefined), { timeoutMs: TIMEOUT_MS, intervalMs: 100 });
  const withClients = await burst();
  const deliveredAt = await pollUntil(async () => (clients.every((c) => c.events >= EVENTS_PER_BURST) ? performance.now() : undefined), { timeoutMs: TIMEOUT_MS, intervalMs: 100 });
  const received = clients.reduce((sum, c) => sum + c.events, 0);
  const dropped = await readMetric(admin, "hashward_sse_clients_dropped_total");
  progress(`with ${CLIENTS} stream clients: handled in ${Math.round(withClients.handledMs)} ms`);
  await Promise.all(clients.map((c) => c.close()));
  await disconnectAll(devices);

  const complete = without.complete && withClients.complete && deliveredAt !== undefined;
  const figures = {
    devices: DEVICES,
    heartbeatsPerBurst: PER_BURST,
    eventsPerBurst: EVENTS_PER_BURST,
    sseClients: CLIENTS,
    withoutClientsHandledMs: round(without.handledMs, 0),
    withClientsHandledMs: round(withClients.handledMs, 0),
    ratioIngestWithToWithout: ratio(withClients.handledMs, without.handledMs),
    streamDeliveredMs: deliveredAt === undefined ? null : round(deliveredAt - withClients.startedAt, 0),
    eventsReceived: received,
    eventsExpected: EVENTS_PER_BURST * CLIENTS,
    clientsDropped: dropped,
    complete,
  };
  printTable(`event stream: ${DEVICES} devices x ${PATTERN.length} heartbeats, ${CLIENTS} SSE clients`, [
    ["ingest without clients", `${figures.withoutClientsHandledMs} ms`, `${PER_BURST} heartbeats`],
    ["ingest with clients", `${figures.withClientsHandledMs} ms`],
    ["ratio with/without", figures.ratioIngestWithToWithout],
    ["stream: all events to all clients", `${figures.streamDeliveredMs ?? "INCOMPLETE"} ms`, `${received}/${figures.eventsExpected} events, ${dropped} clients dropped`],
  ]);
  emitResult("event-stream", figures);
} catch (error) {
  progress(describe());
  throw error;
} finally {
  await close();
}
