/**
 * The emulated arm64 miner board (issue 11 part 3; HW-Q-2, HW-BOARD-1, HW-BOARD-2): Debian's qemu_arm64 U-Boot
 * runs the real `scripts/board/hashward-boot.cmd` from the board's disk, boots Debian's arm64 kernel on the slot it
 * selects, BusyBox init starts the stand-in miner and then the real `scripts/board/S99hashward`, which runs the
 * real cross-compiled `hashward-agent-linux-arm64` from /config. The test plays the plane on the host's loopback
 * (test/support/fake-plane.ts; the guest reaches it at 10.0.2.2 through qemu's user-mode NAT) and checks the
 * board from its serial console. The tests run in order on ONE board (each boot costs about a minute): enrollment,
 * quarantine/release, then signed A/B updates from a TUF repository on the host: commit, health-check rollback,
 * and U-Boot's boot-count fallback from an image that never boots. Run with `npm run test:board` (not part of `npm test`: software emulation of
 * an arm64 board takes minutes); the image comes from `scripts/board/build-image.sh`.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TestTufRepo } from "../../agent/src/update/testing/index.js";
import { signObject } from "../../shared/crypto/index.js";
import { downTopic } from "../../shared/protocol/index.js";
import { startFakePlane, type FakePlane } from "../support/fake-plane.js";
import { HOST_FROM_GUEST, POOL, qemuBoardSkipReason, slotImage, startQemuBoard, type QemuBoard } from "../support/qemu-board.js";
import { REPO_ROOT, tempDir } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

// Software emulation on a shared machine: every step waits on an observable condition, within generous bounds.
const BOOT_MS = 900_000;
const STEP_MS = 300_000;

describeUnless(qemuBoardSkipReason(), "emulated arm64 board (qemu-system-aarch64, U-Boot, Debian arm64 kernel, real iptables)", () => {
  let plane: FakePlane;
  let board: QemuBoard;
  let repo: TestTufRepo;
  let tufDir: string | undefined;
  let deviceId: string;
  let seq = 0;
  const acks = (n: number) => plane.received.filter((r) => r.topic.endsWith("/up/ack") && r.message?.seq === n);
  const poolAnswers = async () => (await board.sh(`echo pool-probe | nc -w 5 ${POOL.host} ${POOL.port}`)).output.includes("pool-probe");
  const minerRunning = async () => (await board.sh("/etc/init.d/bmminer.sh status")).status === 0;

  const hellos = () => plane.received.filter((r) => r.topic.endsWith("/up/hello")).length;

  /** Sends a signed command and, like the real plane, re-sends it unchanged after each new hello until acked. */
  async function send(action: "quarantine" | "release" | "update", params: Record<string, unknown>, timeoutMs = STEP_MS): Promise<Record<string, unknown>> {
    const n = ++seq;
    const now = Date.now();
    const command = JSON.stringify(signObject({ v: 1, type: "command", deviceId, seq: n, issuedAt: now, expiresAt: now + 3_600_000, action, params }, plane.commandKey.privateKey));
    await plane.observer.publishAsync(downTopic(deviceId, "command"), command, { qos: 1 });
    let seen = hellos();
    const [ack] = await waitFor(
      `ack for ${action} seq ${n}`,
      async () => {
        if (acks(n).length > 0) return acks(n);
        if (hellos() > seen) {
          seen = hellos();
          await plane.observer.publishAsync(downTopic(deviceId, "command"), command, { qos: 1 });
        }
        return undefined;
      },
      { timeoutMs, intervalMs: 500 },
    );
    return ack!.message;
  }
  async function execute(action: "quarantine" | "release"): Promise<void> {
    expect(await send(action, { reason: "test" })).toMatchObject({ status: "done", action });
  }
  const env = async () => Object.fromEntries((await board.sh("fw_printenv")).output.split("\n").map((l) => l.split("=")).filter((kv) => kv.length >= 2).map(([k, ...v]) => [k!.trim(), v.join("=").trim()]));
  const floor = async () => (JSON.parse((await board.sh("cat /config/hashward/state/update.json")).output) as { floor: string }).floor;

  beforeAll(async () => {
    plane = await startFakePlane({ host: "127.0.0.1" });
    tufDir = tempDir("qemu-tuf");
    repo = await new TestTufRepo(join(tufDir, "repo")).start();
    const port = (url: string) => new URL(url).port;
    const fromGuest = (url: string) => url.replace("//127.0.0.1:", `//${HOST_FROM_GUEST}:`);
    board = startQemuBoard({
      controlPlaneUrl: `http://${HOST_FROM_GUEST}:${port(plane.httpUrl)}`,
      mqttUrl: `mqtt://${HOST_FROM_GUEST}:${port(plane.mqttUrl)}`,
      // The stand-in plane (test/support/fake-plane.ts) speaks plaintext: an explicit, logged opt-in (HW-TLS-1).
      allowPlaintext: true,
      stateDir: "/config/hashward/state",
      model: "S19",
      firmwareVersion: "1.0.0",
      platform: {
        kind: "antminer",
        // HW-BOARD-2 on this board: block slots on the virtio disk, the environment on partition 4.
        slots: { a: { kind: "block", path: "/dev/vda2" }, b: { kind: "block", path: "/dev/vda3" }, bootlimit: 2, rebootCommand: ["reboot"], healthCommand: ["/etc/init.d/bmminer.sh", "status"] },
      },
      measure: { paths: ["/config/hashward/agent.json"], includeAgentBinary: false },
      update: { trustedRootFile: "/config/hashward/tuf-root.json", metadataUrl: fromGuest(repo.metadataUrl), targetsUrl: fromGuest(repo.targetsUrl) },
      heartbeatIntervalMs: 5000,
      attestIntervalMs: 3_600_000,
      enrollPollMs: 1000,
      reconnectMinMs: 500,
      reconnectMaxMs: 5000,
    }, { "hashward/tuf-root.json": readFileSync(repo.rootFile) });
    await board.waitConsole(/hashward-board: agent started/, BOOT_MS);
    const hello = await waitFor("the board agent's hello", () => plane.received.find((r) => r.topic.endsWith("/up/hello")), { timeoutMs: BOOT_MS, intervalMs: 500 });
    deviceId = hello.message.deviceId;
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    await board?.stop();
    await repo?.stop();
    if (tufDir) rmSync(tufDir, { recursive: true, force: true });
    await plane?.close();
  });

  it("U-Boot booted slot a through hashward-boot.cmd into Debian's arm64 kernel; the arm64 agent enrolled", async () => {
    expect(board.console()).toContain("## Executing script");
    expect(board.console()).toMatch(/hashward-board: up slot=a image=hashward-board 1 kernel=\S+-arm64 arch=aarch64/);
    expect(plane.enrolled).toContain(deviceId);
    expect((await board.sh("cat /proc/cmdline")).output).toContain("hashward.slot=a");
    expect((await board.sh("fw_printenv -n hashward_slot")).output.trim()).toBe("a");
  }, STEP_MS);

  it("quarantine with the arm64 kernel's iptables: the pool goes silent, the miner stops, the plane still hears heartbeats; release restores all (HW-Q-2)", async () => {
    expect(await poolAnswers()).toBe(true);
    expect(await minerRunning()).toBe(true);
    const before = (await board.sh("iptables-save -t filter")).output;
    await execute("quarantine");
    const rules = await board.sh("iptables-save -t filter");
    expect(rules.output).toContain(":HASHWARD -");
    expect(rules.output).toContain(`-A HASHWARD -d ${HOST_FROM_GUEST}/32 -j ACCEPT`);
    expect(await poolAnswers()).toBe(false);
    expect(await minerRunning()).toBe(false);
    expect((await board.sh("cat /www/pages/cgi-bin/upgrade.cgi")).output.trim()).toBe("");
    const heard = plane.received.length;
    await waitFor("a heartbeat through the quarantine firewall", () => plane.received.slice(heard).some((r) => r.topic.endsWith("/up/heartbeat")), { timeoutMs: STEP_MS, intervalMs: 500 });

    await execute("release");
    const normalise = (save: string) => save.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")).map((l) => l.replace(/\[\d+:\d+\]/g, "[0:0]")).join("\n");
    expect(normalise((await board.sh("iptables-save -t filter")).output)).toBe(normalise(before));
    expect(await poolAnswers()).toBe(true);
    await waitFor("the miner running again", () => minerRunning(), { timeoutMs: STEP_MS, intervalMs: 1000 });
    expect((await board.sh("/www/pages/cgi-bin/upgrade.cgi")).output).toContain("upgrade accepted");
  }, 3 * STEP_MS);

  it("a signed update is written to slot b, U-Boot boots it, the health check passes, the agent commits and raises the floor (HW-BOARD-2)", async () => {
    repo.addTarget("fw", slotImage({ "etc/hashward-image": "hashward-board 2\n" }), { hardwareModels: ["S19"], version: "1.1.0" });
    repo.publish();
    const from = board.console().length;
    const ack = await send("update", { targetName: "fw" }, 2 * BOOT_MS);
    expect(ack).toMatchObject({ status: "done", action: "update" });
    expect(board.console().slice(from)).toMatch(/## Executing script[\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect((await board.sh("cat /proc/cmdline")).output).toContain("hashward.slot=b");
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
    expect(await floor()).toBe("1.1.0");
  }, 2 * BOOT_MS + 60_000);

  it("an image failing its health check: written to slot a, booted, rolled back through U-Boot to slot b; the floor stays", async () => {
    const failing = readFileSync(join(REPO_ROOT, "scripts/board/qemu/bmminer.sh"), "utf8").replace(/status\).*;;/, "status) exit 1 ;;");
    repo.addTarget("fw", slotImage({ "etc/hashward-image": "hashward-board 3\n", "etc/init.d/bmminer.sh": failing }), { hardwareModels: ["S19"], version: "1.2.0" });
    repo.publish();
    const from = board.console().length;
    const ack = await send("update", { targetName: "fw" }, 3 * BOOT_MS);
    expect(ack).toMatchObject({ status: "failed", action: "update" });
    expect(String(ack["reason"])).toMatch(/rolled back/);
    expect(board.console().slice(from)).toMatch(/hashward-board: up slot=a image=hashward-board 3 [\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
    expect(await floor()).toBe("1.1.0");
  }, 3 * BOOT_MS + 60_000);

  it("an image that never boots (its init cannot run: kernel panic, reboot): U-Boot's boot count falls back to slot b after bootlimit boots; the agent reports rolled-back, the floor stays", async () => {
    // A text file as /sbin/init: switch_root's exec fails, PID 1 dies, the kernel panics and reboots (panic=5).
    repo.addTarget("fw", slotImage({ "etc/hashward-image": "hashward-board 4\n", "sbin/init": "not an executable\n" }), { hardwareModels: ["S19"], version: "1.3.0" });
    repo.publish();
    const from = board.console().length;
    const ack = await send("update", { targetName: "fw" }, 6 * BOOT_MS);
    expect(ack).toMatchObject({ status: "failed", action: "update" });
    expect(String(ack["reason"])).toMatch(/rolled back/);
    const boots = board.console().slice(from);
    // bootlimit=2: two counted boots of slot a, the third attempt runs altbootcmd; then slot b comes up.
    expect(boots.match(/Kernel panic/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(boots).toContain("was not committed after 2 boots; falling back");
    expect(boots).toMatch(/falling back[\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0", hashward_failed: "a" });
    expect(await floor()).toBe("1.1.0");
  }, 6 * BOOT_MS + 60_000);
});
