/**
 * The emulated arm64 miner board (docs/board.md "Emulated arm64 board"; HW-Q-2, HW-BOARD-1, HW-BOARD-2) against the REAL control plane:
 * Debian's qemu_arm64 U-Boot runs the real `scripts/board/hashward-boot.cmd` from the board's disk, boots Debian's
 * arm64 kernel on the slot it selects, BusyBox init starts the stand-in miner and then the real
 * `scripts/board/S99hashward`, which runs the real cross-compiled `hashward-agent-linux-arm64` from /config. The
 * plane runs on the host under Bun with its default TLS; the agent pins its CA by the hash that came with the
 * enrollment token and reaches it at 10.0.2.2 through qemu's user-mode NAT (test/support/qemu-board.ts
 * `startBoardOnPlane`). Everything the plane decides comes from the plane: its appraisal against registered
 * reference values, signed commands sent through the operator API and acked by the board, releases signed offline
 * with the release CLI, published in the plane's TUF repository and rolled out by its rollout engine.
 * The tests run in order on ONE board (each boot costs about a minute): enrollment -> trusted, quarantine/release,
 * then signed A/B updates: commit, health-check rollback, and U-Boot's boot-count fallback from an image that never
 * boots. Run with `npm run test:board` (not part of `npm test`: software emulation of an arm64 board takes minutes);
 * the image comes from `scripts/board/build-image.sh`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BOARD_BOOT_MS, HOST_FROM_GUEST, POOL, qemuBoardSkipReason, startBoardOnPlane, type PlaneBoard } from "../support/qemu-board.js";
import { REPO_ROOT } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

// Software emulation on a shared machine: every step waits on an observable condition, within generous bounds.
const STEP_MS = 300_000;

describeUnless(qemuBoardSkipReason(), "emulated arm64 board (qemu-system-aarch64, U-Boot, Debian arm64 kernel, real iptables) against the real control plane", () => {
  let setup: PlaneBoard;
  let deviceId: string;
  const board = () => setup.board;
  // The pool echoes the probe; `tr` turns it upper case so the serial console's echo of the typed command (which
  // holds only the lower-case word) can never read as the pool's answer.
  const poolAnswers = async () => (await board().sh(`echo pool-probe | nc -w 5 ${POOL.host} ${POOL.port} | tr a-z A-Z`)).output.includes("POOL-PROBE");
  const minerRunning = async () => (await board().sh("/etc/init.d/bmminer.sh status")).status === 0;
  const env = async () => Object.fromEntries((await board().sh("fw_printenv")).output.split("\n").map((l) => l.split("=")).filter((kv) => kv.length >= 2).map(([k, ...v]) => [k!.trim(), v.join("=").trim()]));
  const floor = async () => (JSON.parse((await board().sh("cat /config/hashward/state/update.json")).output) as { floor: string }).floor;
  /** The plane's reference-value set for the board's model at `version` (registered or from a release). */
  const referenceId = async (version: string) => (await setup.admin.get(`/api/v1/reference-values?model=S19&firmwareVersion=${version}`)).referenceValues[0]?.id as string;
  const trustedOn = (version: string) => setup.waitDevice(`the plane to appraise the board trusted on ${version}`, (d) => d.appraisal === "trusted" && d.firmwareVersion === version && d.connected);

  beforeAll(async () => {
    setup = await startBoardOnPlane();
    await board().waitConsole(/hashward-board: agent started/, BOARD_BOOT_MS);
    deviceId = await setup.deviceId();
  }, 2 * BOARD_BOOT_MS);

  afterAll(async () => {
    await setup?.stop();
  });

  it("U-Boot booted slot a through hashward-boot.cmd into Debian's arm64 kernel; the arm64 agent enrolled over TLS and the plane appraises it trusted", async () => {
    expect(board().console()).toContain("## Executing script");
    expect(board().console()).toMatch(/hashward-board: up slot=a image=hashward-board 1 kernel=\S+-arm64 arch=aarch64/);
    expect((await board().sh("cat /proc/cmdline")).output).toContain("hashward.slot=a");
    expect((await board().sh("fw_printenv -n hashward_slot")).output.trim()).toBe("a");
    const view = await trustedOn("1.0.0");
    expect(view).toMatchObject({ enrollment: "accepted", containment: "none", model: "S19" });
    expect(view.lastAppraisal?.referenceId).toBe(await referenceId("1.0.0"));
    // HW-PIN-2 / HW-TLS-1: the agent kept the plane's CA only after checking it against the pin, and speaks TLS.
    expect((await board().sh("grep -c BEGIN /config/hashward/state/plane-ca.pem")).output.trim()).toBe("1");
  }, BOARD_BOOT_MS);

  it("an operator quarantine through the plane: the arm64 kernel's iptables silence the pool, the miner stops, the plane still hears heartbeats; release restores all (HW-Q-2)", async () => {
    expect(await poolAnswers()).toBe(true);
    expect(await minerRunning()).toBe(true);
    const before = (await board().sh("iptables-save -t filter")).output;
    const quarantined = await setup.contain("quarantine");
    expect(quarantined.command).toMatchObject({ action: "quarantine", status: "acked" });
    const rules = await board().sh("iptables-save -t filter");
    expect(rules.output).toContain(":HASHWARD -");
    expect(rules.output).toContain(`-A HASHWARD -d ${HOST_FROM_GUEST}/32 -j ACCEPT`);
    expect(await poolAnswers()).toBe(false);
    expect(await minerRunning()).toBe(false);
    expect((await board().sh("cat /www/pages/cgi-bin/upgrade.cgi")).output.trim()).toBe("");
    const seen = (await setup.device()).lastSeenAt ?? "";
    await setup.waitDevice("a signed heartbeat through the quarantine firewall", (d) => d.connected && (d.lastSeenAt ?? "") > seen, STEP_MS);

    const released = await setup.contain("release");
    expect(released.command).toMatchObject({ action: "release", status: "acked" });
    const normalise = (save: string) => save.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")).map((l) => l.replace(/\[\d+:\d+\]/g, "[0:0]")).join("\n");
    expect(normalise((await board().sh("iptables-save -t filter")).output)).toBe(normalise(before));
    expect(await poolAnswers()).toBe(true);
    await waitFor("the miner running again", () => minerRunning(), { timeoutMs: STEP_MS, intervalMs: 1000 });
    expect((await board().sh("/www/pages/cgi-bin/upgrade.cgi")).output).toContain("upgrade accepted");
    // A fresh challenge answer after the release (evidence sent under quarantine says what it could not observe).
    await setup.admin.post(`/api/v1/devices/${deviceId}/attest`);
    await trustedOn("1.0.0");
  }, 3 * STEP_MS);

  it("a signed release rolled out by the plane is written to slot b, U-Boot boots it, the health check passes, the agent commits; the plane sees 1.1.0 trusted (HW-BOARD-2)", async () => {
    await setup.publishSlot("fw-board-1.1.0", "1.1.0", { "etc/hashward-image": "hashward-board 2\n" });
    const from = board().console().length;
    const result = await setup.rollout("fw-board-1.1.0", 2 * BOARD_BOOT_MS, "committed");
    expect(result.device).toMatchObject({ status: "succeeded" });
    expect(result.command).toMatchObject({ action: "update", status: "acked" });
    expect(result.progress.find((p) => p["phase"] === "committed")).toMatchObject({ version: "1.1.0", slot: "b" });
    expect(board().console().slice(from)).toMatch(/## Executing script[\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect((await board().sh("cat /proc/cmdline")).output).toContain("hashward.slot=b");
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
    expect(await floor()).toBe("1.1.0");
    // The plane's view: the committed version, appraised against the release's own reference values.
    const view = await trustedOn("1.1.0");
    expect(view.lastAppraisal?.referenceId).toBe(await referenceId("1.1.0"));
  }, 2 * BOARD_BOOT_MS + STEP_MS);

  it("a release failing its health check: written to slot a, booted, rolled back through U-Boot to slot b; the plane shows rolled-back, the floor stays", async () => {
    const failing = readFileSync(join(REPO_ROOT, "scripts/board/qemu/bmminer.sh"), "utf8").replace(/status\).*;;/, "status) exit 1 ;;");
    await setup.publishSlot("fw-board-1.2.0", "1.2.0", { "etc/hashward-image": "hashward-board 3\n", "etc/init.d/bmminer.sh": failing });
    const from = board().console().length;
    const result = await setup.rollout("fw-board-1.2.0", 3 * BOARD_BOOT_MS, "rolled-back");
    expect(result.device).toMatchObject({ status: "failed" });
    expect(String(result.device["reason"])).toMatch(/health check failed/);
    expect(result.command).toMatchObject({ action: "update", status: "failed" });
    expect(String(result.command?.["reason"])).toMatch(/rolled back: health check failed/);
    expect(result.progress.find((p) => p["phase"] === "rolled-back")).toMatchObject({ version: "1.2.0", slot: "b" });
    expect(board().console().slice(from)).toMatch(/hashward-board: up slot=a image=hashward-board 3 [\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
    expect(await floor()).toBe("1.1.0");
    expect((await trustedOn("1.1.0")).firmwareVersion).toBe("1.1.0");
  }, 3 * BOARD_BOOT_MS + STEP_MS);

  it("a release that never boots (its init cannot run: kernel panic, reboot): U-Boot's boot count falls back to slot b after bootlimit boots; the plane shows rolled-back, the floor stays", async () => {
    // A text file as /sbin/init: switch_root's exec fails, PID 1 dies, the kernel panics and reboots (panic=5).
    await setup.publishSlot("fw-board-1.3.0", "1.3.0", { "etc/hashward-image": "hashward-board 4\n", "sbin/init": "not an executable\n" });
    const from = board().console().length;
    const result = await setup.rollout("fw-board-1.3.0", 6 * BOARD_BOOT_MS, "rolled-back");
    expect(result.device).toMatchObject({ status: "failed" });
    expect(String(result.device["reason"])).toMatch(/boot into slot a failed/);
    expect(result.command).toMatchObject({ action: "update", status: "failed" });
    expect(String(result.command?.["reason"])).toMatch(/rolled back: boot into slot a failed/);
    const boots = board().console().slice(from);
    // bootlimit=2: two counted boots of slot a, the third attempt runs altbootcmd; then slot b comes up.
    expect(boots.match(/Kernel panic/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(boots).toContain("was not committed after 2 boots; falling back");
    expect(boots).toMatch(/falling back[\s\S]*hashward-board: up slot=b image=hashward-board 2 /);
    expect(await env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0", hashward_failed: "a" });
    expect(await floor()).toBe("1.1.0");
    expect((await trustedOn("1.1.0")).firmwareVersion).toBe("1.1.0");
  }, 6 * BOARD_BOOT_MS + STEP_MS);
});
