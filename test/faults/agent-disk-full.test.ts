/**
 * Fault campaign (docs/reliability.md "Agent-side faults"), "the agent's state dir full" (HW-FAULT-10): the compiled agent runs with its
 * state dir on a small tmpfs the test mounts, and the test fills it to the last byte (ENOSPC) while the agent runs
 * and keeps it full (as a runaway log would) until it frees it.
 * Then, with no byte free:
 *  - a quarantine command is enforced (the miner stops) and acked, so the plane reads `quarantined`;
 *  - heartbeats keep the device alive and challenged evidence is still appraised;
 *  - the agent says what it cannot persist (an error line naming the state file and ENOSPC);
 *  - every JSON state file parses at every look (no truncated write), no temp file is left behind;
 *  - an agent restarted on the full disk (its quarantine never reached state.json) is quarantined again;
 * and when space returns, the pending state lands (state.json reads quarantined) and a release works.
 * Needs root (mount); skipped with the reason otherwise.
 */
import { execFileSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { describeUnless } from "../support/skip.js";
import { AGENT_BINARY, measureWithAgent, startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
const FIRMWARE = "2024.06.1";
const SLOW = { timeoutMs: 90_000 };
const TMPFS_BYTES = 4 * 1024 * 1024;

function missing(): string | null {
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root (CI runs as root)";
  if (!existsSync(AGENT_BINARY)) return `${AGENT_BINARY} is missing: run npm run build:agent`;
  return null;
}

let plane: ControlPlane;
let admin: ApiClient;
let mountPoint: string | null = null;
let releaseDisk: (() => void) | null = null;
const agents: ManagedProcess[] = [];

/**
 * Keeps the filesystem of `file` full, as a runaway log would: zeros are appended until the filesystem refuses
 * (ENOSPC, down to the last byte), and again every 10 ms, so a page the agent frees (an outbox entry deleted after
 * its PUBACK, an old state.json replaced) is taken before it can live on it. `release()` stops and deletes the file.
 */
function keepFull(file: string): { written: () => number; release: () => void } {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  const topUp = () => {
    for (let size = chunk.length; size >= 1; ) {
      try {
        written += writeSync(fd, chunk, 0, size);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
        size = Math.floor(size / 2); // the tail: smaller and smaller writes, down to the last byte
      }
    }
  };
  topUp();
  const timer = setInterval(topUp, 10);
  return {
    written: () => written,
    release: () => {
      clearInterval(timer);
      closeSync(fd);
      rmSync(file);
    },
  };
}

/** Every JSON file the agent keeps in its state dir (outbox entries included) parses; no temp file is left. */
function assertStateFilesIntact(stateDir: string): void {
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
  for (const file of walk(stateDir)) {
    if (file.endsWith(".json")) expect(() => JSON.parse(readFileSync(file, "utf8")), file).not.toThrow();
  }
  const state = JSON.parse(readFileSync(join(stateDir, "state.json"), "utf8"));
  expect(state).toMatchObject({ v: 1, deviceId: expect.any(String) });
}

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);

describeUnless(missing(), "the agent's state dir full (tmpfs, ENOSPC)", () => {
  beforeAll(async () => {
    plane = await startControlPlane();
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] });
  }, 180_000);

  afterAll(async () => {
    releaseDisk?.();
    await Promise.all(agents.map((a) => a.kill("SIGKILL")));
    await plane?.proc.kill("SIGKILL");
    if (mountPoint) execFileSync("umount", ["-l", mountPoint]);
  });

  it("keeps its quarantine, keeps reporting and never tears a state file; pending writes land when space returns", async () => {
    const dir = tempDir("disk-full").path;
    const root = join(dir, "board");
    createSimulatedBoard(root, { model: MODEL, firmwareVersion: FIRMWARE });
    const stateDir = join(dir, "state");
    mkdirSync(stateDir, { mode: 0o700 });
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_BYTES},mode=0700`, "tmpfs", stateDir]);
    mountPoint = stateDir;
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "disk-full" });
    const configFile = writeAgentConfig(
      dir,
      simulatedAgentConfig(plane, { stateDir, boardRoot: root, model: MODEL, firmwareVersion: FIRMWARE }, {
        enrollmentToken: token.token,
        measure: { paths: ["/firmware"] },
        // 100 ms beats: the heartbeat seq reservation (one write per 100 beats) runs out while the disk is full.
        heartbeatIntervalMs: 100,
        guards: { intervalMs: 1000 },
        logLevel: "debug", // a heartbeat that cannot be sent is a debug line
      }),
    );
    await admin.post("/api/v1/reference-values", { model: MODEL, firmwareVersion: FIRMWARE, measurements: await measureWithAgent(configFile) });
    const first = startAgent("disk-full", configFile);
    agents.push(first);
    const id = await waitFor("the device key", () => loadDeviceKey(stateDir)?.deviceId);
    await waitFor("trusted", async () => (await device(id).catch(() => undefined))?.appraisal === "trusted", SLOW);
    await waitFor("the signed policy stored", () => existsSync(join(stateDir, "policy.json")), SLOW);

    // The fault: not one byte left on the state dir's filesystem.
    const filledAt = Date.now();
    await waitFor("nothing in the outbox (no entry to free a page on its PUBACK)", () => readdirSync(join(stateDir, "outbox")).filter((f) => f.endsWith(".json")).length === 0, SLOW);
    const full = keepFull(join(stateDir, "filler"));
    releaseDisk = full.release;
    expect(full.written()).toBeGreaterThan(0);
    expect(statfsSync(stateDir).bavail).toBe(0);

    // Quarantine on a full disk: enforced on the board, acked to the plane.
    await admin.post(`/api/v1/devices/${id}/quarantine`, { reason: "disk-full drill" });
    await waitFor("quarantined (acked by the agent)", async () => (await device(id)).containment === "quarantined", SLOW);
    expect(readFileSync(join(root, "run/miner.state"), "utf8").trim()).toBe("stopped");
    await first.waitForLine("the agent says what it cannot persist", (l) => l.msg === "state not persisted: the state dir is full or unwritable" && /ENOSPC/.test(String(l.err)), 30_000);
    assertStateFilesIntact(stateDir);

    // Still reporting: heartbeats (past the 100-beat reservation) and challenged evidence.
    await waitFor("seen more than a reservation block of heartbeats (100 x 100 ms) after the disk filled", async () =>
      Date.parse((await device(id)).lastSeenAt) > filledAt + 15_000, SLOW);
    expect(first.lines.filter((l) => l.msg === "heartbeat not sent")).toEqual([]);
    const seqBefore = (await device(id)).lastAppraisal.evidenceSeq as number;
    await admin.post(`/api/v1/devices/${id}/attest`, {});
    await waitFor("fresh evidence appraised", async () => ((await device(id)).lastAppraisal?.evidenceSeq ?? 0) > seqBefore, SLOW);
    expect(first.running).toBe(true);
    assertStateFilesIntact(stateDir);
    const landed = JSON.parse(readFileSync(join(stateDir, "state.json"), "utf8")).containment;

    // A restart on the full disk. Normally the persisted state never learnt the quarantine, and the plane re-asserts
    // it (HW-Q-1); if its record won a race for a freed page before the top-up, the agent re-applies it from state.
    await first.kill("SIGKILL");
    writeFileSync(join(root, "run/miner.state"), "running\n"); // a reboot starts the miner again
    const again = startAgent("disk-full-2", configFile);
    agents.push(again);
    if (landed === "none") {
      await waitFor("the quarantine re-asserted after the restart", async () =>
        ((await admin.get(`/api/v1/devices/${id}/history?limit=100`)).transitions as any[]).find((t) => t.machine === "containment" && /agent state lost/.test(t.reason)), SLOW);
    }
    await waitFor("the miner stopped again", () => readFileSync(join(root, "run/miner.state"), "utf8").trim() === "stopped", SLOW);
    await waitFor("quarantined again", async () => (await device(id)).containment === "quarantined", SLOW);
    expect(readFileSync(join(root, "run/miner.state"), "utf8").trim()).toBe("stopped");
    assertStateFilesIntact(stateDir);

    // A release on the full disk cannot be recorded: it is undone and refused, the board stays quarantined.
    await admin.post(`/api/v1/devices/${id}/release`, { reason: "released on a full disk" });
    const refused = await waitFor("the release answered", async () => {
      const { commands } = await admin.get(`/api/v1/devices/${id}/commands`);
      const release = (commands as { action: string; status: string; reason: string | null }[]).find((c) => c.action === "release");
      return release && release.status !== "pending" && release;
    }, SLOW);
    expect(refused).toMatchObject({ status: "failed", reason: expect.stringMatching(/release not recorded, quarantine kept: .*ENOSPC/) });
    await waitFor("back to quarantined", async () => (await device(id)).containment === "quarantined", SLOW);
    expect(readFileSync(join(root, "run/miner.state"), "utf8").trim()).toBe("stopped");

    // Space returns: the pending writes land without a restart.
    full.release();
    releaseDisk = null;
    await waitFor("state.json records the quarantine", () => JSON.parse(readFileSync(join(stateDir, "state.json"), "utf8")).containment === "quarantined", SLOW);
    await again.waitForLine("the agent says the state landed", (l) => l.msg === "state persisted again", 30_000);
    assertStateFilesIntact(stateDir);
    await admin.post(`/api/v1/devices/${id}/release`, { reason: "disk freed" });
    await waitFor("released", async () => (await device(id)).containment === "none", SLOW);
    expect(readFileSync(join(root, "run/miner.state"), "utf8").trim()).toBe("running");
    expect(JSON.parse(readFileSync(join(stateDir, "state.json"), "utf8")).containment).toBe("none");
    expect(again.running).toBe(true);
  }, 300_000);
});
