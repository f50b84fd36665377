/**
 * Runs the compiled agent (dist/agent/hashward-agent-linux-x64) as a real process: --version, measure, usage
 * and config errors, and a short `run` against an in-process aedes broker and fake enrollment server.
 * Skips with a message when the binary is not built (`npm run build:agent`).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, expect, it } from "vitest";
import { describeUnless } from "../../test/support/skip.js";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS } from "./platform/index.js";
import { startStandInPlane, tempDir, waitFor } from "./testing/index.js";

const binary = resolve(import.meta.dirname, "../../dist/agent/hashward-agent-linux-x64");
const built = existsSync(binary);
const version = (JSON.parse(readFileSync(resolve(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }).version;

describeUnless(built ? null : `${binary} is not built (run "npm run build:agent")`, "compiled agent binary", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function boardConfig(extra: Record<string, unknown> = {}) {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    createSimulatedBoard(join(dir.path, "board"), { model: "S19" });
    const file = join(dir.path, "agent.json");
    writeFileSync(
      file,
      JSON.stringify({
        controlPlaneUrl: "http://127.0.0.1:9",
        allowPlaintext: true,
        stateDir: "state",
        model: "S19",
        firmwareVersion: "1.0.0",
        platform: { kind: "simulated", root: "board" },
        measure: { paths: [...SIMULATED_MEASURE_PATHS, "/etc/ld.so.preload"] },
        ...extra,
      }),
    );
    return { dir: dir.path, file };
  }

  it("prints its embedded version", () => {
    const out = spawnSync(binary, ["--version"], { encoding: "utf8" });
    expect(out.status).toBe(0);
    expect(out.stdout.trim()).toBe(`hashward-agent ${version}`);
  });

  it("measure prints the measurement list with @agent", () => {
    const { file } = boardConfig();
    const out = spawnSync(binary, ["measure", "--config", file], { encoding: "utf8" });
    expect(out.status, out.stderr).toBe(0);
    const list = JSON.parse(out.stdout) as { path: string; kind: string }[];
    expect(list.map((m) => m.path)).toEqual([
      "/config/cgminer.conf",
      "/dev/mtd2",
      "/etc/ld.so.preload",
      "/firmware/bmminer",
      "/firmware/etc/version",
      "/firmware/lib/libcgminer.so",
      "@agent",
    ]);
    expect(list.find((m) => m.path === "/dev/mtd2")?.kind).toBe("block");
  });

  it("exits 2 naming an unknown command or a bad option", () => {
    const unknown = spawnSync(binary, ["frobnicate"], { encoding: "utf8" });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("frobnicate");
    const { file } = boardConfig({ heartbeatIntervalMs: 1 });
    const bad = spawnSync(binary, ["run", "--config", file], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("heartbeatIntervalMs");
    const env = spawnSync(binary, ["measure", "--config", file], { encoding: "utf8", env: { ...process.env, HASHWARD_AGENT_HEARTBEAT_INTERVAL_MS: "500", HASHWARD_AGENT_MQTT_URL: "tcp://x" } });
    expect(env.status).toBe(2);
    expect(env.stderr).toContain("HASHWARD_AGENT_MQTT_URL");
  });

  it("runs: enrolls, connects, sends hello, evidence with @agent and heartbeats; stops on SIGTERM", async () => {
    const { broker, enrollment } = await startStandInPlane(cleanups);
    const { file, dir } = boardConfig({ controlPlaneUrl: enrollment.url, heartbeatIntervalMs: 100 });
    const child = spawn(binary, ["run", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    cleanups.push(() => {
      child.kill("SIGKILL");
    });
    await waitFor("hello from the binary", () => broker.of("hello").length === 1, { timeoutMs: 20_000 });
    await waitFor("evidence and heartbeat", () => broker.of("evidence").length === 1 && broker.of("heartbeat").length >= 1, { timeoutMs: 20_000 });
    const paths = (broker.of("evidence")[0]!["measurements"] as { path: string }[]).map((m) => m.path);
    expect(paths).toContain("@agent");
    // A hand edit of the miner config is seen by the watcher inside the compiled binary (Bun's fs.watch).
    writeFileSync(join(dir, "board", "config", "cgminer.conf"), '{"pools":[{"url":"stratum+tcp://evil.example:3333"}]}\n');
    await waitFor("watch evidence", () => broker.of("evidence").some((e) => e["reason"] === "watch"), { timeoutMs: 20_000 });
    expect(broker.of("event").find((e) => e["kind"] === "watch-change")).toMatchObject({ detail: { paths: ["/config/cgminer.conf"] } });
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    // Logs are pino JSON lines on stdout.
    const firstLine = JSON.parse(stdout.split("\n")[0]!) as { msg: string; app: string };
    expect(firstLine.app).toBe("hashward-agent");
    expect(stderr).not.toContain("DeprecationWarning");
  });
});

const nodeBundle = resolve(import.meta.dirname, "../../dist/agent/hashward-agent-node.mjs");
describeUnless(existsSync(nodeBundle) ? null : `${nodeBundle} is not built (run "npm run build:agent")`, "node bundle (32-bit ARM boards)", () => {
  it("runs on Node and measures itself as @agent", () => {
    const out = spawnSync(process.execPath, [nodeBundle, "--version"], { encoding: "utf8" });
    expect(out.stdout.trim()).toBe(`hashward-agent ${version}`);
    const dir = tempDir();
    try {
      createSimulatedBoard(join(dir.path, "board"), { model: "S19" });
      const file = join(dir.path, "agent.json");
      writeFileSync(file, JSON.stringify({ controlPlaneUrl: "http://127.0.0.1:9", stateDir: "s", model: "S19", firmwareVersion: "1", platform: { kind: "simulated", root: "board" }, measure: { paths: ["/firmware/bmminer"] } }));
      const measured = spawnSync(process.execPath, [nodeBundle, "measure", "--config", file], { encoding: "utf8" });
      expect(measured.status, measured.stderr).toBe(0);
      expect((JSON.parse(measured.stdout) as { path: string }[]).map((m) => m.path)).toEqual(["/firmware/bmminer", "@agent"]);
    } finally {
      dir.cleanup();
    }
  });
});
