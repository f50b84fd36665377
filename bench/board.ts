/**
 * The agent on the emulated arm64 board (docs/board.md "Benchmark and minimum board"): one power-on of the image from
 * scripts/board/build-image.sh under qemu-system-aarch64 (cortex-a53, TCG software emulation, 1 GiB RAM), the
 * real arm64 agent started by S99hashward, the REAL control plane on the host (under Bun, TLS, CA pinned by the
 * enrollment token's hash; the same setup as test/board/emulated-board.test.ts: test/support/qemu-board.ts).
 * Figures (ms are wall clock of the EMULATED board on this host; a real cortex-a53 is faster, a loaded host slower):
 *   powerOnToInitMs    qemu start -> rcS reports the board up (U-Boot, kernel, init; no agent yet)
 *   powerOnToConnectedMs  qemu start -> the plane lists the board connected (agent start, enrollment, MQTT over TLS)
 *   bootToTrustedMs    qemu start -> the plane's appraisal of the board's evidence says trusted;
 *                      ratioTrustedToInit = bootToTrustedMs / powerOnToInitMs (what the agent adds to a boot)
 *   quarantineApplyMs  operator POST /devices/{id}/quarantine -> the plane has the board's ack (containment
 *                      quarantined: iptables in the arm64 kernel, miner stopped, CGI bind-mounted)
 *   releaseApplyMs     the same for release (containment none)
 *   updateToCommitMs   one-device rollout of a signed release (a 32 MiB ext4 slot image in the plane's TUF repo)
 *                      -> the plane's rollout says succeeded: download, verify, write + read back slot b,
 *                      fw_setenv, reboot through U-Boot, health check, commit, ack
 *   rollbackDetectedMs the same for an image failing its health check -> rollout says failed (rolled back, the old
 *                      slot booted again)
 *   agentRssKiB, agentHwmKiB  VmRSS/VmHWM of the agent on the board, BENCH_IDLE_MS (default 20 s) after trusted
 *   boardMemTotalKiB, boardMemAvailableKiB  /proc/meminfo on the board at that moment
 *   agentIdleCpuShare  the agent's CPU time over that idle window / its wall time (one emulated core = 1.0;
 *                      utime+stime of /proc/<pid>/stat against /proc/uptime, both read on the board)
 *   agentBinaryBytes   dist/agent/hashward-agent-linux-arm64; configUsedKiB: /config used (agent + state)
 * Usage: npx tsx bench/board.ts   (npm run bench -- board)
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../test/support/processes.js";
import { ARM64_AGENT, BOARD_BOOT_MS, qemuBoardSkipReason, startBoardOnPlane } from "../test/support/qemu-board.js";
import { emitResult, envInt, printTable, progress, ratio, round } from "./support/report.js";

const IDLE_MS = envInt("BENCH_IDLE_MS", 20_000, { min: 1000, max: 300_000 });

const skip = qemuBoardSkipReason();
if (skip) {
  process.stderr.write(`bench board: ${skip}\n`);
  process.exit(1);
}

progress("starting the control plane, publishing root v1, registering the slot's reference values");
const setup = await startBoardOnPlane();
const { board } = setup;
try {
  progress("booting the emulated board (U-Boot, kernel, init, agent) until the plane says trusted");
  const since = () => Date.now() - setup.poweredOnAt;
  let powerOnToConnectedMs: number | null = null;
  const [powerOnToInitMs, bootToTrustedMs] = await Promise.all([
    board.waitConsole(/hashward-board: up slot=/, BOARD_BOOT_MS).then(since),
    setup
      .waitDevice("the plane's trusted verdict", (d) => {
        if (d.connected) powerOnToConnectedMs ??= since();
        return d.appraisal === "trusted";
      })
      .then(since),
  ]);

  progress(`idle ${IDLE_MS} ms, then the agent's memory and CPU share on the board`);
  const cpuBefore = await agentCpu();
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const cpuAfter = await agentCpu();
  // utime+stime are in clock ticks (USER_HZ, 100 on arm64 Linux); the share is of one (emulated) core.
  const agentIdleCpuShare = round((cpuAfter.ticks - cpuBefore.ticks) / 100 / (cpuAfter.uptimeS - cpuBefore.uptimeS), 4);
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  const status = (await board.sh("cat /proc/$(cat /var/run/hashward-agent.child.pid)/status")).output;
  const meminfo = (await board.sh("cat /proc/meminfo")).output;
  const configUsedKiB = Number((await board.sh("df -k /config | tail -1")).output.trim().split(/\s+/)[2]);

  progress("operator quarantine and release through the plane");
  const quarantineApplyMs = (await setup.contain("quarantine")).ms;
  const releaseApplyMs = (await setup.contain("release")).ms;

  progress("a signed release rolled out to the board, committed after the reboot");
  await setup.publishSlot("fw-board-1.1.0", "1.1.0", { "etc/hashward-image": "hashward-board 2\n" });
  const update = await setup.rollout("fw-board-1.1.0", 2 * BOARD_BOOT_MS);
  if (update.device["status"] !== "succeeded") throw new Error(`update: ${JSON.stringify(update.device)}`);
  progress("a release failing its health check, rolled back");
  const failing = readFileSync(join(REPO_ROOT, "scripts/board/qemu/bmminer.sh"), "utf8").replace(/status\).*;;/, "status) exit 1 ;;");
  await setup.publishSlot("fw-board-1.2.0", "1.2.0", { "etc/hashward-image": "hashward-board 3\n", "etc/init.d/bmminer.sh": failing });
  const rollback = await setup.rollout("fw-board-1.2.0", 3 * BOARD_BOOT_MS);
  if (rollback.device["status"] !== "failed") throw new Error(`rollback: ${JSON.stringify(rollback.device)}`);

  const figures = {
    powerOnToInitMs,
    powerOnToConnectedMs,
    bootToTrustedMs,
    ratioTrustedToInit: ratio(bootToTrustedMs, powerOnToInitMs),
    quarantineApplyMs,
    releaseApplyMs,
    updateToCommitMs: update.ms,
    rollbackDetectedMs: rollback.ms,
    agentRssKiB: field(status, "VmRSS"),
    agentHwmKiB: field(status, "VmHWM"),
    agentIdleCpuShare,
    boardMemTotalKiB: field(meminfo, "MemTotal"),
    boardMemAvailableKiB: field(meminfo, "MemAvailable"),
    agentBinaryBytes: statSync(ARM64_AGENT).size,
    configUsedKiB,
  };
  printTable("emulated arm64 board against the real control plane (qemu TCG cortex-a53; wall clock of the emulation)", Object.entries(figures).map(([k, v]) => [k, v === null ? "not seen" : v]));
  emitResult("board", figures);
} finally {
  await setup.stop();
}

/**
 * The agent's CPU time so far on the board (utime + stime from /proc/<pid>/stat, fields 14 and 15, in clock
 * ticks) and the board's uptime in seconds, read in one shell command so both describe the same moment.
 */
async function agentCpu(): Promise<{ ticks: number; uptimeS: number }> {
  const out = (await board.sh("cat /proc/$(cat /var/run/hashward-agent.child.pid)/stat /proc/uptime")).output.trim().split("\n");
  const stat = out.find((l) => /^\d+ \(.*\) /.test(l))!;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const uptime = out.find((l) => /^\d+\.\d+ \d+\.\d+$/.test(l.trim()))!;
  return { ticks: Number(fields[11]) + Number(fields[12]), uptimeS: Number(uptime.trim().split(" ")[0]) };
}
