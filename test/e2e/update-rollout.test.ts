/**
 * Staged rollouts end to end: the real control plane (TUF repository + rollout engine), real agent binaries on
 * simulated A/B boards, real MQTT. Releases are signed offline with the release CLI and uploaded through the API.
 *  - a rollout over four boards advances group by group on success and completes, every board on the new slot;
 *  - a rollout whose target fails on the devices (another model; a failing health check) stops by itself at its
 *    error threshold: later groups never get a command and their boards stay unchanged.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { createReleaser, type Releaser } from "../support/release.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";

interface Board {
  name: string;
  boardRoot: string;
  stateDir: string;
  proc?: ManagedProcess;
  deviceId: string;
}

let plane: ControlPlane;
let admin: ApiClient;
let releaser: Releaser;
const boards: Board[] = [];

const activeSlot = (board: Board) => readFileSync(join(board.boardRoot, "boot/active"), "utf8").trim();
const slotVersion = (board: Board, slot: string) => readFileSync(join(board.boardRoot, "slots", slot, "firmware/etc/version"), "utf8").trim();

async function startBoard(name: string, enrollmentToken: string): Promise<Board> {
  const dir = tempDir(name).path;
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: MODEL, firmwareVersion: "1.0.0", slots: true });
  const stateDir = join(dir, "state");
  const configFile = writeAgentConfig(
    dir,
    simulatedAgentConfig(plane, { stateDir, boardRoot, model: MODEL, firmwareVersion: "1.0.0" }, {
      enrollmentToken,
      measure: { paths: ["/firmware", "/config"] },
      heartbeatIntervalMs: 1000,
      update: { trustedRootFile: releaser.rootFile },
    }),
  );
  const proc = startAgent(name, configFile);
  const deviceId = await waitFor(`${name}'s key`, () => loadDeviceKey(stateDir)?.deviceId);
  const board: Board = { name, boardRoot, stateDir, proc, deviceId };
  boards.push(board);
  return board;
}

async function rolloutUntil(id: string, what: string, done: (r: any) => boolean, timeoutMs = 60_000): Promise<any> {
  return waitFor(what, async () => {
    const rollout = await admin.get(`/api/v1/rollouts/${id}`);
    return done(rollout) && rollout;
  }, { timeoutMs, intervalMs: 200 });
}

beforeAll(async () => {
  plane = await startControlPlane({ env: { HASHWARD_ROLLOUT_TICK_MS: "200" } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  releaser = await createReleaser(tempDir("releaser").path, admin);
  await releaser.publish({ name: "fw-s19-2.0.0", model: MODEL, version: "2.0.0" });
  const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 10, label: "rollout e2e" });
  await Promise.all(["board-1", "board-2", "board-3", "board-4"].map((name) => startBoard(name, token.token)));
  await waitFor("all boards connected", async () => {
    const { devices } = await admin.get("/api/v1/devices?enrollment=accepted");
    return boards.every((b) => devices.some((d: any) => d.deviceId === b.deviceId && d.connected)) || undefined;
  }, { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  await Promise.all(boards.map((board) => board.proc?.kill("SIGKILL")));
  await plane?.proc.kill("SIGKILL");
});

describe("rollouts (real plane, real agents, signed releases)", () => {
  it("advances group by group on success and completes with every board on the new firmware", async () => {
    const created = await admin.post("/api/v1/rollouts", {
      targetName: "fw-s19-2.0.0",
      selector: { model: MODEL },
      groups: [{ size: 1 }, { percent: 25 }],
      successThreshold: 100,
      errorThreshold: 50,
    });
    expect(created.groupStatus.map((g: any) => g.size)).toEqual([1, 1, 2]);
    // Only the first group is told at first.
    const firstGroup = created.devices.filter((d: any) => d.group === 0).map((d: any) => d.deviceId);
    expect(created.devices.filter((d: any) => d.status === "issued").map((d: any) => d.deviceId)).toEqual(firstGroup);

    const advanced = await rolloutUntil(created.id, "the rollout to reach group 1", (r) => r.currentGroup >= 1);
    expect(advanced.devices.find((d: any) => d.deviceId === firstGroup[0]).status).toBe("succeeded");

    const completed = await rolloutUntil(created.id, "the rollout to complete", (r) => r.state !== "running", 90_000);
    expect(completed.state).toBe("completed");
    expect(completed.devices.map((d: any) => d.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    for (const board of boards) {
      expect(activeSlot(board)).toBe("b");
      expect(slotVersion(board, "b")).toBe(`${MODEL} 2.0.0`);
    }
    const events = await admin.get(`/api/v1/devices/${firstGroup[0]}/events?limit=50`);
    const phases = events.events.filter((e: any) => e.kind === "update-progress").map((e: any) => e.detail.phase);
    expect(phases).toContain("committed");
  }, 120_000);

  it("stops by itself at the error threshold when devices refuse the target; later groups are never told", async () => {
    // Signed correctly, but for another model: every S19 refuses it (and stays unchanged).
    await releaser.publish({ name: "fw-l7-3.0.0", model: "L7", version: "3.0.0" });
    const created = await admin.post("/api/v1/rollouts", {
      targetName: "fw-l7-3.0.0",
      selector: { model: MODEL },
      groups: [{ size: 2 }],
      successThreshold: 100,
      errorThreshold: 50,
    });
    const stopped = await rolloutUntil(created.id, "the rollout to stop", (r) => r.state !== "running");
    expect(stopped.state).toBe("stopped");
    expect(stopped.reason).toMatch(/error threshold/);
    const failed = stopped.devices.filter((d: any) => d.status === "failed");
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0].reason).toMatch(/model|L7|S19/i);
    const later = stopped.devices.filter((d: any) => d.group === 1);
    expect(later.map((d: any) => d.status)).toEqual(["cancelled", "cancelled"]);
    for (const d of later) {
      const { commands } = await admin.get(`/api/v1/devices/${d.deviceId}/commands`);
      expect(commands.filter((c: any) => c.params.rolloutId === created.id)).toEqual([]);
    }
    for (const board of boards) expect(activeSlot(board)).toBe("b");
  }, 120_000);

  it("stops when the new firmware fails its health check; the boards roll back to the good slot", async () => {
    await releaser.publish({ name: "fw-s19-2.1.0-bad", model: MODEL, version: "2.1.0", healthy: false });
    const created = await admin.post("/api/v1/rollouts", {
      targetName: "fw-s19-2.1.0-bad",
      selector: { deviceIds: boards.map((b) => b.deviceId) },
      groups: [{ size: 1 }],
      successThreshold: 100,
      errorThreshold: 100,
    });
    const stopped = await rolloutUntil(created.id, "the rollout to stop", (r) => r.state !== "running");
    expect(stopped.state).toBe("stopped");
    const [tried] = stopped.devices.filter((d: any) => d.group === 0);
    expect(tried.status).toBe("failed");
    expect(tried.reason).toMatch(/self-test|health/i);
    expect(stopped.devices.filter((d: any) => d.group === 1).every((d: any) => d.status === "cancelled")).toBe(true);
    const board = boards.find((b) => b.deviceId === tried.deviceId) as Board;
    expect(activeSlot(board)).toBe("b");
    expect(slotVersion(board, "b")).toBe(`${MODEL} 2.0.0`);
  }, 120_000);
});
