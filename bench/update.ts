/**
 * Update of a BENCH_UPDATE_MB (default 64) MB image from the control plane, against `curl` + `sha256sum` of the
 * same file from the same server (the plane's /tuf/targets/ route), as ratios. Agent sides:
 *   tuf download = `hashward-agent tuf ... download` (the agent's tuf-js path: root, timestamp, snapshot, targets
 *                  metadata verified, then the target fetched with its signed length and hashes checked),
 *                  whole process, fresh metadata and target dirs each run; median of BENCH_RUNS
 *   agent update = a running agent on a simulated A/B board told `update` through the API, until the plane records
 *                  its ack (download, verify, write inactive slot, trial boot, health check, commit); one run
 * The release is signed offline with the release CLI and uploaded through the API, as an operator does.
 * Usage: npx tsx bench/update.ts
 */
import { randomFillSync } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createSimulatedBoard } from "../agent/src/platform/index.js";
import { loadDeviceKey } from "../test/support/device-key.js";
import { AGENT_BINARY, startAgent, writeAgentConfig, type ManagedProcess } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { createReleaser } from "../test/support/release.js";
import { createEnrollmentToken, startBenchPlane } from "./support/plane.js";
import { emitResult, envInt, median, pollUntil, printTable, progress, ratio, round, withRetry } from "./support/report.js";

const IMAGE_MB = envInt("BENCH_UPDATE_MB", 64, { max: 1024 });
const RUNS = envInt("BENCH_RUNS", 3, { max: 20 });
const TIMEOUT_MS = envInt("BENCH_TIMEOUT_MS", 120_000, { max: 1_800_000 });
const MODEL = "S19";

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ").slice(0, 200)} exited ${result.status}: ${result.stderr || result.error}`);
  return result.stdout;
}

function timed(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

if (!existsSync(AGENT_BINARY)) throw new Error(`${AGENT_BINARY} is missing: run \`npm run build:agent\` first`);

const dir = tempDir("bench-update").path;
const bench = await startBenchPlane({ HASHWARD_ROLLOUT_TICK_MS: "200", HASHWARD_TUF_MAX_IMAGE_BYTES: String((IMAGE_MB + 16) * 1024 * 1024) });
let agent: ManagedProcess | undefined;
try {
  const { plane, admin } = bench;
  const releaser = await createReleaser(join(dir, "releaser"), admin);
  const blob = randomFillSync(Buffer.alloc(IMAGE_MB * 1024 * 1024));
  progress(`signing and uploading a ${IMAGE_MB} MB release`);
  const published = await releaser.publish({ name: "fw-bench-2.0.0", model: MODEL, version: "2.0.0", extraFiles: [{ path: "lib/blob.bin", content: blob }] });
  const imageBytes = readFileSync(published.imageFile).length;
  const targetUrl = `${plane.httpUrl}/tuf/targets/${published.sha256}.fw-bench-2.0.0`;

  // Baseline: curl + sha256sum of the very same file from the very same server.
  const curlRuns: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const out = join(dir, `curl-${i}.img`);
    const ms = timed(() => {
      run("curl", ["-sSf", ...(plane.caPem ? ["--cacert", join(plane.dataDir, "ca.pem")] : []), "-o", out, targetUrl]);
      const digest = run("sha256sum", [out]).slice(0, 64);
      if (digest !== published.sha256) throw new Error(`curl download hashes to ${digest}, not ${published.sha256}`);
    });
    rmSync(out, { force: true });
    if (i > 0) curlRuns.push(ms); // run 0 warms the page cache and the server
  }
  progress(`curl + sha256sum: ${curlRuns.map(Math.round).join(", ")} ms`);

  const tufRuns: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const client = join(dir, `tuf-${i}`);
    run(AGENT_BINARY, ["tuf", "--metadata-dir", join(client, "md"), "init", releaser.rootFile]);
    const ms = timed(() =>
      run(AGENT_BINARY, [
        "tuf", "--metadata-dir", join(client, "md"), "--metadata-url", `${plane.httpUrl}/tuf/metadata/`, "--ca-file", join(plane.dataDir, "ca.pem"), "--target-name", "fw-bench-2.0.0",
        "--target-base-url", `${plane.httpUrl}/tuf/targets/`, "--target-dir", join(client, "out"), "download",
      ]),
    );
    if (readFileSync(join(client, "out", "fw-bench-2.0.0")).length !== imageBytes) throw new Error("tuf download has the wrong length");
    rmSync(client, { recursive: true, force: true });
    if (i > 0) tufRuns.push(ms);
  }
  progress(`hashward-agent tuf download: ${tufRuns.map(Math.round).join(", ")} ms`);

  // One full update through a running agent.
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: MODEL, firmwareVersion: "1.0.0", slots: true });
  const stateDir = join(dir, "state");
  const configFile = writeAgentConfig(dir, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    caCertHash: plane.caCertHash,
    stateDir,
    model: MODEL,
    firmwareVersion: "1.0.0",
    // Retried: the plane may close an idle keep-alive socket just as the next request goes out ("other side closed").
    enrollmentToken: await withRetry(() => createEnrollmentToken(admin, 1)),
    platform: { kind: "simulated", root: boardRoot },
    measure: { paths: ["/config"] },
    heartbeatIntervalMs: 5000,
    attestIntervalMs: 600_000,
    enrollPollMs: 300,
    update: { trustedRootFile: releaser.rootFile },
  });
  agent = startAgent("bench-agent", configFile);
  const deviceId = await pollUntil(async () => loadDeviceKey(stateDir)?.deviceId, { timeoutMs: 30_000, intervalMs: 50 });
  if (!deviceId) throw new Error("the agent made no device key");
  const connected = await pollUntil(async () => ((await admin.get(`/api/v1/devices/${deviceId}`)).connected ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
  if (!connected) throw new Error("the agent did not connect");
  const started = performance.now();
  const command = await admin.ok("POST", `/api/v1/devices/${deviceId}/update`, { targetName: "fw-bench-2.0.0" });
  const acked = await pollUntil(
    async () => {
      const { commands } = await admin.get(`/api/v1/devices/${deviceId}/commands?limit=5`);
      const mine = commands.find((c: { seq: number }) => c.seq === command.seq);
      return mine && mine.status !== "pending" ? mine : undefined;
    },
    { timeoutMs: TIMEOUT_MS, intervalMs: 25 },
  );
  const updateMs = performance.now() - started;
  if (!acked || acked.status !== "acked") throw new Error(`update did not complete: ${JSON.stringify(acked)}`);
  if (readFileSync(join(boardRoot, "boot/active"), "utf8").trim() !== "b") throw new Error("the board did not switch slots");
  progress(`agent update (command -> ack): ${Math.round(updateMs)} ms`);
  // Where the time went: the agent's own log lines about this update, in ms after the first of them.
  const milestones = agent.lines.filter((line) => typeof line.time === "string" && /command|update/.test(String(line.msg)));
  const first = Date.parse(String(milestones[0]?.time));
  for (const line of milestones) progress(`  agent +${Date.parse(String(line.time)) - first} ms: ${String(line.msg)}`);

  const curlMs = median(curlRuns);
  const tufMs = median(tufRuns);
  const mb = imageBytes / (1024 * 1024);
  printTable(`update: ${round(mb, 1)} MB image from the control plane, median of ${RUNS} (agent update: 1 run)`, [
    ["curl + sha256sum (baseline)", `${round(curlMs, 0)} ms`, `${round(mb / (curlMs / 1000), 1)} MB/s`],
    ["hashward-agent tuf download", `${round(tufMs, 0)} ms`, `${round(mb / (tufMs / 1000), 1)} MB/s; x${ratio(tufMs, curlMs)} of baseline`],
    ["agent update (command -> ack)", `${round(updateMs, 0)} ms`, `x${ratio(updateMs, curlMs)} of baseline (adds install, trial boot, health check, commit)`],
  ]);
  emitResult("update", {
    imageBytes,
    runs: RUNS,
    curlSha256sumMs: round(curlMs, 1),
    tufDownloadMs: round(tufMs, 1),
    agentUpdateMs: round(updateMs, 1),
    ratioTufDownloadToCurl: ratio(tufMs, curlMs),
    ratioAgentUpdateToCurl: ratio(updateMs, curlMs),
    complete: true,
  });
} catch (error) {
  process.stderr.write(`${bench.describe()}\n`);
  throw error;
} finally {
  await agent?.kill("SIGKILL");
  await bench.close();
  rmSync(dir, { recursive: true, force: true });
}
