/**
 * The update path in the COMPILED agent: the `tuf` conformance CLI of the release binary
 * (dist/agent/hashward-agent-linux-x64), and, on the test build (-testhooks, the same code plus the hook),
 * SIGKILL at every install checkpoint (HASHWARD_AGENT_TEST_PAUSE_AT freezes the agent there) followed by a
 * restart that completes or rolls back, against an in-process broker, enrollment server and TUF repository.
 * Skips with a message when the binary is not built (`npm run build:agent`).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, expect, it } from "vitest";
import { describeUnless } from "../../../test/support/skip.js";
import { createSimulatedBoard, type SimulatedBoard } from "../platform/simulated.js";
import { startStandInPlane, tempDir, waitFor } from "../testing/index.js";
import { CHECKPOINTS } from "./index.js";
import { TestTufRepo, testFirmwareImage } from "./testing/index.js";

// The test build: the release binary has no install checkpoint hook (HASHWARD_AGENT_TEST_PAUSE_AT).
const binary = resolve(import.meta.dirname, "../../../dist/agent/hashward-agent-linux-x64-testhooks");
const release = resolve(import.meta.dirname, "../../../dist/agent/hashward-agent-linux-x64");
const built = existsSync(binary) && existsSync(release);

describeUnless(built ? null : `${binary} or ${release} is not built (run "npm run build:agent")`, "compiled agent: updates", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(extra: Record<string, unknown> = {}) {
    const dir = tempDir("update-bin");
    cleanups.push(dir.cleanup);
    const repo = await new TestTufRepo(join(dir.path, "repo")).start();
    cleanups.push(() => repo.stop());
    const { plane, broker, enrollment } = await startStandInPlane(cleanups);
    const board = createSimulatedBoard(join(dir.path, "board"), { model: "S19", firmwareVersion: "1.0.0", slots: true });
    const config = join(dir.path, "agent.json");
    writeFileSync(
      config,
      JSON.stringify({
        controlPlaneUrl: enrollment.url,
        allowPlaintext: true,
        stateDir: "state",
        model: "S19",
        firmwareVersion: "1.0.0",
        platform: { kind: "simulated", root: "board" },
        measure: { paths: ["/firmware"] },
        watch: false,
        update: { trustedRootFile: repo.rootFile, metadataUrl: repo.metadataUrl, targetsUrl: repo.targetsUrl },
        ...extra,
      }),
    );
    const stateDir = join(dir.path, "state");
    const start = (env: Record<string, string> = {}): { child: ChildProcess; exited: Promise<number | null>; output: () => string } => {
      const child = spawn(binary, ["run", "--config", config], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
      cleanups.push(() => void child.kill("SIGKILL"));
      return { child, exited, output: () => output };
    };
    return { dir: dir.path, repo, plane, broker, board, stateDir, start };
  }

  it("tuf init / refresh / download through the binary; exit 1 on a bad artifact", async () => {
    const { dir, repo } = await setup();
    repo.addTarget("fw.img", Buffer.from("image bytes"), { hardwareModels: ["S19"], version: "1.1.0" });
    repo.publish();
    const md = join(dir, "md");
    const out = join(dir, "out");
    // Asynchronous: the repository's HTTP server runs in this process and must keep answering.
    const tuf = (...args: string[]) =>
      new Promise<{ status: number | null; stderr: string }>((done) =>
        execFile(release, ["tuf", ...args], { encoding: "utf8" }, (error, _stdout, stderr) => done({ status: error ? (typeof error.code === "number" ? error.code : -1) : 0, stderr })),
      );
    expect((await tuf("--metadata-dir", md, "init", repo.rootFile)).status).toBe(0);
    const refresh = await tuf("--metadata-dir", md, "--metadata-url", repo.metadataUrl, "refresh");
    expect(refresh.status, refresh.stderr).toBe(0);
    expect(readdirSync(md).sort()).toEqual(["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
    const download = () => tuf("--metadata-dir", md, "--metadata-url", repo.metadataUrl, "--target-name", "fw.img", "--target-base-url", repo.targetsUrl, "--target-dir", out, "download");
    const first = await download();
    expect(first.status, first.stderr).toBe(0);
    expect(readFileSync(join(out, "fw.img"), "utf8")).toBe("image bytes");
    writeFileSync(join(repo.dir, repo.targetPath("fw.img").slice("/tuf/".length)), "evil bytes!");
    writeFileSync(join(out, "fw.img"), "stale");
    expect((await download()).status).toBe(1);
    expect((await tuf("--metadata-dir", md, "refresh")).status).toBe(1);
  });

  for (const point of CHECKPOINTS) {
    it(`SIGKILL at ${point}: the board stays bootable and the next start completes the install`, async () => {
      const s = await setup();
      s.repo.addTarget("fw-1.1.0", testFirmwareImage("S19", "1.1.0"), { hardwareModels: ["S19"], version: "1.1.0" });
      s.repo.publish();
      const first = s.start({ HASHWARD_AGENT_TEST_PAUSE_AT: point });
      const deviceId = (await waitFor("hello", () => s.broker.of("hello")[0], { timeoutMs: 20_000 }))["deviceId"] as string;
      const command = s.plane.command(deviceId, 1, "update", { params: { targetName: "fw-1.1.0" } });
      await s.broker.publishDown(deviceId, "command", command);
      await waitFor(`pause at ${point}`, () => existsSync(join(s.stateDir, "update", `paused-at-${point}`)), { timeoutMs: 20_000 });
      first.child.kill("SIGKILL");
      await first.exited;
      expectBootable(s.board);

      const second = s.start();
      await waitFor("hello after restart", () => s.broker.of("hello").length >= 2, { timeoutMs: 20_000 });
      // The plane re-publishes the unacked command on hello (same seq and signature).
      await s.broker.publishDown(deviceId, "command", command);
      const ack = await waitFor("ack", () => s.broker.of("ack").find((a) => a["seq"] === 1), { timeoutMs: 20_000 });
      expect(ack, second.output()).toMatchObject({ status: "done", action: "update" });
      expect(await s.board.slots.status()).toEqual({ active: "b", fallback: null });
      expect(readFileSync(s.board.resolve("/firmware/etc/version"), "utf8")).toBe("S19 1.1.0\n");
      const committed = s.broker.of("event").filter((e) => e["kind"] === "update-progress" && (e["detail"] as { phase: string }).phase === "committed");
      expect(committed).toHaveLength(1);
      // Evidence after the restart reports the running firmware.
      await waitFor("evidence with 1.1.0", () => s.broker.of("evidence").some((e) => e["firmwareVersion"] === "1.1.0"), { timeoutMs: 20_000 });
      second.child.kill("SIGTERM");
      expect(await second.exited).toBe(0);
    });
  }

  it("after a commit the watcher follows /firmware to the new slot", async () => {
    const s = await setup({ watch: true });
    s.repo.addTarget("fw-1.1.0", testFirmwareImage("S19", "1.1.0"), { hardwareModels: ["S19"], version: "1.1.0" });
    s.repo.publish();
    s.start();
    const deviceId = (await waitFor("hello", () => s.broker.of("hello")[0], { timeoutMs: 20_000 }))["deviceId"] as string;
    await s.broker.publishDown(deviceId, "command", s.plane.command(deviceId, 1, "update", { params: { targetName: "fw-1.1.0" } }));
    await waitFor("update evidence", () => s.broker.of("evidence").some((e) => e["reason"] === "update" && e["firmwareVersion"] === "1.1.0"), { timeoutMs: 20_000 });
    appendFileSync(s.board.resolve("/firmware/bmminer"), "# out-of-band edit\n");
    await waitFor("watch evidence from the new slot", () => s.broker.of("evidence").some((e) => e["reason"] === "watch"), { timeoutMs: 20_000 });
    expect(s.board.resolve("/firmware/bmminer")).toContain(join("slots", "b", "firmware"));
  });

  it("SIGKILL on a trial boot of an image that fails its health check: the next start rolls back", async () => {
    const s = await setup();
    s.repo.addTarget("fw-bad", testFirmwareImage("S19", "1.2.0", { selftest: "fail" }), { hardwareModels: ["S19"], version: "1.2.0" });
    s.repo.publish();
    const first = s.start({ HASHWARD_AGENT_TEST_PAUSE_AT: "trial" });
    const deviceId = (await waitFor("hello", () => s.broker.of("hello")[0], { timeoutMs: 20_000 }))["deviceId"] as string;
    const command = s.plane.command(deviceId, 1, "update", { params: { targetName: "fw-bad" } });
    await s.broker.publishDown(deviceId, "command", command);
    await waitFor("pause at trial", () => existsSync(join(s.stateDir, "update", "paused-at-trial")), { timeoutMs: 20_000 });
    first.child.kill("SIGKILL");
    await first.exited;
    // Killed on the trial boot of the bad slot: it is what boot/active names right now, with a fallback.
    expect(await s.board.slots.status()).toEqual({ active: "b", fallback: "a" });
    s.start();
    await waitFor("hello after restart", () => s.broker.of("hello").length >= 2, { timeoutMs: 20_000 });
    await s.broker.publishDown(deviceId, "command", command);
    const ack = await waitFor("ack", () => s.broker.of("ack").find((a) => a["seq"] === 1), { timeoutMs: 20_000 });
    expect(ack).toMatchObject({ status: "failed" });
    expect(String(ack["reason"])).toMatch(/rolled back: health check failed/);
    expect(await s.board.slots.status()).toEqual({ active: "a", fallback: null });
    expect(readFileSync(s.board.resolve("/firmware/etc/version"), "utf8")).toBe("S19 1.0.0\n");
  });
});

function expectBootable(board: SimulatedBoard): void {
  const active = readFileSync(join(board.root, "boot/active"), "utf8").trim();
  expect(["a", "b"]).toContain(active);
  expect(existsSync(join(board.root, "slots", active, "firmware", "bmminer"))).toBe(true);
  expect(readFileSync(join(board.root, "slots", active, "firmware", "etc", "version"), "utf8")).toMatch(/^S19 1\.[01]\.0\n$/);
}
