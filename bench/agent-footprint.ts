/**
 * Agent footprint: compiled binary sizes (x64 and arm64, raw and gzip -6) and the idle resident set of
 * `hashward-agent-linux-x64 run` BENCH_IDLE_MS (default 10 s) after start, enrolled with an enrollment token and
 * connected to a real control plane (VmRSS from /proc/<pid>/status; VmHWM, the peak, too).
 * Baseline (same run, same moment): a trivial `bun -e "setInterval(()=>{},1000)"` process, the floor of any Bun
 * program. Usage: npx tsx bench/agent-footprint.ts
 */
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { SIMULATED_MEASURE_PATHS, createSimulatedBoard } from "../agent/src/platform/index.js";
import { loadDeviceKey } from "../test/support/device-key.js";
import { AGENT_BINARY, BUN, ManagedProcess, REPO_ROOT, startAgent, tempDir, writeAgentConfig } from "../test/support/processes.js";
import { createEnrollmentToken, startBenchPlane } from "./support/plane.js";
import { emitResult, envInt, pollUntil, printTable, progress, ratio, round } from "./support/report.js";

const IDLE_MS = envInt("BENCH_IDLE_MS", 10_000, { min: 1000, max: 120_000 });
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

const { plane, admin, describe, close } = await startBenchPlane();
const processes: ManagedProcess[] = [];
try {
  const token = await createEnrollmentToken(admin, 1);
  const dir = tempDir("bench-footprint");
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: "S19-bench" });
  const stateDir = join(dir, "state");
  // Production defaults for every interval: this is the agent at rest.
  const configFile = writeAgentConfig(dir, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    caCertHash: plane.caCertHash,
    stateDir,
    model: "S19-bench",
    firmwareVersion: "bench",
    enrollmentToken: token,
    platform: { kind: "simulated", root: boardRoot },
    measure: { paths: [...SIMULATED_MEASURE_PATHS] },
  });

  const started = performance.now();
  const agent = startAgent("agent", configFile);
  const bare = new ManagedProcess("bare-bun", spawn(BUN, ["-e", "setInterval(() => {}, 1000)"], { stdio: ["ignore", "pipe", "pipe"] }));
  processes.push(agent, bare);

  const deviceId = await pollUntil(async () => loadDeviceKey(stateDir)?.deviceId, { timeoutMs: 30_000, intervalMs: 50 });
  if (!deviceId) throw new Error(`agent made no key within 30 s\n${agent.tail()}`);
  const connected = await pollUntil(
    async () => {
      const { status, body } = await admin.request<{ connected?: boolean; enrollment?: string }>("GET", `/api/v1/devices/${deviceId}`);
      return status === 200 && body.connected && body.enrollment === "accepted" ? performance.now() : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50 },
  );
  if (connected === undefined) throw new Error(`agent ${deviceId} not connected within 30 s\n${agent.tail()}`);
  const connectMs = connected - started;
  progress(`agent ${deviceId} enrolled and connected ${Math.round(connectMs)} ms after start; sampling at ${IDLE_MS} ms`);

  // The measurement window itself: RSS is read when the agent has been up IDLE_MS (never used to synchronise).
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, IDLE_MS - (performance.now() - started))));
  if (!agent.running) throw new Error(`agent exited\n${agent.tail()}`);
  const agentMemory = memory(agent.child.pid!);
  const bareMemory = memory(bare.child.pid!);
  const stillConnected = (await admin.get<{ connected: boolean }>(`/api/v1/devices/${deviceId}`)).connected;

  const mib = (kib: number) => round(kib / 1024, 1);
  printTable(`agent footprint (idle ${IDLE_MS / 1000} s after start, enrolled and connected)`, [
    ["binary x64", `${round(binarySizes.x64.bytes / MB, 1)} MiB`, binarySizes.x64.gzipBytes ? `gzip ${round(binarySizes.x64.gzipBytes / MB, 1)} MiB` : ""],
    ["binary arm64", `${round(binarySizes.arm64.bytes / MB, 1)} MiB`, binarySizes.arm64.gzipBytes ? `gzip ${round(binarySizes.arm64.gzipBytes / MB, 1)} MiB` : ""],
    ["agent: start -> connected", `${round(connectMs, 0)} ms`],
    ["agent: VmRSS", `${mib(agentMemory.rssKiB)} MiB`, `peak (VmHWM) ${mib(agentMemory.hwmKiB)} MiB; connected ${stillConnected}`],
    ["agent: RssAnon / RssFile", `${mib(agentMemory.anonKiB)} / ${mib(agentMemory.fileKiB)} MiB`, "heap vs mapped binary"],
    ["bare bun: VmRSS", `${mib(bareMemory.rssKiB)} MiB`, `peak ${mib(bareMemory.hwmKiB)} MiB`],
    ["bare bun: RssAnon / RssFile", `${mib(bareMemory.anonKiB)} / ${mib(bareMemory.fileKiB)} MiB`],
    ["ratio agent/bare bun", ratio(agentMemory.rssKiB, bareMemory.rssKiB)],
  ]);

  emitResult("agent-footprint", {
    idleMs: IDLE_MS,
    binaryX64Bytes: binarySizes.x64.bytes,
    binaryX64GzipBytes: binarySizes.x64.gzipBytes,
    binaryArm64Bytes: binarySizes.arm64.bytes,
    binaryArm64GzipBytes: binarySizes.arm64.gzipBytes,
    connectMs: round(connectMs, 0),
    agentRssKiB: agentMemory.rssKiB,
    agentPeakRssKiB: agentMemory.hwmKiB,
    agentRssAnonKiB: agentMemory.anonKiB,
    agentRssFileKiB: agentMemory.fileKiB,
    bareBunRssKiB: bareMemory.rssKiB,
    bareBunRssAnonKiB: bareMemory.anonKiB,
    bareBunPeakRssKiB: bareMemory.hwmKiB,
    ratioRss: ratio(agentMemory.rssKiB, bareMemory.rssKiB),
    connected: stillConnected,
  });
} catch (error) {
  progress(describe());
  throw error;
} finally {
  await Promise.all(processes.map((p) => p.kill("SIGKILL")));
  await close();
}
process.exit(0);
