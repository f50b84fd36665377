#!/usr/bin/env node
/**
 * `npm run bench` runs every bench in bench/ one after the other (each bounded, 127.0.0.1 only, stops by itself)
 * and prints a summary; `npm run bench -- quarantine-fanout measure` runs only those; `--list` names them.
 * Each bench prints its own table and, last, one JSON line {"bench": name, ...}; the summary is built from those
 * lines and written to bench/results/summary.json (git-ignored). Scale knobs are env vars documented in
 * bench/README.md. Exit code 1 when a bench fails or reports "complete": false (it timed out waiting for the
 * plane; its figures are then partial), 2 for an unknown bench name.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsx = join(root, "node_modules/.bin/tsx");

/** Order matters a little: the CPU-bound file bench first, before sockets from earlier runs linger. */
const BENCHES = {
  measure: { needsAgent: true, headline: ["agentBinaryMBps", "agentInProcessMBps", "sha256sumMBps", "opensslMBps", "ratioAgentBinaryToSha256sum", "ratioAgentBinaryToOpenssl"] },
  "heartbeat-ingest": { needsAgent: false, headline: ["planeHandledMsgsPerSec", "planePersistedMsgsPerSec", "baselineMsgsPerSec", "ratioHandled", "ratioPersisted", "complete"] },
  "event-stream": { needsAgent: false, headline: ["withoutClientsHandledMs", "withClientsHandledMs", "ratioIngestWithToWithout", "streamDeliveredMs", "clientsDropped", "complete"] },
  "quarantine-fanout": { needsAgent: false, headline: ["p50Ms", "p99Ms", "totalMs", "baselineTotalMs", "ratioTotal", "complete"] },
  // The same bench at 10,000 devices (enrolled rows seeded into the database: enrolling them over HTTP takes minutes).
  "quarantine-fanout-10k": {
    needsAgent: false,
    onlyWhenNamed: true,
    script: "quarantine-fanout",
    env: { BENCH_DEVICES: "10000", BENCH_ENROLL: "seed", BENCH_TIMEOUT_MS: "300000" },
    maxMs: 1_800_000,
    headline: ["p50Ms", "p99Ms", "totalMs", "baselineTotalMs", "ratioTotal", "complete"],
  },
  "agent-footprint": { needsAgent: true, headline: ["binaryX64Bytes", "binaryArm64Bytes", "agentRssKiB", "bareBunRssKiB", "ratioRss"] },
  guards: { needsAgent: true, headline: ["guardCycleCpuMs", "baselineSummaryCpuMs", "ratioCycleToSummary", "agentCpuPercentGuardsOn", "agentCpuPercentGuardsOff", "ratioIdleOnToOff"] },
  "fleet-page": { needsAgent: false, headline: ["devices", "fleetPageServerMs", "apiPageServerMs", "ratioServerPageToApi", "fleetPageBytes", "apiPageBytes", "ratioBytesPageToApi"] },
  "cold-start": { needsAgent: false, headline: ["imageMs", "noImageMs", "restartMs", "ratioImageToRestart", "ratioNoImageToImage"] },
  update: { needsAgent: true, headline: ["curlSha256sumMs", "tufDownloadMs", "agentUpdateMs", "ratioTufDownloadToCurl", "ratioAgentUpdateToCurl", "complete"] },
  // RabbitMQ node + PostgreSQL + replicas + 10,000 devices: minutes on this machine, so only when named.
  scale: { needsAgent: false, onlyWhenNamed: true, maxMs: 3_600_000, headline: ["devices", "replicas", "heartbeatsPerSec", "persistedPerSec", "baselineMsgsPerSec", "ratioPersistedToBaseline", "fanoutP99Ms", "lostEvents", "duplicateCommands", "complete"] },
  // The emulated arm64 board (scripts/board/build-image.sh makes the image): a software-emulated boot takes minutes.
  board: { needsAgent: true, onlyWhenNamed: true, maxMs: 1_800_000, headline: ["bootToTrustedMs", "powerOnToInitMs", "powerOnToConnectedMs", "ratioTrustedToInit", "quarantineApplyMs", "releaseApplyMs", "updateToCommitMs", "rollbackDetectedMs", "agentRssKiB", "agentBinaryBytes"] },
};
const MAX_MS = Number(process.env.BENCH_MAX_MS ?? 300_000);

const args = process.argv.slice(2);
if (args.includes("--list")) {
  process.stdout.write(`${Object.keys(BENCHES).join("\n")}\n`);
  process.exit(0);
}
// `board` runs only when named: it boots an emulated board (minutes) from an image built beforehand.
const selected = args.length === 0 ? Object.keys(BENCHES).filter((name) => !BENCHES[name].onlyWhenNamed) : args.map((arg) => arg.replace(/^bench\//, "").replace(/\.ts$/, ""));
const unknown = selected.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  process.stderr.write(`unknown bench ${unknown.map((n) => JSON.stringify(n)).join(", ")}; known: ${Object.keys(BENCHES).join(", ")}\n`);
  process.exit(2);
}

if (selected.some((name) => BENCHES[name].needsAgent) && existsSync(join(root, "scripts/build-agent.mjs"))) {
  // Rebuilds only when agent/ or shared/ changed since the last build.
  const build = spawnSync(process.execPath, [join(root, "scripts/build-agent.mjs")], { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  if (build.status !== 0) {
    process.stderr.write("bench: building the agent failed\n");
    process.exit(1);
  }
}

function runBench(name) {
  return new Promise((resolve) => {
    process.stdout.write(`\n=== bench ${name} ===\n`);
    const started = Date.now();
    // Its own process group: the plane and brokers a bench starts stay in it even if the bench dies without
    // stopping them, so the group is ended (by its id) after the bench, whatever happened.
    // BENCH_NAME: the name the bench reports its result under (a variant runs another bench's script).
    const { script = name, env = {} } = BENCHES[name];
    const child = spawn(tsx, [join(root, "bench", `${script}.ts`)], {
      cwd: root,
      env: { ...env, ...process.env, BENCH_NAME: name },
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    });
    const endGroup = (signal) => {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // Group already gone.
      }
    };
    let stdout = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      process.stdout.write(chunk);
    });
    const maxMs = Math.max(MAX_MS, BENCHES[name].maxMs ?? 0);
    const timer = setTimeout(() => {
      process.stderr.write(`bench ${name}: still running after ${maxMs} ms, stopping it\n`);
      endGroup("SIGTERM");
      setTimeout(() => endGroup("SIGKILL"), 5000).unref();
    }, maxMs);
    const interrupt = () => {
      interrupted = true;
      endGroup("SIGTERM");
    };
    process.once("SIGINT", interrupt);
    process.once("SIGTERM", interrupt);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      process.off("SIGINT", interrupt);
      process.off("SIGTERM", interrupt);
      endGroup("SIGKILL");
      const lines = stdout.trim().split("\n").reverse();
      let result = null;
      for (const line of lines) {
        try {
          const parsed = JSON.parse(line);
          if (parsed && parsed.bench === name) {
            result = parsed;
            break;
          }
        } catch {
          // Not the result line.
        }
      }
      // A bench that timed out waiting for the plane still prints what it saw, with "complete": false.
      const incomplete = result !== null && result.complete === false;
      const ok = code === 0 && result !== null && !incomplete;
      resolve({ name, ok, incomplete, exit: signal ?? code, seconds: Math.round((Date.now() - started) / 100) / 10, result });
    });
  });
}

let interrupted = false;
const outcomes = [];
for (const name of selected) {
  if (interrupted) break;
  outcomes.push(await runBench(name));
}

process.stdout.write("\n=== summary ===\n");
for (const outcome of outcomes) {
  const status = outcome.ok ? "ok" : outcome.incomplete ? "INCOMPLETE" : `FAILED (exit ${outcome.exit})`;
  process.stdout.write(`${outcome.name.padEnd(18)} ${status.padEnd(18)} ${String(outcome.seconds).padStart(6)} s\n`);
  if (outcome.result) {
    for (const key of BENCHES[outcome.name].headline) {
      if (key in outcome.result) process.stdout.write(`    ${key.padEnd(30)} ${outcome.result[key]}\n`);
    }
  }
}
try {
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(join(root, "bench/results/summary.json"), `${JSON.stringify({ at: new Date().toISOString(), outcomes }, null, 2)}\n`);
} catch {
  // The summary above is the output; the file is a convenience.
}
process.exit(!interrupted && outcomes.every((o) => o.ok) ? 0 : 1);
