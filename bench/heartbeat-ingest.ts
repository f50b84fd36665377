/**
 * Heartbeat ingest: BENCH_DEVICES simulated devices (default 2,000; in-process mqtt.js clients, MQTT 3.1.1) each
 * publish BENCH_HEARTBEATS heartbeats (default 10) at QoS BENCH_QOS (default 0, what the agent uses) as fast as the
 * clients can write them.
 *
 * Baseline (same run, same clients, same messages): a bare aedes with no hooks in its own Bun process, counting
 * deliveries to one internal subscriber. Then the real control plane (Bun, embedded aedes with the auth/ACL hooks,
 * PGlite): devices enrolled over HTTP with one enrollment token, CONNECT with a fresh connect token each.
 *   handled   = time until hashward_mqtt_messages_total{kind="heartbeat"} counts every message (GET /metrics)
 *   persisted = time until every device's latest heartbeat is in the database (GET /api/v1/devices: telemetry
 *               carries the heartbeat seq; lastSeenAt advanced)
 * Both timed from the first publish. The plane runs twice in the same run: plaintext (HASHWARD_TLS=off) and with
 * TLS (the default, HW-TLS-1: HTTPS enrollment, MQTT over TLS with the plane's CA); the TLS/plaintext ratios of
 * connects/s and handled msgs/s are what TLS costs. Usage: npx tsx bench/heartbeat-ingest.ts
 */
import type { ApiClient } from "../test/support/api.js";
import { startBareBroker } from "./support/bare-broker.js";
import {
  connectAll, disconnectAll, enrollAll, heartbeatPayload, heartbeatTopic, makeDevices, type SimDevice,
} from "./support/devices.js";
import { createEnrollmentToken, listAllDevices, readMetric, withBenchPlane } from "./support/plane.js";
import { cpuMeter } from "./support/proc.js";
import { emitResult, envInt, pollUntil, printTable, progress, ratio, round } from "./support/report.js";

const DEVICES = envInt("BENCH_DEVICES", 2000, { max: 20_000 });
const HEARTBEATS = envInt("BENCH_HEARTBEATS", 10, { max: 1000 });
const QOS = envInt("BENCH_QOS", 0, { min: 0, max: 1 }) as 0 | 1;
const TIMEOUT_MS = envInt("BENCH_TIMEOUT_MS", 60_000, { max: 600_000 });
const TOTAL = DEVICES * HEARTBEATS;

interface Burst {
  startedAt: number;
  startedWallMs: number;
  sentMs: number;
}

/** Publishes every heartbeat, seq 1..HEARTBEATS round-robin over the devices; payloads are built before timing. */
async function burst(devices: readonly SimDevice[], bootAt: number): Promise<Burst> {
  const messages: Array<{ device: SimDevice; topic: string; payload: string }> = [];
  for (let seq = 1; seq <= HEARTBEATS; seq++) {
    for (const device of devices) messages.push({ device, topic: heartbeatTopic(device), payload: heartbeatPayload(device, seq, bootAt) });
  }
  const startedWallMs = Date.now();
  const startedAt = performance.now();
  await Promise.all(messages.map(({ device, topic, payload }) => device.client!.publishAsync(topic, payload, { qos: QOS })));
  return { startedAt, startedWallMs, sentMs: performance.now() - startedAt };
}

async function measureBaseline(devices: SimDevice[]) {
  const broker = await startBareBroker();
  try {
    const connectMs = await connectAll(broker.mqttUrl, devices);
    progress(`baseline: ${devices.length} clients connected to bare aedes in ${Math.round(connectMs)} ms`);
    const cpu = cpuMeter(broker.proc.child.pid!);
    const sent = await burst(devices, Date.now());
    // Its counter endpoint is trivial, so it is polled finely: the baseline run is short.
    const done = await pollUntil(async () => ((await broker.delivered()) >= TOTAL ? performance.now() : undefined), { timeoutMs: TIMEOUT_MS, intervalMs: 20 });
    const cpuMs = cpu();
    const delivered = await broker.delivered();
    await disconnectAll(devices);
    const handledMs = (done ?? performance.now()) - sent.startedAt;
    return { connectMs, sentMs: sent.sentMs, handledMs, delivered, complete: done !== undefined, cpuMs };
  } finally {
    await broker.close();
  }
}

async function devicesPersisted(admin: ApiClient, devices: readonly SimDevice[], burstWallMs: number): Promise<number> {
  const ours = new Set(devices.map((d) => d.deviceId));
  const rows = await listAllDevices(admin, devices.length);
  return rows.filter((row) => {
    if (!ours.has(row.deviceId)) return false;
    // The latest heartbeat's seq when the plane keeps telemetry; else lastSeenAt moved past the burst start.
    if (row.telemetry && typeof row.telemetry.accepted === "number") return row.telemetry.accepted === HEARTBEATS;
    return row.lastSeenAt !== null && Date.parse(row.lastSeenAt) >= burstWallMs;
  }).length;
}

async function measurePlane(devices: SimDevice[], tls: boolean) {
  return withBenchPlane(tls ? {} : { HASHWARD_TLS: "off" }, async ({ plane, admin }) => {
    const token = await createEnrollmentToken(admin, devices.length);
    const enrollMs = await enrollAll(plane.httpUrl, devices, token);
    progress(`plane: ${devices.length} devices enrolled in ${Math.round(enrollMs)} ms`);
    const connectMs = await connectAll(plane.mqttUrl, devices, { ca: plane.caPem });
    progress(`plane: ${devices.length} devices connected in ${Math.round(connectMs)} ms`);
    const labels = { kind: "heartbeat" };
    const before = await readMetric(admin, "hashward_mqtt_messages_total", labels);
    const rejectedBefore = await readMetric(admin, "hashward_mqtt_messages_rejected_total", labels);

    const cpu = cpuMeter(plane.proc.child.pid!);
    const sent = await burst(devices, Date.now());
    const handledAt = await pollUntil(
      async () => ((await readMetric(admin, "hashward_mqtt_messages_total", labels)) - before >= TOTAL ? performance.now() : undefined),
      // A scrape costs the plane a few ms (prom-client default metrics read heap statistics): poll gently.
      { timeoutMs: TIMEOUT_MS, intervalMs: 100 },
    );
    const handled = (await readMetric(admin, "hashward_mqtt_messages_total", labels)) - before;
    const rejected = (await readMetric(admin, "hashward_mqtt_messages_rejected_total", labels)) - rejectedBefore;
    const persistedAt = await pollUntil(
      async () => ((await devicesPersisted(admin, devices, sent.startedWallMs)) >= devices.length ? performance.now() : undefined),
      { timeoutMs: TIMEOUT_MS, intervalMs: 100 },
    );
    // The plane's CPU from the first publish until all persisted (its answers to the polls above included).
    const cpuMs = cpu();
    const persistedDevices = await devicesPersisted(admin, devices, sent.startedWallMs);
    if (persistedDevices < devices.length) {
      // Which heartbeat seq the lagging devices show: tells "late" from "lost" from "out of order".
      const ours = new Set(devices.map((d) => d.deviceId));
      const seen = new Map<string, number>();
      for (const row of await listAllDevices(admin, devices.length)) {
        if (!ours.has(row.deviceId)) continue;
        const key = `seq ${row.telemetry?.accepted ?? "none"}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      progress(`plane: persisted heartbeat seq per device: ${JSON.stringify(Object.fromEntries(seen))}`);
    }
    const stillConnected = devices.filter((d) => d.client?.connected).length;
    await disconnectAll(devices);
    return {
      enrollMs,
      connectMs,
      sentMs: sent.sentMs,
      handledMs: (handledAt ?? performance.now()) - sent.startedAt,
      handled,
      rejected,
      handledComplete: handledAt !== undefined,
      persistedMs: (persistedAt ?? performance.now()) - sent.startedAt,
      persistedDevices,
      persistedComplete: persistedAt !== undefined,
      stillConnected,
      cpuMs,
    };
  });
}

const devices = makeDevices(DEVICES);
progress(`${DEVICES} devices x ${HEARTBEATS} heartbeats = ${TOTAL} messages, QoS ${QOS}`);
const baseline = await measureBaseline(devices);
progress(`baseline: ${baseline.delivered} delivered in ${Math.round(baseline.handledMs)} ms`);
const plaintext = await measurePlane(devices, false);
progress(`plaintext plane: ${plaintext.handled} handled in ${Math.round(plaintext.handledMs)} ms`);
const plane = await measurePlane(devices, true);

const rate = (count: number, ms: number) => round(count / (ms / 1000), 0);
const cpuUs = (cpuMs: number) => round((cpuMs * 1000) / TOTAL, 1);
const baselineRate = rate(baseline.delivered, baseline.handledMs);
const handledRate = rate(plane.handled, plane.handledMs);
const persistedRate = rate(TOTAL * (plane.persistedDevices / DEVICES), plane.persistedMs);

printTable(`heartbeat ingest: ${DEVICES} devices x ${HEARTBEATS} heartbeats (QoS ${QOS}, ${TOTAL} messages)`, [
  ["bare aedes: delivered", `${baseline.delivered}/${TOTAL}`, baseline.complete ? "" : "INCOMPLETE (timeout)"],
  ["bare aedes: time", `${round(baseline.handledMs, 0)} ms`, `clients wrote all in ${round(baseline.sentMs, 0)} ms`],
  ["bare aedes: msgs/s", baselineRate],
  ["plane: enroll (HTTP)", `${round(plane.enrollMs, 0)} ms`, `${rate(DEVICES, plane.enrollMs)} devices/s`],
  ["plane: connect (MQTT+token)", `${round(plane.connectMs, 0)} ms`, `${rate(DEVICES, plane.connectMs)} connects/s`],
  ["plane: handled (metric)", `${plane.handled}/${TOTAL}`, `${plane.handledComplete ? "" : "INCOMPLETE (timeout) "}rejected ${plane.rejected}`],
  ["plane: handled time", `${round(plane.handledMs, 0)} ms`, `clients wrote all in ${round(plane.sentMs, 0)} ms`],
  ["plane: handled msgs/s", handledRate, `ratio plane/bare ${ratio(handledRate, baselineRate)}`],
  ["plane: persisted devices", `${plane.persistedDevices}/${DEVICES}`, plane.persistedComplete ? "" : "INCOMPLETE (timeout)"],
  ["plane: persisted time", `${round(plane.persistedMs, 0)} ms`],
  ["plane: persisted msgs/s", persistedRate, `ratio plane/bare ${ratio(persistedRate, baselineRate)}`],
  ["plane: clients still connected", `${plane.stillConnected}/${DEVICES}`],
  ["CPU per message: bare / plane", `${cpuUs(baseline.cpuMs)} / ${cpuUs(plane.cpuMs)} us`, `ratio bare/plane ${ratio(baseline.cpuMs, plane.cpuMs)} (load-independent; 10 ms ticks)`],
  ["plaintext plane: connect", `${round(plaintext.connectMs, 0)} ms`, `${rate(DEVICES, plaintext.connectMs)} connects/s`],
  ["plaintext plane: handled msgs/s", rate(plaintext.handled, plaintext.handledMs), plaintext.handledComplete ? "" : "INCOMPLETE (timeout)"],
  ["TLS/plaintext: connects/s", ratio(rate(DEVICES, plane.connectMs), rate(DEVICES, plaintext.connectMs))],
  ["TLS/plaintext: handled msgs/s", ratio(handledRate, rate(plaintext.handled, plaintext.handledMs))],
  ["TLS/plaintext: enroll devices/s", ratio(rate(DEVICES, plane.enrollMs), rate(DEVICES, plaintext.enrollMs))],
]);

emitResult("heartbeat-ingest", {
  devices: DEVICES,
  heartbeatsPerDevice: HEARTBEATS,
  qos: QOS,
  messages: TOTAL,
  baselineMsgsPerSec: baselineRate,
  baselineMs: round(baseline.handledMs, 0),
  baselineComplete: baseline.complete,
  planeHandledMsgsPerSec: handledRate,
  planeHandledMs: round(plane.handledMs, 0),
  planeHandled: plane.handled,
  planeRejected: plane.rejected,
  planePersistedMsgsPerSec: persistedRate,
  planePersistedMs: round(plane.persistedMs, 0),
  planePersistedDevices: plane.persistedDevices,
  ratioHandled: ratio(handledRate, baselineRate),
  ratioPersisted: ratio(persistedRate, baselineRate),
  baselineCpuUsPerMsg: cpuUs(baseline.cpuMs),
  planeCpuUsPerMsg: cpuUs(plane.cpuMs),
  plaintextPlaneCpuUsPerMsg: cpuUs(plaintext.cpuMs),
  ratioCpuBareToPlane: ratio(baseline.cpuMs, plane.cpuMs),
  enrollDevicesPerSec: rate(DEVICES, plane.enrollMs),
  connectsPerSec: rate(DEVICES, plane.connectMs),
  plaintextConnectsPerSec: rate(DEVICES, plaintext.connectMs),
  plaintextHandledMsgsPerSec: rate(plaintext.handled, plaintext.handledMs),
  ratioTlsConnects: ratio(rate(DEVICES, plane.connectMs), rate(DEVICES, plaintext.connectMs)),
  ratioTlsHandled: ratio(handledRate, rate(plaintext.handled, plaintext.handledMs)),
  ratioTlsEnroll: ratio(rate(DEVICES, plane.enrollMs), rate(DEVICES, plaintext.enrollMs)),
  complete: plaintext.handledComplete && baseline.complete && plane.handledComplete && plane.persistedComplete,
});
process.exit(0);
