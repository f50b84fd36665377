/**
 * Signed updates in the COMPILED agent on a U-Boot Antminer (HW-BOARD-2, HW-UPD-5): `"platform": {"kind":
 * "antminer", "slots": {...}}` with block slots (files under the board root), the real libubootenv on a
 * file-backed redundant environment, and a `rebootCommand` that runs U-Boot's boot (the real
 * scripts/board/hashward-boot.cmd under busybox ash) and then kills the agent, as a reboot does. The test is the
 * init script: it starts the agent again after every reboot and every power cut. SIGKILL at every install
 * checkpoint (HASHWARD_AGENT_TEST_PAUSE_AT) must leave a board that boots a complete slot, and the install must
 * finish when the plane re-sends the command.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UBootEmulator, ubootEmulatorSkipReason } from "../platform/testing/uboot.js";
import { startStandInPlane, tempDir, waitFor } from "../testing/index.js";
import { CHECKPOINTS } from "./index.js";
import { TestTufRepo } from "./testing/index.js";

// The test build: the release binary has no install checkpoint hook (HASHWARD_AGENT_TEST_PAUSE_AT).
const binary = resolve(import.meta.dirname, "../../../dist/agent/hashward-agent-linux-x64-testhooks");
const skip = !existsSync(binary) ? `${binary} is not built (run "npm run build:agent")` : ubootEmulatorSkipReason();
const image = (version: string, health: "pass" | "fail" = "pass") => Buffer.from(`ROOTFS S19 ${version} selftest=${health}\n`.repeat(400));
const IMAGE_A = image("1.0.0");

describe.skipIf(skip !== null)(`compiled agent: updates on a U-Boot board${skip ? `: skipped, ${skip}` : ""}`, () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup() {
    const dir = tempDir("uboot-bin");
    cleanups.push(dir.cleanup);
    const repo = await new TestTufRepo(join(dir.path, "repo")).start();
    cleanups.push(() => repo.stop());
    const { plane, broker, enrollment } = await startStandInPlane(cleanups);

    // The board root: the agent reads /proc/cmdline, /etc/fw_env.config and the slot devices under it.
    const root = join(dir.path, "root");
    for (const d of ["proc", "etc", "dev", "sbin"]) mkdirSync(join(root, d), { recursive: true });
    mkdirSync(join(dir.path, "uboot"));
    const board = new UBootEmulator(join(dir.path, "uboot"), IMAGE_A, { slotBytes: 64 * 1024, cmdlineFile: join(root, "proc/cmdline") });
    copyFileSync(board.fwEnvConfig, join(root, "etc/fw_env.config"));
    const devices = { a: join(root, "dev/mmcblk0p2"), b: join(root, "dev/mmcblk0p3") };
    copyFileSync(board.slotFiles.a, devices.a);
    copyFileSync(board.slotFiles.b, devices.b);
    // reboot = U-Boot boots the board, then the agent dies
    const reboot = board.writeRebootScript(join(root, "sbin/reboot"));
    const health = join(root, "sbin/health");
    writeFileSync(health, `#!/bin/busybox ash\nslot=$(sed -n 's/.*hashward\\.slot=\\([ab]\\).*/\\1/p' ${join(root, "proc/cmdline")})\n! grep -q 'selftest=fail' ${root}/dev/mmcblk0p$([ "$slot" = a ] && echo 2 || echo 3)\n`);
    chmodSync(health, 0o755);

    const config = join(dir.path, "agent.json");
    writeFileSync(
      config,
      JSON.stringify({
        controlPlaneUrl: enrollment.url,
        allowPlaintext: true, // the stand-in plane speaks plaintext: an explicit opt-in (HW-TLS-1)
        stateDir: "state",
        model: "S19",
        firmwareVersion: "1.0.0",
        platform: {
          kind: "antminer",
          root,
          slots: { a: { kind: "block", path: "/dev/mmcblk0p2" }, b: { kind: "block", path: "/dev/mmcblk0p3" }, rebootCommand: [reboot], healthCommand: [health] },
        },
        measure: { paths: [], includeAgentBinary: false },
        guards: { enabled: false },
        watch: false,
        heartbeatIntervalMs: 1000,
        update: { trustedRootFile: repo.rootFile, metadataUrl: repo.metadataUrl, targetsUrl: repo.targetsUrl },
      }),
    );
    const stateDir = join(dir.path, "state");
    /** Power on: U-Boot boots; the command line it passes lands in the board root. */
    const powerOn = () => board.boot();
    const start = (env: Record<string, string> = {}): ChildProcess => {
      const child = spawn(binary, ["run", "--config", config], { stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, ...env } });
      cleanups.push(() => void child.kill("SIGKILL"));
      return child;
    };
    return { repo, plane, broker, board, root, stateDir, start, powerOn, devices };
  }

  /** The slot U-Boot boots now holds a complete image: the old one or the new one. */
  function expectBootable(s: Awaited<ReturnType<typeof setup>>, next: Buffer): void {
    const slot = s.powerOn();
    const bytes = readFileSync(s.devices[slot]);
    expect(bytes.subarray(0, IMAGE_A.length).equals(IMAGE_A) || bytes.subarray(0, next.length).equals(next)).toBe(true);
    expect(readFileSync(s.devices.a).subarray(0, IMAGE_A.length)).toEqual(IMAGE_A); // the old slot never written
  }

  /**
   * Drives the board like its init script: starts the agent (paused at `pauseAt` until it got there once),
   * re-sends the update command after each start, restarts the agent after each reboot, and cuts the power
   * (SIGKILL + power-on) where it paused. Resolves with the command's ack.
   */
  async function drive(s: Awaited<ReturnType<typeof setup>>, next: Buffer, pauseAt: string | null): Promise<{ ack: Record<string, unknown>; cut: boolean; reboots: number }> {
    let paused = pauseAt === null;
    let agent = s.start(paused ? {} : { HASHWARD_AGENT_TEST_PAUSE_AT: pauseAt! });
    const deviceId = (await waitFor("hello", () => s.broker.of("hello")[0], { timeoutMs: 60_000 }))["deviceId"] as string;
    const command = s.plane.command(deviceId, 1, "update", { params: { targetName: "fw" } });
    await s.broker.publishDown(deviceId, "command", command);
    const pauseFile = join(s.stateDir, "update", `paused-at-${pauseAt}`);
    let reboots = 0;
    for (let starts = 1; starts < 12; starts++) {
      const seen = await waitFor(
        "ack, pause or reboot",
        () => (s.broker.of("ack").find((a) => a["seq"] === 1) ? "ack" : !paused && existsSync(pauseFile) ? "paused" : agent.exitCode !== null || agent.signalCode !== null ? "rebooted" : undefined),
        { timeoutMs: 60_000 },
      );
      if (seen === "ack") return { ack: s.broker.of("ack").find((a) => a["seq"] === 1)!, cut: pauseAt !== null && paused, reboots };
      if (seen === "rebooted") reboots++;
      if (seen === "paused") {
        paused = true;
        agent.kill("SIGKILL"); // power cut at the checkpoint
        await new Promise((r) => agent.once("exit", r));
        expectBootable(s, next);
      }
      const hellos = s.broker.of("hello").length;
      agent = s.start(paused ? {} : { HASHWARD_AGENT_TEST_PAUSE_AT: pauseAt! });
      // resume() runs before the network: a start may pause there, or reboot from there, before any hello.
      const up = await waitFor(
        "hello, pause or reboot after restart",
        () => (s.broker.of("hello").length > hellos ? "hello" : !paused && existsSync(pauseFile) ? "paused" : agent.exitCode !== null || agent.signalCode !== null ? "rebooted" : undefined),
        { timeoutMs: 60_000 },
      );
      // (a reboot here is counted at the top of the loop, which sees this agent gone)
      // The plane re-sends the unacked command on hello (same seq and signature).
      if (up === "hello") await s.broker.publishDown(deviceId, "command", command);
    }
    throw new Error("no ack after 12 agent starts");
  }

  for (const point of CHECKPOINTS) {
    it(`SIGKILL at ${point}: the board boots a complete slot and the next starts commit the new one`, { timeout: 240_000 }, async () => {
      const s = await setup();
      const next = image("1.1.0");
      s.repo.addTarget("fw", next, { hardwareModels: ["S19"], version: "1.1.0" });
      s.repo.publish();
      const { ack, cut, reboots } = await drive(s, next, point);
      expect(cut).toBe(true); // the power was cut at that checkpoint
      expect(reboots).toBeGreaterThanOrEqual(point === "final" || point === "decided" ? 0 : 1); // the switch rebooted the agent
      expect(ack).toMatchObject({ status: "done", action: "update" });
      expect(s.board.bootedSlot()).toBe("b");
      expect(s.board.env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
      expect(readFileSync(s.devices.b).subarray(0, next.length)).toEqual(next);
      expect(s.powerOn()).toBe("b");
    });
  }

  it("an image that fails its health check after the reboot: rolled back through U-Boot, the old slot boots", { timeout: 240_000 }, async () => {
    const s = await setup();
    const bad = image("1.2.0", "fail");
    s.repo.addTarget("fw", bad, { hardwareModels: ["S19"], version: "1.2.0" });
    s.repo.publish();
    const { ack, reboots } = await drive(s, bad, null);
    expect(reboots).toBe(2); // into the new slot, and back
    expect(ack).toMatchObject({ status: "failed" });
    expect(String(ack["reason"])).toMatch(/rolled back: health check failed/);
    expect(s.board.env()).toMatchObject({ hashward_slot: "a", upgrade_available: "0" });
    expect(s.powerOn()).toBe("a");
  });
});
