/**
 * Quarantine fan-out: BENCH_DEVICES simulated devices (default 1,000) connected as in heartbeat-ingest, each
 * answering a down/command with a signed ack (shared ackSchema, signed with its device key) on up/ack, QoS 1.
 * Then ONE API call `POST /api/v1/quarantine {deviceIds: [all], reason}` and wait until the API lists every device
 * as containment "quarantined".
 *   per-device latency = API call start -> the device's containment:quarantined transition time (its history),
 *                         falling back to the first poll of GET /api/v1/devices?containment=quarantined that saw it
 *   total              = API call start -> the poll that sees all devices quarantined
 * Baseline (same run, same clients): a bare aedes (own Bun process) publishes one plain QoS 1 message to each
 * device's down/command; time until every client has received it. Usage: npx tsx bench/quarantine-fanout.ts
 */
import type { ApiClient } from "../test/support/api.js";
import { toBase64Url } from "../shared/index.js";
import { upTopic, type Command } from "../shared/protocol/index.js";
import { signedAckFor } from "../test/support/event-load.js";
import { startBareBroker } from "./support/bare-broker.js";
import { BENCH_FIRMWARE, BENCH_MODEL, connectAll, disconnectAll, enrollAll, makeDevices, type SimDevice } from "./support/devices.js";
import { createEnrollmentToken, listAllDevices, withBenchPlane } from "./support/plane.js";
import { cpuMeter } from "./support/proc.js";
import { emitResult, envInt, mapPool, percentile, pollUntil, printTable, progress, ratio, round, withRetry } from "./support/report.js";

const DEVICES = envInt("BENCH_DEVICES", 1000, { max: 10_000 });
const TIMEOUT_MS = envInt("BENCH_TIMEOUT_MS", 60_000, { max: 600_000 });
/** `http`: devices enroll over HTTP as agents do; `seed`: enrolled rows written into the database (10,000 devices). */
const ENROLL = process.env.BENCH_ENROLL ?? "http";
if (ENROLL !== "http" && ENROLL !== "seed") throw new Error(`BENCH_ENROLL must be http or seed, got ${JSON.stringify(ENROLL)}`);
/** The name the result is reported under (run-bench sets it: the 10,000-device variant runs this same file). */
const RESULT_NAME = process.env.BENCH_NAME ?? "quarantine-fanout";

interface Receipts {
  /** Wall-clock ms at which each device first received a down/command. */
  at: Map<string, number>;
  allReceived: Promise<void>;
}

/** Wires every client's message handler; with `ack`, each command is answered the way the agent answers it. */
function listenForCommands(devices: readonly SimDevice[], { ack }: { ack: boolean }): Receipts {
  const at = new Map<string, number>();
  let resolveAll!: () => void;
  const allReceived = new Promise<void>((resolve) => (resolveAll = resolve));
  for (const device of devices) {
    device.client!.on("message", (topic, payload) => {
      if (!topic.endsWith("/down/command")) return;
      if (!at.has(device.deviceId)) {
        at.set(device.deviceId, Date.now());
        if (at.size === devices.length) resolveAll();
      }
      if (!ack) return;
      let command: Command;
      try {
        command = JSON.parse(payload.toString("utf8")) as Command;
      } catch {
        return;
      }
      const reply = signedAckFor(command, device.deviceId, device.keyPair.privateKey);
      device.client!.publish(upTopic(device.deviceId, "ack"), JSON.stringify(reply), { qos: 1 });
    });
  }
  return { at, allReceived };
}

function latencies(startWallMs: number, times: Iterable<number>): number[] {
  return [...times].map((t) => t - startWallMs);
}

async function measureBaseline(devices: SimDevice[]) {
  const broker = await startBareBroker();
  try {
    await connectAll(broker.mqttUrl, devices, { subscribeDown: true });
    const receipts = listenForCommands(devices, { ack: false });
    const cpu = cpuMeter(broker.proc.child.pid!);
    const startWallMs = Date.now();
    await broker.fanout(devices.map((d) => d.deviceId));
    const complete = await Promise.race([
      receipts.allReceived.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), TIMEOUT_MS).unref()),
    ]);
    const cpuMs = cpu();
    const received = latencies(startWallMs, receipts.at.values());
    await disconnectAll(devices);
    return { totalMs: Math.max(...received), p50: percentile(received, 50), p99: percentile(received, 99), received: received.length, complete, cpuMs };
  } finally {
    await broker.close();
  }
}

async function transitionTimes(admin: ApiClient, devices: readonly SimDevice[]): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  await mapPool(devices, 8, async (device) => {
    const { transitions } = await withRetry(() => admin.get<{ transitions: Array<{ machine: string; to: string; at: string }> }>(
      `/api/v1/devices/${device.deviceId}/history?limit=20`,
    ));
    const quarantined = transitions.find((t) => t.machine === "containment" && t.to === "quarantined");
    if (quarantined) times.set(device.deviceId, Date.parse(quarantined.at));
  });
  return times;
}

/** Enrolled, accepted device rows with the simulated devices' keys, as enrollment leaves them. */
function enrolledRows(devices: readonly SimDevice[]) {
  return devices.map((device) => ({
    id: device.deviceId,
    publicKey: toBase64Url(device.keyPair.publicKey),
    model: BENCH_MODEL,
    firmwareVersion: BENCH_FIRMWARE,
    agentVersion: "bench",
    enrollment: "accepted",
  }));
}

async function measurePlane(devices: SimDevice[]) {
  return withBenchPlane({}, async (bench) => {
    let enrollMs = 0;
    if (ENROLL === "seed") {
      const started = performance.now();
      await bench.seed(enrolledRows(devices));
      progress(`plane: ${devices.length} enrolled devices seeded in ${Math.round(performance.now() - started)} ms (BENCH_ENROLL=seed)`);
    } else {
      enrollMs = await enrollAll(bench.plane.httpUrl, devices, await createEnrollmentToken(bench.admin, devices.length));
    }
    const { plane, admin } = bench;
    const connectMs = await connectAll(plane.mqttUrl, devices, { subscribeDown: true, ca: plane.caPem });
    progress(`plane: ${devices.length} devices ${ENROLL === "seed" ? "seeded" : `enrolled in ${Math.round(enrollMs)} ms`}, connected in ${Math.round(connectMs)} ms`);
    const ours = new Set(devices.map((d) => d.deviceId));
    // The plane publishes only to devices it sees connected: start once it lists them all so.
    await pollUntil(
      async () => ((await listAllDevices(admin, devices.length)).filter((r) => ours.has(r.deviceId) && r.connected).length === devices.length ? true : undefined),
      { timeoutMs: TIMEOUT_MS, intervalMs: 200 },
    );
    const receipts = listenForCommands(devices, { ack: true });

    const cpu = cpuMeter(plane.proc.child.pid!);
    const startWallMs = Date.now();
    const started = performance.now();
    await admin.post("/api/v1/quarantine", { deviceIds: devices.map((d) => d.deviceId), reason: "bench: fleet-wide quarantine" });
    const apiMs = performance.now() - started;

    const firstSeen = new Map<string, number>();
    const doneAt = await pollUntil(
      async () => {
        const rows = await listAllDevices(admin, devices.length, "&containment=quarantined");
        const now = Date.now();
        for (const row of rows) if (ours.has(row.deviceId) && !firstSeen.has(row.deviceId)) firstSeen.set(row.deviceId, now);
        return firstSeen.size >= devices.length ? performance.now() : undefined;
      },
      { timeoutMs: TIMEOUT_MS, intervalMs: 200 },
    );
    const totalMs = (doneAt ?? performance.now()) - started;
    // The plane's CPU from the API call until the API listed all quarantined (its answers to those polls included).
    const cpuMs = cpu();
    const history = await transitionTimes(admin, devices);
    const persisted = devices
      .map((d) => history.get(d.deviceId) ?? firstSeen.get(d.deviceId))
      .filter((t): t is number => t !== undefined)
      .map((t) => t - startWallMs);
    const received = latencies(startWallMs, receipts.at.values());
    await disconnectAll(devices);
    return {
      enrollMs,
      connectMs,
      apiMs,
      totalMs,
      complete: doneAt !== undefined,
      quarantined: firstSeen.size,
      fromHistory: history.size,
      p50: percentile(persisted, 50),
      p99: percentile(persisted, 99),
      max: Math.max(...persisted),
      receivedCount: received.length,
      receivedP50: percentile(received, 50),
      receivedP99: percentile(received, 99),
      cpuMs,
    };
  });
}

const devices = makeDevices(DEVICES);
progress(`${DEVICES} devices, one bulk quarantine`);
const baseline = await measureBaseline(devices);
progress(`baseline: ${baseline.received} received, last after ${Math.round(baseline.totalMs)} ms`);
const plane = await measurePlane(devices);

printTable(`quarantine fan-out: ${DEVICES} devices, one POST /api/v1/quarantine`, [
  ["bare aedes: received", `${baseline.received}/${DEVICES}`, baseline.complete ? "" : "INCOMPLETE (timeout)"],
  ["bare aedes: p50 / p99", `${round(baseline.p50, 0)} / ${round(baseline.p99, 0)} ms`],
  ["bare aedes: total", `${round(baseline.totalMs, 0)} ms`],
  ["plane: API call (202)", `${round(plane.apiMs, 0)} ms`],
  ["plane: command received p50 / p99", `${round(plane.receivedP50, 0)} / ${round(plane.receivedP99, 0)} ms`, `${plane.receivedCount}/${DEVICES} devices`],
  ["plane: quarantined", `${plane.quarantined}/${DEVICES}`, `${plane.complete ? "" : "INCOMPLETE (timeout) "}${plane.fromHistory} times from history`],
  ["plane: persisted p50 / p99", `${round(plane.p50, 0)} / ${round(plane.p99, 0)} ms`, `max ${round(plane.max, 0)} ms`],
  ["plane: total (all seen in API)", `${round(plane.totalMs, 0)} ms`, `ratio plane/bare ${ratio(plane.totalMs, baseline.totalMs)}`],
  ["CPU: bare / plane", `${round(baseline.cpuMs, 0)} / ${round(plane.cpuMs, 0)} ms`, `plane/bare ${ratio(plane.cpuMs, baseline.cpuMs)} (load-independent; 10 ms ticks)`],
]);

emitResult(RESULT_NAME, {
  devices: DEVICES,
  baselineTotalMs: round(baseline.totalMs, 0),
  baselineP50Ms: round(baseline.p50, 0),
  baselineP99Ms: round(baseline.p99, 0),
  apiCallMs: round(plane.apiMs, 0),
  receivedP50Ms: round(plane.receivedP50, 0),
  receivedP99Ms: round(plane.receivedP99, 0),
  p50Ms: round(plane.p50, 0),
  p99Ms: round(plane.p99, 0),
  maxMs: round(plane.max, 0),
  totalMs: round(plane.totalMs, 0),
  quarantined: plane.quarantined,
  latencySource: plane.fromHistory === DEVICES ? "history" : "history+poll",
  ratioTotal: ratio(plane.totalMs, baseline.totalMs),
  ratioP99: ratio(plane.p99, baseline.p99),
  baselineCpuMs: round(baseline.cpuMs, 0),
  planeCpuMs: round(plane.cpuMs, 0),
  ratioCpu: ratio(plane.cpuMs, baseline.cpuMs),
  complete: baseline.complete && plane.complete,
});
process.exit(0);
