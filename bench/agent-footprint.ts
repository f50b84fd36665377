/**
 * Agent footprint: compiled binary sizes (x64 and arm64, raw and gzip -6) and the idle resident set of
 * `hashward-agent-linux-x64 run` BENCH_IDLE_MS (default 10 s) after start, enrolled with an enrollment token and
 * connected to a real control plane (VmRSS from /proc/<pid>/status; VmHWM, the peak, too), then its idle CPU share
 * over the next BENCH_CPU_WINDOW_MS (default 20 s: two heartbeats at the default 10 s; on-CPU ns of its threads
 * from /proc/<pid>/task/<tid>/schedstat, with /proc/<pid>/stat's 10 ms ticks beside it as a cross-check).
 * Baselines (same run, same moment):
 *  - a trivial `bun -e "setInterval(()=>{},1000)"` process, the floor of any Bun program;
 *  - the same agent against a plaintext plane (HASHWARD_TLS=off, `allowPlaintext`), i.e. without TLS (HW-TLS-1):
 *    TLS/plaintext ratios of RSS and idle CPU. The agent always signs its heartbeats (HW-LIVE-1), so what the
 *    signature adds per heartbeat is measured in process by `bench/guards.ts` (signed vs unsigned).
 * Usage: npx tsx bench/agent-footprint.ts
 */
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { SIMULATED_MEASURE_PATHS, createSimulatedBoard } from "../agent/src/platform/index.js";
import { loadDeviceKey } from "../test/support/device-key.js";
import { AGENT_BINARY, BUN, ManagedProcess, REPO_ROOT, startAgent, writeAgentConfig } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { createEnrollmentToken, startBenchPlane, type BenchPlane } from "./support/plane.js";
import { cpuNsSince, cpuTicks, threadCpuNs } from "./support/proc.js";
import { emitResult, type Row, envInt, pollUntil, printTable, progress, ratio, round } from "./support/report.js";

const IDLE_MS = envInt("BENCH_IDLE_MS", 10_000, { min: 1000, max: 120_000 });
const CPU_WINDOW_MS = envInt("BENCH_CPU_WINDOW_MS", 20_000, { min: 1000, max: 600_000 });
const GZIP = process.env.BENCH_FOOTPRINT_GZIP !== "0";
const BINARIES = {
  x64: AGENT_BINARY,
  arm64: join(REPO_ROOT, "dist/agent/hashward-agent-linux-arm64"),
};
const MB = 1024 * 1024;

function sizes(file: string): { bytes: number; gzipBytes: number | null } {
  const bytes = statSync(file).size;
  return { bytes, gzipBytes: GZIP ? gzipSync(readFileSync(file), { level: 6 }).length : null };
}

/** VmRSS, VmHWM (peak) and the anonymous/file-backed split of VmRSS, in KiB, from /proc/<pid>/status. */
function memory(pid: number): { rssKiB: number; hwmKiB: number; anonKiB: number; fileKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM"), anonKiB: field("RssAnon"), fileKiB: field("RssFile") };
}

const binarySizes = Object.fromEntries(Object.entries(BINARIES).map(([arch, file]) => [arch, sizes(file)])) as Record<
  keyof typeof BINARIES,
  ReturnType<typeof sizes>
>;

interface Run {
  label: string;
  bench: BenchPlane;
  agent: ManagedProcess;
  deviceId?: string;
  connectMs?: number;
}

/** A real plane (TLS or plaintext) and the compiled agent enrolled to it with a token; the agent is started later. */
async function prepare(tls: boolean, processes: ManagedProcess[]): Promise<Run & { stateDir: string; start(): void }> {
  const bench = await startBenchPlane(tls ? {} : { HASHWARD_TLS: "off" });
  const { plane, admin } = bench;
  const token = await createEnrollmentToken(admin, 1);
  const dir = tempDir(`bench-footprint-${tls ? "tls" : "plain"}`).path;
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: "S19-bench" });
  const stateDir = join(dir, "state");
  // Production defaults for every interval: this is the agent at rest.
  const configFile = writeAgentConfig(dir, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    ...(tls ? { caCertHash: plane.caCertHash } : { allowPlaintext: true }),
    stateDir,
    model: "S19-bench",
    firmwareVersion: "bench",
    enrollmentToken: token,
    platform: { kind: "simulated", root: boardRoot },
    measure: { paths: [...SIMULATED_MEASURE_PATHS] },
  });
  const run = {
    label: tls ? "agent (TLS)" : "agent (plaintext)",
    bench,
    stateDir,
    agent: undefined as unknown as ManagedProcess,
    start() {
      run.agent = startAgent(run.label, configFile);
      processes.push(run.agent);
    },
  };
  return run;
}

/** Waits until the agent's device is enrolled and connected; records when. */
async function connected(run: Run & { stateDir: string }, started: number): Promise<void> {
  const { admin } = run.bench;
  const deviceId = await pollUntil(async () => loadDeviceKey(run.stateDir)?.deviceId, { timeoutMs: 30_000, intervalMs: 50 });
  if (!deviceId) throw new Error(`${run.label} made no key within 30 s\n${run.agent.tail()}`);
  const at = await pollUntil(
    async () => {
      const { status, body } = await admin.request<{ connected?: boolean; enrollment?: string }>("GET", `/api/v1/devices/${deviceId}`);
      return status === 200 && body.connected && body.enrollment === "accepted" ? performance.now() : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50 },
  );
  if (at === undefined) throw new Error(`${run.label} ${deviceId} not connected within 30 s\n${run.agent.tail()}`);
  run.deviceId = deviceId;
  run.connectMs = at - started;
}

const processes: ManagedProcess[] = [];
const runs: Array<Run & { stateDir: string; start(): void }> = [];
try {
  runs.push(await prepare(true, processes));
  runs.push(await prepare(false, processes));
  const started = performance.now();
  for (const run of runs) run.start();
  const bare = new ManagedProcess("bare-bun", spawn(BUN, ["-e", "setInterval(() => {}, 1000)"], { stdio: ["ignore", "pipe", "pipe"] }));
  processes.push(bare);
  await Promise.all(runs.map((run) => connected(run, started)));
  progress(`agents enrolled and connected ${runs.map((r) => `${r.label} ${Math.round(r.connectMs!)} ms`).join(", ")} after start; sampling at ${IDLE_MS} ms`);

  // The measurement windows themselves (never used to synchronise): RSS when the agents have been up IDLE_MS, then
  // CPU over the next CPU_WINDOW_MS, when start-up work (enrollment, first evidence) is over.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, IDLE_MS - (performance.now() - started))));
  const memories = runs.map((run) => {
    if (!run.agent.running) throw new Error(`${run.label} exited\n${run.agent.tail()}`);
    return memory(run.agent.child.pid!);
  });
  const bareMemory = memory(bare.child.pid!);
  progress(`RSS sampled; idle CPU over the next ${CPU_WINDOW_MS} ms`);
  const ticksBefore = runs.map((run) => cpuTicks(run.agent.child.pid!));
  const nsBefore = runs.map((run) => threadCpuNs(run.agent.child.pid!));
  const windowStart = performance.now();
  await new Promise((resolve) => setTimeout(resolve, CPU_WINDOW_MS));
  const windowS = (performance.now() - windowStart) / 1000;
  const samples = runs.map((run, i) => {
    if (!run.agent.running) throw new Error(`${run.label} exited\n${run.agent.tail()}`);
    const ns = cpuNsSince(run.agent.child.pid!, nsBefore[i]!);
    const ticks = cpuTicks(run.agent.child.pid!) - ticksBefore[i]!;
    return { memory: memories[i]!, cpuPercent: (ns / 1e9 / windowS) * 100, ticks };
  });
  const stillConnected = await Promise.all(runs.map(async (run) => (await run.bench.admin.get<{ connected: boolean }>(`/api/v1/devices/${run.deviceId}`)).connected));
  const [tls, plain] = samples as [(typeof samples)[0], (typeof samples)[0]];
  const [tlsRun, plainRun] = [runs[0]!, runs[1]!];

  const mib = (kib: number) => round(kib / 1024, 1);
  printTable(`agent footprint (idle ${IDLE_MS / 1000} s after start, enrolled and connected)`, [
    ["binary x64", `${round(binarySizes.x64.bytes / MB, 1)} MiB`, binarySizes.x64.gzipBytes ? `gzip ${round(binarySizes.x64.gzipBytes / MB, 1)} MiB` : ""],
    ["binary arm64", `${round(binarySizes.arm64.bytes / MB, 1)} MiB`, binarySizes.arm64.gzipBytes ? `gzip ${round(binarySizes.arm64.gzipBytes / MB, 1)} MiB` : ""],
    ...runs.flatMap((run, i) => {
      const sample = samples[i]!;
      return [
        [`${run.label}: start -> connected`, `${round(run.connectMs!, 0)} ms`],
        [`${run.label}: VmRSS`, `${mib(sample.memory.rssKiB)} MiB`, `peak (VmHWM) ${mib(sample.memory.hwmKiB)} MiB; connected ${stillConnected[i]}`],
        [`${run.label}: RssAnon / RssFile`, `${mib(sample.memory.anonKiB)} / ${mib(sample.memory.fileKiB)} MiB`, "heap vs mapped binary"],
        [`${run.label}: idle CPU`, `${round(sample.cpuPercent, 3)} %`, `schedstat ns over ${round(windowS, 1)} s (/proc stat: ${sample.ticks} ticks of 10 ms)`],
      ] satisfies Row[];
    }),
    ["bare bun: VmRSS", `${mib(bareMemory.rssKiB)} MiB`, `peak ${mib(bareMemory.hwmKiB)} MiB`],
    ["bare bun: RssAnon / RssFile", `${mib(bareMemory.anonKiB)} / ${mib(bareMemory.fileKiB)} MiB`],
    ["ratio agent (TLS)/bare bun: VmRSS", ratio(tls.memory.rssKiB, bareMemory.rssKiB)],
    ["ratio TLS/plaintext: VmRSS", ratio(tls.memory.rssKiB, plain.memory.rssKiB), "what TLS costs the agent at rest (HW-TLS-1)"],
    ["ratio TLS/plaintext: idle CPU", plain.cpuPercent > 0 ? ratio(tls.cpuPercent, plain.cpuPercent) : "n/a"],
  ]);

  emitResult("agent-footprint", {
    idleMs: IDLE_MS,
    binaryX64Bytes: binarySizes.x64.bytes,
    binaryX64GzipBytes: binarySizes.x64.gzipBytes,
    binaryArm64Bytes: binarySizes.arm64.bytes,
    binaryArm64GzipBytes: binarySizes.arm64.gzipBytes,
    connectMs: round(tlsRun.connectMs!, 0),
    agentRssKiB: tls.memory.rssKiB,
    agentPeakRssKiB: tls.memory.hwmKiB,
    agentRssAnonKiB: tls.memory.anonKiB,
    agentRssFileKiB: tls.memory.fileKiB,
    cpuWindowMs: CPU_WINDOW_MS,
    agentIdleCpuPercent: round(tls.cpuPercent, 4),
    plaintextConnectMs: round(plainRun.connectMs!, 0),
    plaintextAgentRssKiB: plain.memory.rssKiB,
    plaintextAgentPeakRssKiB: plain.memory.hwmKiB,
    plaintextAgentIdleCpuPercent: round(plain.cpuPercent, 4),
    bareBunRssKiB: bareMemory.rssKiB,
    bareBunRssAnonKiB: bareMemory.anonKiB,
    bareBunPeakRssKiB: bareMemory.hwmKiB,
    ratioRss: ratio(tls.memory.rssKiB, bareMemory.rssKiB),
    ratioRssTlsToPlaintext: ratio(tls.memory.rssKiB, plain.memory.rssKiB),
    ratioIdleCpuTlsToPlaintext: plain.cpuPercent > 0 ? ratio(tls.cpuPercent, plain.cpuPercent) : null,
    connected: stillConnected.every(Boolean),
  });
} catch (error) {
  for (const run of runs) progress(run.bench.describe());
  throw error;
} finally {
  await Promise.all(processes.map((p) => p.kill("SIGKILL")));
  await Promise.all(runs.map((run) => run.bench.close()));
}
process.exit(0);
