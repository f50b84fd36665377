/**
 * The emulated arm64 miner board (issue 11 part 3; HW-Q-2, HW-BOARD-1, HW-BOARD-2): Debian's qemu_arm64 U-Boot
 * runs the real `scripts/board/hashward-boot.cmd` from the board's disk, boots Debian's arm64 kernel on the slot it
 * selects, BusyBox init starts the stand-in miner and then the real `scripts/board/S99hashward`, which runs the
 * real cross-compiled `hashward-agent-linux-arm64` from /config. The test plays the plane on the host's loopback
 * (test/support/fake-plane.ts; the guest reaches it at 10.0.2.2 through qemu's user-mode NAT) and checks the
 * board from its serial console. Run with `npm run test:board` (not part of `npm test`: software emulation of
 * an arm64 board takes minutes); the image comes from `scripts/board/build-image.sh`.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { signObject } from "../../shared/crypto/index.js";
import { downTopic } from "../../shared/protocol/index.js";
import { startFakePlane, type FakePlane } from "../support/fake-plane.js";
import { HOST_FROM_GUEST, POOL, qemuBoardSkipReason, startQemuBoard, type QemuBoard } from "../support/qemu-board.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

// Software emulation on a shared machine: every step waits on an observable condition, within generous bounds.
const BOOT_MS = 900_000;
const STEP_MS = 300_000;

describeUnless(qemuBoardSkipReason(), "emulated arm64 board (qemu-system-aarch64, U-Boot, Debian arm64 kernel, real iptables)", () => {
  let plane: FakePlane;
  let board: QemuBoard;
  let deviceId: string;
  let seq = 0;
  const acks = (n: number) => plane.received.filter((r) => r.topic.endsWith("/up/ack") && r.message?.seq === n);
  const poolAnswers = async () => (await board.sh(`echo pool-probe | nc -w 5 ${POOL.host} ${POOL.port}`)).output.includes("pool-probe");
  const minerRunning = async () => (await board.sh("/etc/init.d/bmminer.sh status")).status === 0;

  async function execute(action: "quarantine" | "release"): Promise<void> {
    const n = ++seq;
    const now = Date.now();
    const command = signObject({ v: 1, type: "command", deviceId, seq: n, issuedAt: now, expiresAt: now + 900_000, action, params: { reason: "test" } }, plane.commandKey.privateKey);
    await plane.observer.publishAsync(downTopic(deviceId, "command"), JSON.stringify(command), { qos: 1 });
    const [ack] = await waitFor(`ack for ${action} seq ${n}`, () => acks(n).length > 0 && acks(n), { timeoutMs: STEP_MS, intervalMs: 500 });
    expect(ack!.message).toMatchObject({ status: "done", action });
  }

  beforeAll(async () => {
    plane = await startFakePlane({ host: "127.0.0.1" });
    const port = (url: string) => new URL(url).port;
    board = startQemuBoard({
      controlPlaneUrl: `http://${HOST_FROM_GUEST}:${port(plane.httpUrl)}`,
      mqttUrl: `mqtt://${HOST_FROM_GUEST}:${port(plane.mqttUrl)}`,
      stateDir: "/config/hashward/state",
      model: "S19",
      firmwareVersion: "1.0.0",
      platform: { kind: "antminer" },
      measure: { paths: ["/config/hashward/agent.json"], includeAgentBinary: false },
      heartbeatIntervalMs: 5000,
      attestIntervalMs: 3_600_000,
      enrollPollMs: 1000,
      reconnectMinMs: 500,
      reconnectMaxMs: 5000,
    });
    await board.waitConsole(/hashward-board: agent started/, BOOT_MS);
    const hello = await waitFor("the board agent's hello", () => plane.received.find((r) => r.topic.endsWith("/up/hello")), { timeoutMs: BOOT_MS, intervalMs: 500 });
    deviceId = hello.message.deviceId;
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    await board?.stop();
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
});
