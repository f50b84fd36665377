/**
 * End to end: a blind spot never reads as clean. The real plane (pool policy through its
 * API), the compiled agent on a simulated board and a simulated miner speaking the cgminer protocol.
 *  - HW-APPRAISE-3: a miner hijacked over its API from another process is quarantined; if its stop fails it
 *    stays contraindicated with a `miner-stop` finding, and if the stop works the device never reads trusted
 *    while quarantined (the live-pool view is "not observed", not clean).
 *  - HW-EVD-2: an agent that lost state.json (device.key kept) is held at unknown until it answers a fresh
 *    challenge, then judged on what it sees now; evidence signed before the reset stays a replay.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { createConnectToken, signObject } from "../../shared/index.js";
import { upTopic } from "../../shared/protocol/index.js";
import { ApiClient } from "../support/api.js";
import { GuardedFleet, hijackFromAnotherProcess, type GuardedBoard } from "../support/guarded-board.js";
import { loadDeviceKey } from "../support/device-key.js";
import { AGENT_BINARY, startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
const FIRMWARE = "2024.06.1";
const GOOD_POOL = "stratum+tcp://pool.example.net:3333";
const HIJACK_POOL = "stratum+tcp://hijack.example.org:443";
const SLOW = { timeoutMs: 60_000 };

let plane: ControlPlane;
let admin: ApiClient;
const agents: ManagedProcess[] = [];

let fleet: GuardedFleet;

/** A guarded board (reference values are registered in beforeAll, measured before any connection opens). */
const startBoard = (name: string): Promise<GuardedBoard> => fleet.start(name, { agentConfig: { logLevel: "debug" }, registerReference: false, timeoutMs: SLOW.timeoutMs });

/** The attack: addpool + switchpool from another process on the "LAN", over the real protocol. */
const hijack = (port: number): Promise<void> => hijackFromAnotherProcess(port, HIJACK_POOL, "thief.w1");

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);
const appraisalHistory = async (id: string) =>
  ((await admin.get(`/api/v1/devices/${id}/history?limit=100`)).transitions as any[]).filter((t) => t.machine === "appraisal").reverse();
const guardCycles = (board: GuardedBoard) => board.proc.lines.filter((l) => l.msg === "guard cycle").length;
/** Evidence messages the plane refused so far (every reason), from its Prometheus metrics. */
async function rejectedEvidence(): Promise<number> {
  const text = (await admin.request("GET", "/metrics")).body as string;
  return [...text.matchAll(/^hashward_mqtt_messages_rejected_total\{[^}]*kind="evidence"[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Reference values of the simulated firmware, measured by the compiled agent before any HTTP connection is open. */
function measureReference(): unknown {
  const dir = tempDir("reference").path;
  const root = join(dir, "board");
  createSimulatedBoard(root, { model: MODEL, firmwareVersion: FIRMWARE });
  const config = simulatedAgentConfig({ httpUrl: "http://127.0.0.1:9", mqttUrl: "mqtt://127.0.0.1:9" }, { stateDir: join(dir, "state"), boardRoot: root, model: MODEL, firmwareVersion: FIRMWARE }, { measure: { paths: ["/firmware"] } });
  return JSON.parse(execFileSync(AGENT_BINARY, ["measure", "--config", writeAgentConfig(dir, config)], { encoding: "utf8" }));
}

beforeAll(async () => {
  const measured = measureReference();
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  fleet = new GuardedFleet(plane, admin);
  await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: [GOOD_POOL], workerPatterns: ["^farm\\.worker\\d+$"] });
  await admin.post("/api/v1/reference-values", { model: MODEL, firmwareVersion: FIRMWARE, measurements: measured });
}, 180_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.kill("SIGKILL")));
  await fleet?.close();
  await plane?.proc.kill("SIGKILL");
});

describe("HW-APPRAISE-3: quarantine does not hide its own cause", () => {
  it("a miner that ignores the stop keeps hashing on the hijack pool: stays contraindicated, a miner-stop finding appears", async () => {
    const board = await startBoard("stop-fails");
    writeFileSync(join(board.root, "run/miner-stop.fault"), "ignore-stop\n"); // the stop will not stop it
    await hijack(board.miner.port);
    await waitFor("quarantined by policy", async () => (await device(board.id)).containment === "quarantined", SLOW);
    expect(readFileSync(join(board.root, "run/miner.state"), "utf8").trim()).toBe("stopped");
    const view = await waitFor("a miner-stop finding in the verdict", async () => {
      const d = await device(board.id);
      return (d.lastAppraisal?.findings ?? []).some((f: any) => f.guard === "miner-stop") && d;
    }, SLOW);
    expect(view.appraisal).toBe("contraindicated");
    expect(view.lastAppraisal.findings).toContainEqual(
      expect.objectContaining({ guard: "miner-stop", tier: "contraindicated", seen: expect.objectContaining({ activePool: HIJACK_POOL }) }),
    );
    expect(view.lastAppraisal.findings).toContainEqual(expect.objectContaining({ guard: "pool-live", subject: HIJACK_POOL }));
    const events = (await admin.get(`/api/v1/devices/${board.id}/events`)).events as any[];
    expect(events.filter((e) => e.kind === "guard-alert").map((e) => e.detail.guard)).toContain("miner-stop");
    expect(board.miner.livePools().find((p) => p.active)?.url).toBe(HIJACK_POOL); // still mining for the thief
  }, 180_000);

  it("a stop that works: the device never reads trusted while quarantined (the live pools are 'not observed')", async () => {
    const board = await startBoard("stop-works");
    await hijack(board.miner.port);
    await waitFor("quarantined by policy", async () => (await device(board.id)).containment === "quarantined", SLOW);
    const blind = await waitFor("evidence appraised under containment with the miner API not observed", async () => {
      const d = await device(board.id);
      return (d.lastAppraisal?.underContainment?.notObserved ?? []).some((o: any) => o.observation === "miner-api") && d;
    }, SLOW);
    expect(blind.appraisal).toBe("contraindicated");
    // The agent keeps the live-pool finding it cannot re-check (HW-MINER-1), so it stays in the verdict.
    expect(blind.lastAppraisal.findings).toContainEqual(expect.objectContaining({ guard: "pool-live", subject: HIJACK_POOL }));
    // Several more guard cycles on the stopped miner (where the verdict used to flip back to trusted).
    const seen = guardCycles(board);
    await waitFor("three more guard cycles", () => guardCycles(board) >= seen + 3, SLOW);
    const after = await device(board.id);
    expect(after).toMatchObject({ appraisal: "contraindicated", containment: "quarantined" });
    const history = await appraisalHistory(board.id);
    const quarantinedAt = history.findIndex((t) => t.to === "contraindicated");
    expect(quarantinedAt).toBeGreaterThanOrEqual(0);
    expect(history.slice(quarantinedAt).map((t) => t.to)).not.toContain("trusted");

    // An agent restarted under quarantine has no memory of the live pool: the plane holds the finding itself.
    await board.proc.kill("SIGTERM");
    const restarted = startAgent("stop-works-2", board.configFile);
    agents.push(restarted);
    const lastSeq = after.lastAppraisal.evidenceSeq as number;
    const held = await waitFor("the plane holding the live-pool finding for the restarted agent", async () => {
      const d = await device(board.id);
      return d.lastAppraisal.evidenceSeq > lastSeq && (d.lastAppraisal.underContainment?.held ?? []).length > 0 && d;
    }, SLOW);
    expect(held.appraisal).toBe("contraindicated");
    expect(held.lastAppraisal.underContainment.held).toContainEqual(expect.objectContaining({ guard: "pool-live", subject: HIJACK_POOL }));
    expect((await appraisalHistory(board.id)).slice(quarantinedAt).map((t) => t.to)).not.toContain("trusted");
  }, 240_000);
});

describe("HW-EVD-2: lost agent state does not show an old verdict as current", () => {
  it("state.json deleted (device.key kept): held unknown, challenged, then contraindicated for the changed pool; a pre-reset evidence stays a replay", async () => {
    const board = await startBoard("lost-state");
    const key = loadDeviceKey(board.stateDir)!;
    const before = await device(board.id);
    // What a thief of the key could have kept from before the reset: evidence signed then, with a seq that the
    // new sequence will soon be below (so only the reset rule, not the seq, can refuse it later).
    const lastSeq = before.lastAppraisal.evidenceSeq as number;
    const capturedBeforeReset = JSON.stringify(
      signObject(
        { v: 1, type: "evidence", deviceId: board.id, seq: lastSeq + 20, nonce: null, reason: "timer", ts: Date.now(), model: MODEL, firmwareVersion: FIRMWARE, agentVersion: "0.1.0", bootId: "captured", measurements: [], findings: [] },
        key.privateKey,
      ),
    );

    await board.proc.kill("SIGTERM");
    rmSync(join(board.stateDir, "state.json"));
    expect(existsSync(join(board.stateDir, "device.key"))).toBe(true);
    const config = JSON.parse(readFileSync(join(board.root, "config/cgminer.conf"), "utf8"));
    writeFileSync(join(board.root, "config/cgminer.conf"), JSON.stringify({ ...config, pools: [{ url: HIJACK_POOL, user: "thief.w1", pass: "x" }] }, null, 2));
    const restarted = startAgent("lost-state-2", board.configFile);
    agents.push(restarted);
    await restarted.waitForLine("the agent notices its lost state", (l) => typeof l.msg === "string" && l.msg.startsWith("state.json was missing"), 60_000);

    const held = await waitFor("the verdict held at unknown by a sequence reset", async () => (await appraisalHistory(board.id)).find((t) => /^sequence reset: /.test(t.reason)), SLOW);
    expect(held).toMatchObject({ from: "trusted", to: "unknown" });
    const judged = await waitFor("contraindicated for the changed pool", async () => {
      const d = await device(board.id);
      return d.appraisal === "contraindicated" && d;
    }, SLOW);
    expect(judged.lastAppraisal.findings).toContainEqual(expect.objectContaining({ guard: "pool-config", tier: "contraindicated" }));
    const history = await appraisalHistory(board.id);
    const heldAt = history.findIndex((t) => /^sequence reset: /.test(t.reason));
    const rebasedAt = history.findIndex((t) => /^fresh challenge answer after a sequence reset/.test(t.reason));
    expect(rebasedAt).toBeGreaterThan(heldAt); // unknown first, judged only after the challenge answer
    expect(history.slice(heldAt + 1, rebasedAt).map((t) => t.to)).toEqual([]);

    // The pre-reset evidence, replayed by the key's thief after the new sequence began: refused, nothing changes.
    await restarted.kill("SIGKILL");
    const client = await mqtt.connectAsync(plane.mqttUrl, {
      protocolVersion: 4, clientId: board.id, username: board.id, password: createConnectToken(board.id, key.privateKey, Date.now()), reconnectPeriod: 0, ca: plane.caPem ?? undefined,
    });
    try {
      const current = await device(board.id);
      expect(current.lastAppraisal.evidenceSeq).toBeLessThan(lastSeq + 20);
      const rejectedBefore = await rejectedEvidence();
      await client.publishAsync(upTopic(board.id, "evidence"), capturedBeforeReset, { qos: 1 });
      await waitFor("replay refused", async () => (await rejectedEvidence()) > rejectedBefore, SLOW);
      const after = await device(board.id);
      expect(after.lastAppraisal).toEqual(current.lastAppraisal);
      expect(after.appraisal).toBe("contraindicated");
    } finally {
      await client.endAsync(true);
    }
  }, 240_000);

  it("HW-Q-1: a quarantined board whose state.json is deleted (and rebooted) is quarantined again by the plane", async () => {
    const board = await startBoard("lost-quarantine");
    await admin.post(`/api/v1/devices/${board.id}/quarantine`, { reason: "incident drill" });
    await waitFor("quarantined", async () => (await device(board.id)).containment === "quarantined", SLOW);
    await board.proc.kill("SIGTERM");
    rmSync(join(board.stateDir, "state.json"));
    writeFileSync(join(board.root, "run/miner.state"), "running\n"); // a reboot starts the miner again
    const restarted = startAgent("lost-quarantine-2", board.configFile);
    agents.push(restarted);
    const again = await waitFor("the quarantine sent again", async () =>
      ((await admin.get(`/api/v1/devices/${board.id}/history?limit=100`)).transitions as any[]).find((t) => t.machine === "containment" && /agent state lost/.test(t.reason)), SLOW);
    expect(again).toMatchObject({ from: "quarantined", to: "quarantine_requested" });
    await waitFor("quarantined again, acked by the agent", async () => (await device(board.id)).containment === "quarantined", SLOW);
    expect(readFileSync(join(board.root, "run/miner.state"), "utf8").trim()).toBe("stopped");
  }, 240_000);
});
