/**
 * HW-GUARD-1..9, no false alarms: "A clean simulated fleet of 100 miners running for a sustained period raises zero alerts."
 *
 * The real control plane (under Bun) with a fleet pool policy set through the operator API; 5 compiled agent
 * binaries and 95 in-process agents (the same Agent class, so the real guard modules, signed evidence, policy
 * store and MQTT session), each on its own simulated board with its own simulated cgminer API (the real JSON
 * protocol over TCP). Every device gets the policy signed, acknowledges it, and then runs at least
 * SUSTAINED_CYCLES guard cycles after that (counted on its miner's API log, not guessed with a clock). At the end:
 * no guard-alert event, no finding, every device trusted and not quarantined, every policy acknowledged.
 */
import { join } from "node:path";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../agent/src/config/index.js";
import { silentLogger } from "../../agent/src/log/index.js";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS } from "../../agent/src/platform/index.js";
import { Agent } from "../../agent/src/runtime/index.js";
import { SimMiner } from "../../agent/src/sim-miner/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { measureWithAgent, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const FLEET = 100;
const COMPILED = 5;
const MODEL = "S19";
const FIRMWARE = "2024.06.1";
const GUARD_INTERVAL_MS = 1_000;
/** Guard cycles every device must run after it acknowledged the policy. */
const SUSTAINED_CYCLES = 10;
const POOL = "stratum+tcp://pool.example.net:3333";
const WORKERS = "^farm\\.worker[0-9]+$";

interface FleetMiner {
  name: string;
  boardRoot: string;
  stateDir: string;
  sim: SimMiner;
  proc?: ManagedProcess;
  agent?: Agent;
  deviceId?: string;
  /** Requests reading the pools the simulated miner had answered when the device's policy was acknowledged. */
  poolQueriesAtAck?: number;
}

let plane: ControlPlane;
let admin: ApiClient;
const fleet: FleetMiner[] = [];

/** Requests that read the live pools: `pools` alone or joined (`summary+stats+pools`, one per guard cycle). */
const poolQueries = (miner: FleetMiner) => miner.sim.log.filter((line) => line.split("+").includes("pools")).length;

function agentConfig(miner: FleetMiner, enrollmentToken: string) {
  return {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    caCertHash: plane.caCertHash,
    stateDir: miner.stateDir,
    model: MODEL,
    firmwareVersion: FIRMWARE,
    enrollmentToken,
    platform: { kind: "simulated", root: miner.boardRoot },
    // The binaries and the in-process agents differ only in the agent binary: leave it out of the measurements.
    measure: { paths: [...SIMULATED_MEASURE_PATHS], includeAgentBinary: false },
    // The simulated miners share this test process with 95 agents: a generous answer timeout keeps a busy event
    // loop here from passing for a misbehaving miner (what a timeout reports) on a loaded two-core machine.
    guards: { intervalMs: GUARD_INTERVAL_MS, minerApi: { host: "127.0.0.1", port: miner.sim.port, timeoutMs: 15_000 } },
    heartbeatIntervalMs: 5_000,
    attestIntervalMs: 600_000,
    enrollPollMs: 300,
    reconnectMinMs: 100,
    reconnectMaxMs: 2_000,
  };
}

async function newMiner(name: string): Promise<FleetMiner> {
  const dir = tempDir(name).path;
  const boardRoot = join(dir, "board");
  createSimulatedBoard(boardRoot, { model: MODEL });
  const sim = new SimMiner({ root: boardRoot });
  await sim.start();
  const miner: FleetMiner = { name, boardRoot, stateDir: join(dir, "state"), sim };
  fleet.push(miner);
  return miner;
}

beforeAll(async () => {
  plane = await startControlPlane({ env: { HASHWARD_AUTO_QUARANTINE: "contraindicated" } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
});

afterAll(async () => {
  await Promise.all(fleet.map((miner) => miner.agent?.stop()));
  await Promise.all(fleet.map((miner) => miner.proc?.kill("SIGKILL")));
  await Promise.all(fleet.map((miner) => miner.sim.close()));
  await plane?.proc.kill("SIGKILL");
});

describe("guards on a clean fleet (real control plane, 5 agent binaries + 95 in-process agents, simulated miners)", () => {
  it(`${FLEET} clean miners under a pool policy run ${SUSTAINED_CYCLES} guard intervals and raise zero alerts`, async () => {
    // The operator sets the fleet's pool policy first: devices connecting later get it on hello.
    const change = await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: [POOL], workerPatterns: [WORKERS] });
    expect(change.delivery).toEqual({ version: null, devices: 0 });
    const policyVersion: number = change.policy.version;
    const { token } = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: FLEET, label: "fleet" });

    for (let i = 0; i < FLEET; i++) await newMiner(`fleet-${String(i).padStart(3, "0")}`);

    // Reference values the way an operator captures them: `measure` on a known-good board.
    const first = fleet[0]!;
    const firstConfig = writeAgentConfig(join(first.stateDir, ".."), agentConfig(first, token));
    const measured = await measureWithAgent(firstConfig);
    await admin.post("/api/v1/reference-values", { model: MODEL, firmwareVersion: FIRMWARE, measurements: measured });

    for (const [i, miner] of fleet.entries()) {
      if (i < COMPILED) {
        const configFile = writeAgentConfig(join(miner.stateDir, ".."), agentConfig(miner, token));
        miner.proc = startAgent(miner.name, configFile);
      } else {
        const config = parseAgentConfig({ ...agentConfig(miner, token), watch: false });
        // Pool names resolve without a network here; the binaries' lookups fail, which changes nothing on a clean board.
        miner.agent = new Agent(config, { log: silentLogger(), agentVersion: "0.1.0-fleet", lookup: async () => ["192.0.2.33"] });
      }
    }
    await Promise.all(fleet.filter((miner) => miner.agent).map((miner) => miner.agent!.start()));
    for (const miner of fleet) {
      miner.deviceId = miner.agent?.deviceId ?? (await waitFor(`${miner.name}'s key`, () => loadDeviceKey(miner.stateDir)?.deviceId));
    }
    expect(new Set(fleet.map((miner) => miner.deviceId)).size).toBe(FLEET);

    // Every device acknowledges the signed policy (delivered on its hello); from then on, count its guard cycles.
    await waitFor(
      "every device acknowledged the pool policy",
      async () => {
        let done = true;
        for (const miner of fleet) {
          if (miner.poolQueriesAtAck !== undefined) continue;
          const view = await admin.get(`/api/v1/devices/${miner.deviceId}/policy`);
          if (view.upToDate) miner.poolQueriesAtAck = poolQueries(miner);
          else done = false;
        }
        return done;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    for (const miner of fleet) {
      const view = await admin.get(`/api/v1/devices/${miner.deviceId}/policy`);
      expect(view).toMatchObject({ deliverable: true, lastFailure: null, upToDate: true, sources: { pools: { level: "default", policyId: change.policy.id } } });
      expect(view.acked.version).toBeGreaterThanOrEqual(policyVersion);
    }

    // The sustained period: every miner's API answers SUSTAINED_CYCLES more guard cycles (one `pools` each).
    await waitFor(
      `${SUSTAINED_CYCLES} guard cycles on every device after its policy`,
      () => fleet.every((miner) => poolQueries(miner) - miner.poolQueriesAtAck! >= SUSTAINED_CYCLES),
      { timeoutMs: SUSTAINED_CYCLES * GUARD_INTERVAL_MS * 6 + 30_000, intervalMs: 500 },
    );

    // Zero alerts: no guard-alert event from any device, no finding in any evidence, nobody untrusted or contained.
    const alerts: string[] = [];
    for (const miner of fleet) {
      const { events } = await admin.get(`/api/v1/devices/${miner.deviceId}/events?limit=1000`);
      for (const event of events.filter((e: { kind: string }) => e.kind === "guard-alert")) {
        alerts.push(`${miner.name} ${miner.proc ? "binary" : "in-process"} ${event.ts}: ${event.detail.guard} ${event.detail.subject}: ${event.detail.message}`);
      }
      expect(miner.agent?.guards?.findings ?? [], `${miner.name} findings`).toEqual([]);
    }
    expect(alerts).toEqual([]);
    const { devices } = await admin.get("/api/v1/devices?limit=1000");
    const ours = devices.filter((device: { deviceId: string }) => fleet.some((miner) => miner.deviceId === device.deviceId));
    expect(ours).toHaveLength(FLEET);
    for (const device of ours) {
      expect(device, device.deviceId).toMatchObject({ enrollment: "accepted", appraisal: "trusted", containment: "none", connected: true });
      expect(device.lastAppraisal.findings).toEqual([]);
      expect(device.telemetry?.activePool).toBe(POOL);
    }
    for (const miner of fleet.filter((m) => m.proc)) expect(miner.proc!.running, `${miner.name} still running`).toBe(true);
  }, 420_000);

  it("one miner hijacked over its API (addpool + switchpool) is quarantined by policy; the other 99 stay trusted", async () => {
    const victim = fleet[COMPILED + 7]!;
    for (const [command, parameter] of [["addpool", "stratum+tcp://evil.example:3333,thief.1,x"], ["switchpool", "1"]] as const) {
      const answer = await minerApi(victim.sim.port, command, parameter);
      expect(answer).toContain('"STATUS":"S"');
    }
    const view = await waitFor(
      "the hijacked miner quarantined",
      async () => {
        const device = await admin.get(`/api/v1/devices/${victim.deviceId}`);
        return device.containment === "quarantined" && device;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(view.appraisal).toBe("contraindicated");
    expect(view.lastAppraisal.findings).toContainEqual(
      expect.objectContaining({ guard: "pool-live", tier: "contraindicated", subject: "stratum+tcp://evil.example:3333" }),
    );
    const { events } = await admin.get(`/api/v1/devices/${victim.deviceId}/events?limit=100`);
    expect(events.filter((e: { kind: string; detail: { guard?: string } }) => e.kind === "guard-alert" && e.detail.guard === "pool-live")).toHaveLength(1);
    const history = await admin.get(`/api/v1/devices/${victim.deviceId}/history?limit=10`);
    expect(history.transitions).toContainEqual(expect.objectContaining({ machine: "containment", to: "quarantine_requested", actor: expect.objectContaining({ id: "policy" }) }));

    const { devices } = await admin.get("/api/v1/devices?limit=1000");
    const others = devices.filter((device: { deviceId: string }) => device.deviceId !== victim.deviceId && fleet.some((miner) => miner.deviceId === device.deviceId));
    expect(others).toHaveLength(FLEET - 1);
    for (const device of others) expect(device, device.deviceId).toMatchObject({ appraisal: "trusted", containment: "none" });
  }, 120_000);
});

/** One cgminer API request, as any host on the farm's LAN can send it. */
function minerApi(port: number, command: string, parameter: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.end(JSON.stringify({ command, parameter })));
    let answer = "";
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("utf8")));
    socket.on("close", () => resolve(answer.replace(/\0/g, "")));
    socket.on("error", reject);
  });
}
