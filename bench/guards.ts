/**
 * Guard cost on the agent.
 *  1. CPU time of one guard cycle (process.cpuUsage around BENCH_GUARD_CYCLES cycles, in process) on a realistic
 *     board: simulated miner over TCP (summary+stats+pools, one joined request), /proc/net/tcp with BENCH_GUARD_SOCKETS sockets, a
 *     pool policy, 20 malware indicators and a hosts file. Baseline (same run): one bare miner-API `summary`
 *     round trip, what any farm monitor already does per interval.
 *  2. Idle CPU share of the compiled agent (enrolled and connected to a stand-in plane) over BENCH_IDLE_MS with
 *     guards on (every BENCH_GUARD_INTERVAL_MS) against guards off, from the threads' /proc/<pid>/task/<tid>/schedstat
 *     (ns; /proc/<pid>/stat's 10 ms ticks are shown beside it: a few ticks per window cannot carry a ratio), heartbeats
 *     every BENCH_HEARTBEAT_MS (the agent's default, 10 s; set it low to make the heartbeat's share visible).
 *  3. CPU time of one signed heartbeat (HW-LIVE-1: RFC 8785 form + Ed25519 signature through node:crypto, as the agent builds it)
 *     against the same heartbeat built and JSON-encoded unsigned (baseline), in process, mean of BENCH_SIGN_COUNT.
 * Usage: npx tsx bench/guards.ts
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuardRunner, HostResolver, IndicatorMemory, KnownGoodPools, platformReader } from "../agent/src/guards/index.js";
import { silentLogger } from "../agent/src/log/index.js";
import { MinerApiClient } from "../agent/src/miner-api/index.js";
import { createSimulatedBoard } from "../agent/src/platform/index.js";
import { PolicyStore, type GuardPolicy } from "../agent/src/policy/index.js";
import { CLEAN_SOCKETS, SimMiner, writeSimulatedSockets, type SimSocket } from "../agent/src/sim-miner/index.js";
import { deviceIdFromPublicKey, generateKeyPair, signObject } from "../shared/index.js";
import { startFakePlane } from "../test/support/fake-plane.js";
import { startAgent, writeAgentConfig } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { CLK_TCK, cpuNsSince, cpuTicks, threadCpuNs } from "./support/proc.js";
import { emitResult, envInt, pollUntil, printTable, progress, ratio, round } from "./support/report.js";

const CYCLES = envInt("BENCH_GUARD_CYCLES", 200, { max: 100_000 });
const SOCKETS = envInt("BENCH_GUARD_SOCKETS", 200, { max: 50_000 });
const IDLE_MS = envInt("BENCH_IDLE_MS", 10_000, { min: 1000, max: 120_000 });
const INTERVAL_MS = envInt("BENCH_GUARD_INTERVAL_MS", 1000, { min: 1000, max: 600_000 });
const HEARTBEAT_MS = envInt("BENCH_HEARTBEAT_MS", 10_000, { min: 100, max: 3_600_000 });
const SIGN_COUNT = envInt("BENCH_SIGN_COUNT", 500, { min: 10, max: 100_000 });

const POLICY: GuardPolicy = {
  version: 1,
  pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333", "stratum+tcp://backup.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] },
  network: { allowedHosts: ["10.0.0.0", "ntp.example.net:123"] },
  indicators: Array.from({ length: 20 }, (_, i) => ({
    id: `ioc-${i}`,
    kind: (["file-present", "hosts-entry", "unexpected-executable", "reappearing-file"] as const)[i % 4]!,
    path: i % 4 === 1 ? "/etc/hosts" : i % 4 === 2 ? "/firmware" : `/etc/ioc-${i}`,
    ...(i % 4 === 1 ? { pattern: `.*bad${i}\\.example` } : i % 4 === 2 ? { pattern: `build${i}` } : {}),
    severity: "critical" as const,
    description: `indicator ${i}`,
  })),
};

function realisticSockets(count: number): SimSocket[] {
  const out: SimSocket[] = [...CLEAN_SOCKETS];
  for (let i = 0; out.length < count; i++) {
    // Inbound API/web clients and loopback chatter, plus the pool connection: a busy but clean board.
    out.push(i % 3 === 0 ? { local: "192.168.1.20:4028", remote: `192.168.1.${(i % 200) + 30}:${40000 + i}`, state: "ESTABLISHED" } : { local: `127.0.0.1:${30000 + i}`, remote: "127.0.0.1:4028", state: i % 2 ? "ESTABLISHED" : "TIME_WAIT" });
  }
  out.push({ local: "192.168.1.20:39999", remote: "198.51.100.7:3333", state: "ESTABLISHED" });
  return out;
}

async function cycleCost(): Promise<{ cycleCpuUs: number; summaryCpuUs: number; findings: number }> {
  const dir = tempDir("bench-guards").path;
  const root = join(dir, "board");
  const board = createSimulatedBoard(root, { model: "S19" });
  const miner = new SimMiner({ root });
  const port = await miner.start();
  writeSimulatedSockets(root, { v4: realisticSockets(SOCKETS) });
  writeFileSync(join(root, "etc/hosts"), `${readFileSync(join(root, "etc/hosts"), "utf8")}${Array.from({ length: 50 }, (_, i) => `10.0.1.${i} host${i}.farm.local`).join("\n")}\n`);
  const policy = PolicyStore.open(dir);
  policy.apply(POLICY, Date.now());
  const api = new MinerApiClient({ host: "127.0.0.1", port });
  const runner = new GuardRunner({
    platform: board,
    board: platformReader(board),
    policy,
    minerApi: api,
    resolver: new HostResolver({ lookup: async (h) => (h === "pool.example.net" ? ["198.51.100.7"] : ["198.51.100.8"]) }),
    memory: new IndicatorMemory(join(dir, "memory.json")),
    knownGood: new KnownGoodPools(join(dir, "known-good.json")),
    settings: { minerConfigPaths: ["/config/bmminer.conf", "/config/cgminer.conf"], allowedHosts: [], allowedListenPorts: [22, 80, 443, 4028] },
    mode: () => "monitor",
    controlPlaneUrls: () => ["http://plane.example.net:8080"],
    minerStopped: () => false,
    onFindingsChanged: () => undefined,
    onNewFinding: () => undefined,
    log: silentLogger(),
  });
  const warm = await runner.runNow();
  for (let i = 0; i < 10; i++) await api.summary();
  let before = process.cpuUsage();
  for (let i = 0; i < CYCLES; i++) await runner.runNow();
  let used = process.cpuUsage(before);
  const cycleCpuUs = (used.user + used.system) / CYCLES;
  before = process.cpuUsage();
  for (let i = 0; i < CYCLES; i++) await api.summary();
  used = process.cpuUsage(before);
  const summaryCpuUs = (used.user + used.system) / CYCLES;
  await miner.close();
  // The in-process sim-miner's CPU is included on both sides (it answers 1 joined request per cycle, 1 per summary).
  return { cycleCpuUs, summaryCpuUs, findings: warm.findings.length };
}

async function idleShare(guards: boolean): Promise<{ cpuPercent: number; tickPercent: number; ticks: number; guardCycles: number }> {
  const plane = await startFakePlane();
  const dir = tempDir(`bench-idle-${guards ? "on" : "off"}`).path;
  const root = join(dir, "board");
  createSimulatedBoard(root, { model: "S19" });
  const miner = new SimMiner({ root });
  const port = await miner.start();
  writeSimulatedSockets(root, { v4: realisticSockets(SOCKETS) });
  const config = writeAgentConfig(dir, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    allowPlaintext: true, // test/support/fake-plane.ts is plaintext
    stateDir: join(dir, "state"),
    model: "S19",
    firmwareVersion: "1.0.0",
    platform: { kind: "simulated", root },
    measure: { paths: ["/firmware"] },
    watch: false,
    heartbeatIntervalMs: HEARTBEAT_MS,
    guards: { enabled: guards, intervalMs: INTERVAL_MS, minerApi: { host: "127.0.0.1", port } },
  });
  const agent = startAgent(`agent-${guards ? "on" : "off"}`, config);
  try {
    const hello = await pollUntil(async () => plane.received.find((r) => r.topic.endsWith("/up/hello")), { timeoutMs: 30_000, intervalMs: 50 });
    if (!hello) throw new Error(`agent did not connect:\n${agent.tail()}`);
    await new Promise((r) => setTimeout(r, 1000)); // let startup evidence and the first guard cycle pass
    const asked = miner.log.length;
    const t0 = cpuTicks(agent.child.pid!);
    const ns0 = threadCpuNs(agent.child.pid!);
    const started = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_MS)); // measurement window, not synchronisation
    const ns = cpuNsSince(agent.child.pid!, ns0);
    const ticks = cpuTicks(agent.child.pid!) - t0;
    const elapsedS = (performance.now() - started) / 1000;
    return { cpuPercent: (ns / 1e9 / elapsedS) * 100, tickPercent: ((ticks / CLK_TCK) / elapsedS) * 100, ticks, guardCycles: miner.log.slice(asked).filter((line) => line.split("+").includes("pools")).length };
  } finally {
    await agent.kill("SIGKILL");
    await miner.close();
    await plane.close();
  }
}

/** HW-LIVE-1: what signing a heartbeat adds, against building and encoding the same heartbeat unsigned. */
function heartbeatSignCost(): { signedUs: number; unsignedUs: number } {
  const key = generateKeyPair();
  const deviceId = deviceIdFromPublicKey(key.publicKey);
  const body = (seq: number) => ({
    v: 1 as const, type: "heartbeat" as const, deviceId, connectNonce: "AAAAAAAAAAAAAAAAAAAAAA", seq, ts: Date.now(), uptimeMs: seq,
    containment: "none" as const, outboxDepth: 0,
    telemetry: { hashrateGhs: 13_512.34, accepted: seq, rejected: 0, temperaturesC: [64, 66, 65], fanRpm: [5400, 5460, 5520, 5580], activePool: "stratum+tcp://pool.example.net:3333" },
  });
  let sink = 0;
  for (let i = 0; i < 20; i++) sink += JSON.stringify(signObject(body(i), key.privateKey)).length; // warm-up
  let before = process.cpuUsage();
  for (let i = 0; i < SIGN_COUNT; i++) sink += JSON.stringify(signObject(body(i), key.privateKey)).length;
  let used = process.cpuUsage(before);
  const signedUs = (used.user + used.system) / SIGN_COUNT;
  before = process.cpuUsage();
  for (let i = 0; i < SIGN_COUNT; i++) sink += JSON.stringify(body(i)).length;
  used = process.cpuUsage(before);
  if (sink === 0) throw new Error("unreachable");
  return { signedUs, unsignedUs: (used.user + used.system) / SIGN_COUNT };
}

progress(`heartbeat signing: ${SIGN_COUNT} heartbeats signed, then unsigned`);
const signing = heartbeatSignCost();
progress(`guard cycle: ${CYCLES} cycles, ${SOCKETS} sockets, ${POLICY.indicators.length} indicators`);
const cost = await cycleCost();
progress(`idle share: compiled agent ${IDLE_MS} ms with guards on (every ${INTERVAL_MS} ms), then off`);
const on = await idleShare(true);
const off = await idleShare(false);

printTable("Guards on the agent", [
  ["guard cycle CPU", `${round(cost.cycleCpuUs / 1000, 3)} ms`, `mean of ${CYCLES}; ${cost.findings} findings on the clean board`],
  ["baseline: one miner-API summary", `${round(cost.summaryCpuUs / 1000, 3)} ms`, "same process, same sim-miner"],
  ["ratio cycle / summary", ratio(cost.cycleCpuUs, cost.summaryCpuUs)],
  ["agent idle CPU, guards on", `${round(on.cpuPercent, 3)} %`, `${on.guardCycles} cycles in ${IDLE_MS} ms; schedstat ns (ticks: ${on.ticks}, ${round(on.tickPercent, 2)} %)`],
  ["agent idle CPU, guards off", `${round(off.cpuPercent, 3)} %`, `baseline (ticks: ${off.ticks}, ${round(off.tickPercent, 2)} %)`],
  ["ratio on / off", off.cpuPercent > 0 ? ratio(on.cpuPercent, off.cpuPercent) : "n/a"],
  ["heartbeat interval (idle runs)", `${HEARTBEAT_MS} ms`],
  ["signed heartbeat CPU", `${round(signing.signedUs / 1000, 3)} ms`, `mean of ${SIGN_COUNT}, RFC 8785 + Ed25519 (node:crypto), this process`],
  ["baseline: unsigned heartbeat", `${round(signing.unsignedUs / 1000, 3)} ms`, "built and JSON-encoded"],
  ["signature share at the interval", `${round((signing.signedUs - signing.unsignedUs) / 1000 / HEARTBEAT_MS * 100, 4)} % of one core`],
]);
emitResult("guards", {
  cycles: CYCLES,
  sockets: SOCKETS,
  guardCycleCpuMs: round(cost.cycleCpuUs / 1000, 4),
  baselineSummaryCpuMs: round(cost.summaryCpuUs / 1000, 4),
  ratioCycleToSummary: ratio(cost.cycleCpuUs, cost.summaryCpuUs),
  idleMs: IDLE_MS,
  guardIntervalMs: INTERVAL_MS,
  agentCpuPercentGuardsOn: round(on.cpuPercent, 4),
  agentCpuPercentGuardsOff: round(off.cpuPercent, 4),
  guardCyclesInWindow: on.guardCycles,
  ratioIdleOnToOff: off.cpuPercent > 0 ? ratio(on.cpuPercent, off.cpuPercent) : null,
  agentTicksGuardsOn: on.ticks,
  agentTicksGuardsOff: off.ticks,
  heartbeatIntervalMs: HEARTBEAT_MS,
  signedHeartbeatCpuMs: round(signing.signedUs / 1000, 4),
  unsignedHeartbeatCpuMs: round(signing.unsignedUs / 1000, 4),
  ratioSignedToUnsigned: ratio(signing.signedUs, signing.unsignedUs),
  complete: on.guardCycles > 0,
});
process.exit(0);
