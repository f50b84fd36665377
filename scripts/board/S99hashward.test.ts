/**
 * The board init script under a real POSIX sh (dash here, BusyBox ash on a board) with a stand-in agent:
 * `stop` and `restart` must never leave an agent behind (HW-BOARD-1), which two agents on one state dir would be.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../../agent/src/testing/index.js";

const SCRIPT = join(import.meta.dirname, "S99hashward");

/** Pids of live processes whose command line contains `marker` (zombies excluded). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ");
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"))?.[1];
      if (cmdline.includes(marker) && state !== "Z") out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("scripts/board/S99hashward", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).reverse().forEach((c) => c()));

  function setup() {
    const dir = tempDir();
    const agent = join(dir.path, "fake-agent");
    // The stand-in: one process, `sleep` run through a link inside the temp dir, so its command line names the
    // temp dir and every copy can be found (as one real agent process would be).
    symlinkSync(execFileSync("sh", ["-c", "command -v sleep"], { encoding: "utf8" }).trim(), join(dir.path, "agent-sleep"));
    writeFileSync(agent, `#!/bin/sh\nexec "${join(dir.path, "agent-sleep")}" 1000\n`);
    chmodSync(agent, 0o755);
    const env = { ...process.env, HASHWARD_AGENT: agent, HASHWARD_CONFIG: join(dir.path, "agent.json"), HASHWARD_RUN_DIR: dir.path, HASHWARD_LOG: join(dir.path, "agent.log"), HASHWARD_RESTART_DELAY: "1" };
    const run = (action: string) => execFileSync("sh", [SCRIPT, action], { env, encoding: "utf8", timeout: 30_000 });
    const agentPid = () => (existsSync(join(dir.path, "hashward-agent.child.pid")) ? Number(readFileSync(join(dir.path, "hashward-agent.child.pid"), "utf8")) : null);
    const supervisorPid = () => (existsSync(join(dir.path, "hashward-agent.pid")) ? Number(readFileSync(join(dir.path, "hashward-agent.pid"), "utf8")) : null);
    cleanups.push(() => {
      for (const pid of processesWith(dir.path)) process.kill(pid, "SIGKILL");
      dir.cleanup();
    });
    return { dir: dir.path, agent, run, agentPid, supervisorPid };
  }

  it("stop ends the supervisor loop and the agent it started; nothing is left behind", async () => {
    const b = setup();
    b.run("start");
    await waitFor("agent started", () => b.agentPid() !== null && alive(b.agentPid()!));
    const agent = b.agentPid()!;
    const supervisor = b.supervisorPid()!;
    // The stand-in resolves to `sleep` (an exec); it may take the shebang hop a moment.
    await waitFor("stand-in agent running", () => processesWith(b.dir).includes(agent));
    b.run("stop");
    expect(alive(agent)).toBe(false);
    expect(alive(supervisor)).toBe(false);
    expect(processesWith(b.dir)).toEqual([]);
    expect(existsSync(join(b.dir, "hashward-agent.pid"))).toBe(false);
    expect(existsSync(join(b.dir, "hashward-agent.child.pid"))).toBe(false);
  });

  it("restart leaves exactly one agent running", async () => {
    const b = setup();
    b.run("start");
    await waitFor("agent started", () => b.agentPid() !== null && processesWith(b.dir).includes(b.agentPid()!));
    const first = b.agentPid()!;
    b.run("restart");
    await waitFor("agent restarted", () => b.agentPid() !== null && b.agentPid() !== first && processesWith(b.dir).includes(b.agentPid()!));
    expect(alive(first)).toBe(false);
    expect(processesWith(b.dir).filter((pid) => pid !== b.supervisorPid())).toEqual([b.agentPid()]);
    b.run("stop");
    expect(processesWith(b.dir)).toEqual([]);
  });

  it("a dead agent is restarted by the loop; an agent left by a dead supervisor is stopped before a new start", async () => {
    const b = setup();
    b.run("start");
    await waitFor("agent started", () => b.agentPid() !== null && processesWith(b.dir).includes(b.agentPid()!));
    const first = b.agentPid()!;
    process.kill(first, "SIGKILL");
    await waitFor("agent restarted by the loop", () => b.agentPid() !== null && b.agentPid() !== first && alive(b.agentPid()!));
    const orphan = b.agentPid()!;
    process.kill(b.supervisorPid()!, "SIGKILL"); // the loop dies without its trap: the agent is orphaned
    await waitFor("supervisor gone", () => !alive(b.supervisorPid()!));
    b.run("start");
    await waitFor("new agent", () => b.agentPid() !== null && b.agentPid() !== orphan && alive(b.agentPid()!));
    expect(alive(orphan)).toBe(false);
    b.run("stop");
    expect(processesWith(b.dir)).toEqual([]);
  });
});
