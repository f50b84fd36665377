/**
 * Measurement throughput: the agent's SHA-256 of BENCH_MEASURE_FILES x BENCH_MEASURE_FILE_MB random files (default
 * 64 x 4 MB = 256 MB) on a simulated board, against `sha256sum` and `openssl dgst -sha256` over the same files.
 * Nothing is dropped from the page cache: every tool runs once to warm, then BENCH_RUNS timed runs (default 3),
 * median reported. Agent sides:
 *   binary     = `dist/agent/hashward-agent-linux-x64 measure --config FILE`, the whole process as a user runs it
 *   in-process = agent/src/measure `measure()` called from this (Node) process
 * Every tool's digests are checked against sha256sum's, so a fast wrong answer cannot win.
 * Usage: npx tsx bench/measure.ts
 */
import { spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { measure } from "../agent/src/measure/index.js";
import { SimulatedBoard } from "../agent/src/platform/index.js";
import { AGENT_BINARY, writeAgentConfig } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { emitResult, envInt, median, printTable, progress, ratio, round } from "./support/report.js";

const FILES = envInt("BENCH_MEASURE_FILES", 64, { max: 4096 });
const FILE_MB = envInt("BENCH_MEASURE_FILE_MB", 4, { max: 256 });
const RUNS = envInt("BENCH_RUNS", 3, { max: 20 });
const TOTAL_MB = FILES * FILE_MB;
const DEVICE_DIR = "/firmware/blobs";

type Digests = Map<string, string>;

interface Tool {
  name: string;
  /** Runs once and returns digests keyed by device path. */
  run(): Promise<Digests>;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${command} ${args[0] ?? ""} exited ${result.status}: ${result.stderr || result.error}`);
  return result.stdout;
}

async function timeTool(tool: Tool, reference?: Digests): Promise<{ medianMs: number; runsMs: number[]; digests: Digests }> {
  const digests = await tool.run(); // warm-up, and the answer to check
  if (reference) {
    const wrong = [...reference].filter(([path, digest]) => digests.get(path) !== digest);
    if (wrong.length > 0 || digests.size !== reference.size) {
      throw new Error(`${tool.name}: ${wrong.length} digests differ from sha256sum (${digests.size} entries vs ${reference.size})`);
    }
  }
  const runsMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await tool.run();
    runsMs.push(performance.now() - started);
  }
  progress(`${tool.name}: ${runsMs.map((ms) => Math.round(ms)).join(", ")} ms`);
  return { medianMs: median(runsMs), runsMs, digests };
}

if (!existsSync(AGENT_BINARY)) {
  throw new Error(`${AGENT_BINARY} is missing: run \`npm run build:agent\` first`);
}

const dir = tempDir("bench-measure").path;
try {
  const boardRoot = join(dir, "board");
  const hostDir = join(boardRoot, DEVICE_DIR);
  mkdirSync(hostDir, { recursive: true });
  const names: string[] = [];
  const chunk = Buffer.alloc(FILE_MB * 1024 * 1024);
  for (let i = 0; i < FILES; i++) {
    const name = `blob-${String(i).padStart(4, "0")}.bin`;
    writeFileSync(join(hostDir, name), randomFillSync(chunk));
    names.push(name);
  }
  const hostFiles = names.map((name) => join(hostDir, name));
  const devicePathOf = (hostFile: string) => hostFile.slice(boardRoot.length);
  progress(`${FILES} x ${FILE_MB} MB random files in ${hostDir}`);

  const configFile = writeAgentConfig(dir, {
    controlPlaneUrl: "http://127.0.0.1:9",
    stateDir: join(dir, "state"),
    model: "S19-bench",
    firmwareVersion: "bench",
    platform: { kind: "simulated", root: boardRoot },
    // The agent's own binary is left out so that every tool hashes exactly the same bytes.
    measure: { paths: [DEVICE_DIR], includeAgentBinary: false },
  });
  const board = new SimulatedBoard(boardRoot);

  // `<digest>  <file>` (sha256sum) and `SHA2-256(<file>)= <digest>` (openssl 3).
  const coreutilsLine = /^([0-9a-f]{64}) [ *](.+)$/;
  const opensslLine = /^[A-Z0-9-]+\((.+)\)= ([0-9a-f]{64})$/;
  const tools: Tool[] = [
    {
      name: "sha256sum",
      async run() {
        const digests: Digests = new Map();
        for (const line of run("sha256sum", hostFiles).split("\n")) {
          const match = coreutilsLine.exec(line);
          if (match) digests.set(devicePathOf(match[2]!), match[1]!);
        }
        return digests;
      },
    },
    {
      name: "openssl dgst -sha256",
      async run() {
        const digests: Digests = new Map();
        for (const line of run("openssl", ["dgst", "-sha256", ...hostFiles]).split("\n")) {
          const match = opensslLine.exec(line);
          if (match) digests.set(devicePathOf(match[1]!), match[2]!);
        }
        return digests;
      },
    },
    {
      name: "agent binary (measure)",
      async run() {
        const list = JSON.parse(run(AGENT_BINARY, ["measure", "--config", configFile])) as Array<{ path: string; sha256: string }>;
        return new Map(list.map((m) => [m.path, m.sha256]));
      },
    },
    {
      name: "agent in-process (Node)",
      async run() {
        const { measurements } = await measure([DEVICE_DIR], { resolve: (p) => board.resolve(p), includeAgentBinary: false });
        return new Map(measurements.map((m) => [m.path, m.sha256]));
      },
    },
  ];

  const results = new Map<string, Awaited<ReturnType<typeof timeTool>>>();
  let reference: Digests | undefined;
  for (const tool of tools) {
    const result = await timeTool(tool, reference);
    reference ??= result.digests;
    results.set(tool.name, result);
  }
  const mbps = (name: string) => round(TOTAL_MB / (results.get(name)!.medianMs / 1000), 1);
  const sha = mbps("sha256sum");
  const ossl = mbps("openssl dgst -sha256");
  const bin = mbps("agent binary (measure)");
  const inproc = mbps("agent in-process (Node)");

  printTable(`measure: ${FILES} x ${FILE_MB} MB = ${TOTAL_MB} MB, page cache warm, median of ${RUNS}`, [
    ["sha256sum", `${sha} MB/s`, `${round(results.get("sha256sum")!.medianMs, 0)} ms`],
    ["openssl dgst -sha256", `${ossl} MB/s`, `${round(results.get("openssl dgst -sha256")!.medianMs, 0)} ms`],
    ["agent binary (whole process)", `${bin} MB/s`, `${round(results.get("agent binary (measure)")!.medianMs, 0)} ms; /sha256sum ${ratio(bin, sha)}, /openssl ${ratio(bin, ossl)}`],
    ["agent in-process (Node)", `${inproc} MB/s`, `${round(results.get("agent in-process (Node)")!.medianMs, 0)} ms; /sha256sum ${ratio(inproc, sha)}, /openssl ${ratio(inproc, ossl)}`],
  ]);

  emitResult("measure", {
    files: FILES,
    fileMb: FILE_MB,
    totalMb: TOTAL_MB,
    runs: RUNS,
    sha256sumMBps: sha,
    opensslMBps: ossl,
    agentBinaryMBps: bin,
    agentInProcessMBps: inproc,
    ratioAgentBinaryToSha256sum: ratio(bin, sha),
    ratioAgentBinaryToOpenssl: ratio(bin, ossl),
    ratioAgentInProcessToSha256sum: ratio(inproc, sha),
    ratioAgentInProcessToOpenssl: ratio(inproc, ossl),
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
