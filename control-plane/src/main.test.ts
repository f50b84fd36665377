/** The entry point as a real process, on both runtimes: ready line, graceful stop, one-line start-up errors. */
import { spawn } from "node:child_process";
import { chmod, chown, lstat, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loopbackPlaneEnv, ManagedProcess } from "../../test/support/processes.js";
import { tempDir } from "../../test/support/temp-dir.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = "control-plane/src/main.ts";
const RUNTIMES = {
  bun: [join(ROOT, "node_modules/.bin/bun"), MAIN],
  tsx: [process.execPath, "--import", "tsx", MAIN],
} as const;

interface Run {
  /** The JSON log lines so far (stdout and stderr). */
  lines: Record<string, unknown>[];
  /** Everything it wrote, JSON or not. */
  output: string;
  exit: Promise<number | null>;
  /** The first log line with this `msg` (past or future); rejects if the process exits first. */
  waitFor(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  signal(name: NodeJS.Signals): void;
}

function run(runtime: keyof typeof RUNTIMES, env: Record<string, string>): Run {
  const [command, ...args] = RUNTIMES[runtime];
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, DATABASE_URL: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const proc = new ManagedProcess(`control plane on ${runtime}`, child);
  return {
    lines: proc.lines,
    get output() {
      return proc.rawOutput.join("\n");
    },
    exit: proc.exited,
    waitFor: (msg, timeoutMs = 60_000) => proc.waitForLine(msg, (line) => line.msg === msg, timeoutMs),
    signal: (name) => child.kill(name),
  };
}

let dataDir: string;
let cleanupDataDir: () => void;
let busy: Server | null = null;
beforeEach(() => {
  ({ path: dataDir, cleanup: cleanupDataDir } = tempDir("main"));
});
afterEach(async () => {
  const server = busy;
  busy = null;
  if (server) await new Promise((resolve) => server.close(resolve));
  cleanupDataDir();
});

const baseEnv = (): Record<string, string> => loopbackPlaneEnv(dataDir);

/** Every entry under `dir` (recursive, not following symlinks) with its permission bits. */
async function modesBelow(dir: string): Promise<Array<{ path: string; mode: number }>> {
  const found: Array<{ path: string; mode: number }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    found.push({ path, mode: (await lstat(path)).mode & 0o777 });
    if (entry.isDirectory()) found.push(...(await modesBelow(path)));
  }
  return found;
}

async function loosen(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const { path } of await modesBelow(dir)) {
    await chmod(path, (await lstat(path)).isDirectory() ? 0o755 : 0o666);
  }
}

describe.each(["bun", "tsx"] as const)("control-plane main on %s", (runtime) => {
  it("makes a pre-existing 0755 data folder and every file in it, the database's included, private (HW-DATA-1)", async () => {
    const first = run(runtime, baseEnv());
    await first.waitFor("control plane ready", 150_000);
    first.signal("SIGTERM");
    expect(await first.exit).toBe(0);
    await loosen(dataDir); // as an older version or `mkdir data` left it
    expect(((await lstat(dataDir)).mode & 0o777).toString(8)).toBe("755");

    const proc = run(runtime, baseEnv());
    await proc.waitFor("control plane ready", 150_000);
    const warned = proc.lines.find((line) => line.msg === "data folder was readable by other users; tightened to 0700 (files 0600)");
    expect(warned).toMatchObject({ dataDir, mode: "755" });
    expect(((await lstat(dataDir)).mode & 0o777).toString(8)).toBe("700");
    const entries = await modesBelow(dataDir);
    expect(entries.filter((entry) => entry.path.includes(`${join(dataDir, "pglite")}/`)).length).toBeGreaterThan(10);
    expect(entries.filter((entry) => (entry.mode & 0o077) !== 0).map((entry) => `${entry.path} ${entry.mode.toString(8)}`)).toEqual([]);
    proc.signal("SIGTERM");
    expect(await proc.exit).toBe(0);
  }, 400_000);

  it("creates a new data folder private, with private database files", async () => {
    await rm(dataDir, { recursive: true, force: true });
    const proc = run(runtime, baseEnv());
    await proc.waitFor("control plane ready", 150_000);
    expect(((await lstat(dataDir)).mode & 0o777).toString(8)).toBe("700");
    const shared = (await modesBelow(dataDir)).filter((entry) => (entry.mode & 0o077) !== 0);
    expect(shared.map((entry) => `${entry.path} ${entry.mode.toString(8)}`)).toEqual([]);
    expect(proc.lines.some((line) => line.msg === "data folder was readable by other users; tightened to 0700 (files 0600)")).toBe(false);
    proc.signal("SIGTERM");
    expect(await proc.exit).toBe(0);
  }, 240_000);

  // chown to another user needs root; as any other user this case cannot be set up, so it is skipped.
  it.skipIf(process.getuid?.() !== 0)("refuses a data folder owned by another user (runs as root only: needs chown)", async () => {
    await chown(dataDir, 65534, 65534);
    const proc = run(runtime, baseEnv());
    expect(await proc.exit).toBe(1);
    expect(proc.lines.find((line) => line.level === 60)).toMatchObject({ option: "HASHWARD_DATA_DIR", msg: expect.stringContaining("owned by uid 65534") });
    expect(await readdir(dataDir)).toEqual([]); // nothing written there
  }, 120_000);

  it("logs the ready line and stops gracefully on SIGTERM", async () => {
    const proc = run(runtime, baseEnv());
    const ready = await proc.waitFor("control plane ready", 150_000);
    expect(ready).toMatchObject({ database: "pglite", dataDir, adminTokenFile: join(dataDir, "admin.token") });
    expect(ready.httpPort).toEqual(expect.any(Number));
    expect(ready.mqttPort).toEqual(expect.any(Number));
    // HW-TLS-1: TLS is the default, with the plane's own CA.
    expect(ready).toMatchObject({ tls: true, caFile: join(dataDir, "ca.pem"), caCertHash: expect.stringMatching(/^sha256:/) });
    expect(ready.httpUrl).toBe(`https://127.0.0.1:${String(ready.httpPort)}`);
    expect(ready.mqttUrl).toBe(`mqtts://127.0.0.1:${String(ready.mqttPort)}`);
    proc.signal("SIGTERM");
    expect(await proc.exit).toBe(0);
    expect(proc.lines.some((line) => line.msg === "control plane stopped")).toBe(true);
  }, 240_000); // a whole plane start (PGlite, CA), like "creates a new data folder": over 60 s on a loaded 2-core machine

  it("exits 1 with one line naming the variable when the port is in use", async () => {
    const server = createServer();
    busy = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const proc = run(runtime, { ...baseEnv(), HASHWARD_HTTP_PORT: String(port) });
    expect(await proc.exit).toBe(1);
    const fatal = proc.lines.filter((line) => line.level === 60);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ msg: `HASHWARD_HTTP_PORT=${port}: port already in use`, option: "HASHWARD_HTTP_PORT" });
    expect(JSON.stringify(proc.lines)).not.toContain("    at ");
    expect(proc.output).not.toContain("    at ");
  }, 120_000);
});

it("exits 1 naming a bad variable before touching anything", async () => {
  const proc = run("tsx", { ...baseEnv(), HASHWARD_MQTT_PORT: "mqtt" });
  expect(await proc.exit).toBe(1);
  expect(proc.lines.find((line) => line.level === 60)).toMatchObject({ option: "HASHWARD_MQTT_PORT", msg: expect.stringContaining('HASHWARD_MQTT_PORT="mqtt"') });
});
