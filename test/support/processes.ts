/**
 * Real processes for end-to-end tests: the control plane (under Bun, as `npm start` runs it) and the compiled
 * agent binary. Readiness is read from their JSON log lines, never guessed with a sleep.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { trustPlaneCa } from "./api.js";
import { tempDir } from "./temp-dir.js";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BUN = join(REPO_ROOT, "node_modules/.bin/bun");
export const AGENT_BINARY = join(REPO_ROOT, "dist/agent/hashward-agent-linux-x64");

type LogLine = Record<string, unknown>;

export class ManagedProcess {
  readonly lines: LogLine[] = [];
  readonly rawOutput: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let buffer = "";
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        this.rawOutput.push(text);
        if (process.env.HASHWARD_TEST_VERBOSE) process.stderr.write(`[${name}] ${text}\n`);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          continue;
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((waiter) => {
          if (!waiter.match(line)) return true;
          waiter.resolve(line);
          return false;
        });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  /** Resolves with the first log line (past or future) that matches; rejects if the process exits first. */
  waitForLine(what: string, match: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no log line "${what}" within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
      const waiter = {
        match,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code} before "${what}"\n${this.tail()}`));
      });
    });
  }

  tail(count = 30): string {
    return this.rawOutput.slice(-count).join("\n");
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    await this.exited;
  }
}

export interface ControlPlane {
  proc: ManagedProcess;
  httpUrl: string;
  mqttUrl: string;
  httpPort: number;
  mqttPort: number;
  dataDir: string;
  /** The bootstrap admin token from `<dataDir>/admin.token`; empty when another replica of its database made it. */
  adminToken: string;
  env: Record<string, string>;
  /** The plane's CA (`<dataDir>/ca.pem`) and its pin; null when started with `tls: false`. */
  caPem: string | null;
  caCertHash: string | null;
}

export interface ControlPlaneOptions {
  dataDir?: string;
  httpPort?: number;
  mqttPort?: number;
  env?: Record<string, string>;
  /** HW-TLS-1: TLS is the default, as with `npm start`; false starts a plaintext plane (HASHWARD_TLS=off). */
  tls?: boolean;
}

/**
 * The environment of a plane (spawned or in-process through loadConfig) on loopback with ephemeral ports (port 0,
 * never a fixed one) and its data in `dataDir`; a test adds what it is about.
 */
export function loopbackPlaneEnv(dataDir: string): Record<string, string> {
  return { HASHWARD_HTTP_HOST: "127.0.0.1", HASHWARD_MQTT_HOST: "127.0.0.1", HASHWARD_HTTP_PORT: "0", HASHWARD_MQTT_PORT: "0", HASHWARD_DATA_DIR: dataDir };
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const dataDir = options.dataDir ?? tempDir("plane").path;
  const env: Record<string, string> = {
    ...loopbackPlaneEnv(dataDir),
    HASHWARD_COMMAND_RETRY_MS: "500",
    HASHWARD_LOG_LEVEL: "info",
    ...(options.tls === false ? { HASHWARD_TLS: "off" } : {}),
    ...options.env,
    HASHWARD_HTTP_PORT: String(options.httpPort ?? 0),
    HASHWARD_MQTT_PORT: String(options.mqttPort ?? 0),
    HASHWARD_DATA_DIR: dataDir,
  };
  const child = spawn(BUN, ["control-plane/src/main.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, DATABASE_URL: env.DATABASE_URL ?? "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = new ManagedProcess("control-plane", child);
  const ready = await proc.waitForLine("control plane ready", (line) => line.msg === "control plane ready", 180_000).catch(async (error: unknown) => {
    await proc.kill("SIGKILL"); // never leave a plane behind that a test could not use
    throw error;
  });
  const httpPort = Number(ready.httpPort);
  const mqttPort = Number(ready.mqttPort);
  // A replica on a shared database finds no file when another replica created the token (HW-HA-2).
  const adminTokenFile = join(dataDir, "admin.token");
  const adminToken = existsSync(adminTokenFile) ? readFileSync(adminTokenFile, "utf8").trim() : "";
  const tls = ready.tls === true;
  const httpUrl = `${tls ? "https" : "http"}://127.0.0.1:${httpPort}`;
  const caPem = tls ? readFileSync(join(dataDir, "ca.pem"), "utf8") : null;
  if (caPem) trustPlaneCa(httpUrl, caPem);
  return {
    proc,
    httpUrl,
    mqttUrl: `${tls ? "mqtts" : "mqtt"}://127.0.0.1:${mqttPort}`,
    caPem,
    caCertHash: tls ? String(ready.caCertHash) : null,
    httpPort,
    mqttPort,
    dataDir,
    adminToken,
    env,
  };
}

/** Starts the control plane again on the same data folder and ports (agents were configured with those ports). */
export function restartControlPlane(plane: ControlPlane): Promise<ControlPlane> {
  // plane.env already carries HASHWARD_TLS=off for a plaintext plane.
  return startControlPlane({ dataDir: plane.dataDir, httpPort: plane.httpPort, mqttPort: plane.mqttPort, env: plane.env });
}

export interface AgentHandle {
  proc: ManagedProcess;
  configFile: string;
  stateDir: string;
  boardRoot: string;
}

export function requireAgentBinary(): string {
  if (!existsSync(AGENT_BINARY)) {
    throw new Error(`${AGENT_BINARY} is missing: run \`npm run build:agent\` (npm test does it first)`);
  }
  return AGENT_BINARY;
}

/**
 * An agent config for a simulated board talking to `plane`, with timings short enough for tests (fast enrollment
 * polling and reconnects, heartbeats twice a second, no timer attestation). `extra` adds or overrides keys.
 */
export function simulatedAgentConfig(
  plane: { httpUrl: string; mqttUrl: string; caCertHash?: string | null },
  device: { stateDir: string; boardRoot: string; model: string; firmwareVersion: string },
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    // HW-PIN-2: the pin travels with the config, as the enrollment token's caCertHash does.
    ...(plane.caCertHash ? { caCertHash: plane.caCertHash } : { allowPlaintext: true }),
    stateDir: device.stateDir,
    model: device.model,
    firmwareVersion: device.firmwareVersion,
    platform: { kind: "simulated", root: device.boardRoot },
    heartbeatIntervalMs: 500,
    attestIntervalMs: 600_000,
    enrollPollMs: 300,
    reconnectMinMs: 100,
    reconnectMaxMs: 1000,
    ...extra,
  };
}

export function writeAgentConfig(dir: string, config: Record<string, unknown>): string {
  const file = join(dir, "agent.json");
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

export function startAgent(name: string, configFile: string, env: Record<string, string> = {}): ManagedProcess {
  const child = spawn(requireAgentBinary(), ["run", "--config", configFile], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new ManagedProcess(name, child);
}

/**
 * `hashward-agent measure --config FILE` through the compiled agent: the measurement list an operator registers as
 * reference values. Asynchronous on purpose: a blocked event loop (execFileSync) misses the plane closing an idle
 * keep-alive socket, and the next API call then fails with "other side closed".
 */
export async function measureWithAgent(configFile: string): Promise<unknown> {
  const { stdout } = await promisify(execFile)(AGENT_BINARY, ["measure", "--config", configFile], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as unknown;
}
