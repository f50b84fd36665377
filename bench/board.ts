/**
 * The agent on the emulated arm64 board (issue 11 "Benchmark"; docs/board.md): one power-on of the image from
 * scripts/board/build-image.sh under qemu-system-aarch64 (cortex-a53, TCG software emulation, 1 GiB RAM), the
 * real arm64 agent started by S99hashward, a stand-in plane on 127.0.0.1 (test/support/fake-plane.ts).
 * Figures (ms are wall clock of the EMULATED board on this host; a real cortex-a53 is faster, a loaded host slower):
 *   powerOnToHelloMs   qemu start -> the agent's first hello over MQTT (U-Boot, kernel, init, agent start, enroll)
 *   powerOnToInitMs    baseline, same boot: qemu start -> rcS reports the board up (no agent yet);
 *                      ratioHelloToInit = powerOnToHelloMs / powerOnToInitMs (what the agent adds to a boot)
 *   bootToTrustedMs    null: the stand-in plane does not appraise; the real plane's verdict is not measured here
 *   quarantineApplyMs  signed quarantine command published -> its ack (iptables in the arm64 kernel, miner stopped)
 *   releaseApplyMs     the same for release
 *   updateToCommitMs   signed update command (a 32 MiB ext4 slot image from a TUF repo on the host) -> ack done:
 *                      download, verify, write + read back slot b, fw_setenv, reboot through U-Boot, health, commit
 *   rollbackDetectedMs the same for an image failing its health check -> ack failed (rolled back, old slot booted)
 *   agentRssKiB, agentHwmKiB  VmRSS/VmHWM of the agent on the board, BENCH_IDLE_MS (default 20 s) after hello
 *   boardMemTotalKiB, boardMemAvailableKiB  /proc/meminfo on the board at that moment
 *   agentBinaryBytes   dist/agent/hashward-agent-linux-arm64; configUsedKiB: /config used (agent + state)
 * Usage: npx tsx bench/board.ts   (npm run bench -- board)
 */
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { TestTufRepo } from "../agent/src/update/testing/index.js";
import { signObject } from "../shared/crypto/index.js";
import { downTopic } from "../shared/protocol/index.js";
import { startFakePlane } from "../test/support/fake-plane.js";
import { REPO_ROOT, tempDir } from "../test/support/processes.js";
import { ARM64_AGENT, HOST_FROM_GUEST, qemuBoardSkipReason, slotImage, startQemuBoard } from "../test/support/qemu-board.js";
import { emitResult, envInt, pollUntil, printTable, progress, ratio } from "./support/report.js";

const IDLE_MS = envInt("BENCH_IDLE_MS", 20_000, { min: 1000, max: 300_000 });
const BOOT_MS = 900_000;

const skip = qemuBoardSkipReason();
if (skip) {
  process.stderr.write(`bench board: ${skip}\n`);
  process.exit(1);
}

const plane = await startFakePlane({ host: "127.0.0.1" });
const tufDir = tempDir("bench-board-tuf");
const repo = await new TestTufRepo(join(tufDir, "repo")).start();
const port = (url: string) => new URL(url).port;
const fromGuest = (url: string) => url.replace("//127.0.0.1:", `//${HOST_FROM_GUEST}:`);
const powerOn = Date.now();
const board = startQemuBoard({
  controlPlaneUrl: `http://${HOST_FROM_GUEST}:${port(plane.httpUrl)}`,
  mqttUrl: `mqtt://${HOST_FROM_GUEST}:${port(plane.mqttUrl)}`,
  // The stand-in plane (test/support/fake-plane.ts) speaks plaintext: an explicit, logged opt-in (HW-TLS-1).
  allowPlaintext: true,
  stateDir: "/config/hashward/state",
  model: "S19",
  firmwareVersion: "1.0.0",
  platform: {
    kind: "antminer",
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
try {
  progress("booting the emulated board (U-Boot, kernel, init, agent)");
  await board.waitConsole(/hashward-board: up slot=/, BOOT_MS);
  const powerOnToInitMs = Date.now() - powerOn;
  const hello = await pollUntil(async () => plane.received.find((r) => r.topic.endsWith("/up/hello")), { timeoutMs: BOOT_MS, intervalMs: 250 });
  if (!hello) throw new Error(`no hello within ${BOOT_MS} ms; console tail:\n${board.console().slice(-2000)}`);
  const powerOnToHelloMs = Date.now() - powerOn;
  const deviceId = hello.message.deviceId as string;

  let seq = 0;
  const hellos = () => plane.received.filter((r) => r.topic.endsWith("/up/hello")).length;
  /** Command -> ack time; re-sent after each new hello (a reboot) until acked, as the real plane does. */
  const timeCommand = async (action: "quarantine" | "release" | "update", expected: "done" | "failed" = "done", params: Record<string, unknown> = { reason: "bench" }) => {
    const n = ++seq;
    const now = Date.now();
    const command = JSON.stringify(signObject({ v: 1, type: "command", deviceId, seq: n, issuedAt: now, expiresAt: now + 3_600_000, action, params }, plane.commandKey.privateKey));
    const started = Date.now();
    await plane.observer.publishAsync(downTopic(deviceId, "command"), command, { qos: 1 });
    let seen = hellos();
    const ack = await pollUntil(async () => {
      const found = plane.received.find((r) => r.topic.endsWith("/up/ack") && r.message?.seq === n);
      if (!found && hellos() > seen) {
        seen = hellos();
        await plane.observer.publishAsync(downTopic(deviceId, "command"), command, { qos: 1 });
      }
      return found;
    }, { timeoutMs: 2 * BOOT_MS, intervalMs: 250 });
    if (!ack || ack.message.status !== expected) throw new Error(`${action}: ${JSON.stringify(ack?.message ?? "no ack")}`);
    return Date.now() - started;
  };

  progress(`idle ${IDLE_MS} ms, then the agent's memory on the board`);
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  const status = (await board.sh("cat /proc/$(cat /var/run/hashward-agent.child.pid)/status")).output;
  const meminfo = (await board.sh("cat /proc/meminfo")).output;
  const configUsedKiB = Number((await board.sh("df -k /config | tail -1")).output.trim().split(/\s+/)[2]);

  progress("quarantine and release");
  const quarantineApplyMs = await timeCommand("quarantine");
  const releaseApplyMs = await timeCommand("release");

  progress("a signed update to the other slot, committed after the reboot");
  repo.addTarget("fw", slotImage({ "etc/hashward-image": "hashward-board 2\n" }), { hardwareModels: ["S19"], version: "1.1.0" });
  repo.publish();
  const updateToCommitMs = await timeCommand("update", "done", { targetName: "fw" });
  progress("an image failing its health check, rolled back");
  const failing = readFileSync(join(REPO_ROOT, "scripts/board/qemu/bmminer.sh"), "utf8").replace(/status\).*;;/, "status) exit 1 ;;");
  repo.addTarget("fw", slotImage({ "etc/hashward-image": "hashward-board 3\n", "etc/init.d/bmminer.sh": failing }), { hardwareModels: ["S19"], version: "1.2.0" });
  repo.publish();
  const rollbackDetectedMs = await timeCommand("update", "failed", { targetName: "fw" });

  const figures = {
    powerOnToHelloMs,
    powerOnToInitMs,
    ratioHelloToInit: ratio(powerOnToHelloMs, powerOnToInitMs),
    bootToTrustedMs: null,
    quarantineApplyMs,
    releaseApplyMs,
    updateToCommitMs,
    rollbackDetectedMs,
    agentRssKiB: field(status, "VmRSS"),
    agentHwmKiB: field(status, "VmHWM"),
    boardMemTotalKiB: field(meminfo, "MemTotal"),
    boardMemAvailableKiB: field(meminfo, "MemAvailable"),
    agentBinaryBytes: statSync(ARM64_AGENT).size,
    configUsedKiB,
  };
  printTable("emulated arm64 board (qemu TCG cortex-a53; wall clock of the emulation)", Object.entries(figures).map(([k, v]) => [k, v === null ? "not measured" : v]));
  emitResult("board", figures);
} finally {
  await board.stop();
  await plane.close();
  await repo.stop();
  rmSync(tufDir, { recursive: true, force: true });
}
