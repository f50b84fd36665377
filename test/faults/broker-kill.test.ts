/**
 * Fault campaign (docs/reliability.md "Plane-side faults"): the broker killed during a fan-out. The MQTT broker is embedded in the plane
 * (aedes), so this is the plane process SIGKILLed while one bulk quarantine fans out to two compiled agents and
 * FAULT_KILL_DEVICES lightweight devices (default 1,000; support/fleet.ts), each of which also has a guard-alert
 * event in flight (killed as soon as the first device executes its command, while the API call is still
 * publishing), then started again on the same data dir and ports. On PGlite (its write-ahead log replayed)
 * and on the test's own PostgreSQL cluster. Rules HW-FAULT-2 and HW-FAULT-4 (docs/rules.md).
 *
 * Asserted: the devices reconnect by themselves and every quarantine command is delivered and acked after the
 * restart (executed exactly once: redeliveries re-ack) or, for the devices parked offline before the kill,
 * recorded as expired with containment back to `none`: never lost silently, never applied twice; and every
 * event a device saw PUBACKed (it forgot it then) is stored and announced exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listAllDevices } from "../../bench/support/plane.js";
import { mapPool } from "../../bench/support/report.js";
import { ApiClient } from "../support/api.js";
import { pgClusterMissing, startPgCluster, type PgCluster } from "../support/pg-cluster.js";
import { requireAgentBinary, restartControlPlane, startControlPlane, type ControlPlane } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";
import { endCampaign, executions, minerState, startFaultAgent, type FaultAgent } from "./support/agents.js";
import { Fleet, type FleetDevice } from "./support/fleet.js";
import { ResumingEventStream } from "./support/sse.js";

const DEVICES = Number(process.env.FAULT_KILL_DEVICES ?? 1000);
/** Devices taken offline before the kill and never back: their commands must end `expired`. */
const PARKED = 5;
/** Long enough for every online device to get its command after a restart on a loaded machine. */
const COMMAND_TTL_MS = 90_000;
const LONG = 300_000;

interface CommandView {
  seq: number;
  action: string;
  status: string;
  ackedAt: string | null;
}

function campaign(backend: "pglite" | "postgres"): void {
  let cluster: PgCluster | undefined;
  let plane: ControlPlane | undefined;
  let fleet: Fleet | undefined;
  let stream: ResumingEventStream | undefined;
  const agents: FaultAgent[] = [];
  let admin: ApiClient;

  beforeAll(async () => {
    requireAgentBinary();
    const env: Record<string, string> = { HASHWARD_COMMAND_TTL_MS: String(COMMAND_TTL_MS), HASHWARD_LOG_LEVEL: "info" };
    if (backend === "postgres") {
      cluster = await startPgCluster("fault-kill-pg");
      env.DATABASE_URL = await cluster.createDatabase("hashward");
    }
    plane = await startControlPlane({ env });
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
  }, LONG);

  afterAll(() => endCampaign({ stream, fleet, agents, plane, cluster }), LONG);

  it(`every quarantine command is delivered after the restart or recorded as expired, none applied twice (${DEVICES} devices)`, { timeout: 900_000 }, async () => {
    const token = (await admin.post("/api/v1/enrollment-tokens", { ttlMs: 3_600_000, maxUses: DEVICES + 10, label: "fault" })).token as string;
    agents.push(await startFaultAgent(plane!, `kill-${backend}-agent-1`, token), await startFaultAgent(plane!, `kill-${backend}-agent-2`, token));
    fleet = new Fleet(plane!, DEVICES);
    await fleet.enroll(token);
    await fleet.connect();
    fleet.startHeartbeats(2000);
    const everyone = [...fleet.ids, ...agents.map((agent) => agent.deviceId)];
    const ours = new Set(everyone);
    await waitFor("every device connected", async () => (await listAllDevices(admin, everyone.length)).filter((row) => ours.has(row.deviceId) && row.connected).length === everyone.length, { timeoutMs: LONG, intervalMs: 500 });
    const parked: FleetDevice[] = fleet.devices.slice(0, PARKED);
    await fleet.park(parked);

    // The fan-out and a burst of events; the plane dies as soon as the first device executes its command: the
    // API call is still publishing (it answers after the last publish), so most commands are committed but not
    // yet delivered, and acks and events are in flight. The operator may get no answer: what was committed counts.
    const eventIds = fleet.sendEvents(`kill-${backend}`);
    const call = admin.post("/api/v1/quarantine", { deviceIds: everyone, reason: "fault campaign: fleet-wide quarantine, broker killed" }).then(() => "answered", () => "no answer");
    await waitFor("the first device executing", () => fleet!.devices.some((d) => d.executions.size > 0), { timeoutMs: LONG, intervalMs: 5 });
    await plane!.proc.kill("SIGKILL");
    const killedAt = Date.now();
    const executedAtKill = fleet.devices.filter((d) => d.executions.size > 0).length;
    const pubackedAtKill = fleet.devices.filter((d) => d.outbox.length === 0).length;
    const apiCall = await call;

    plane = await restartControlPlane(plane!);
    const restartedAt = Date.now();
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    stream = new ResumingEventStream(`${plane.httpUrl}/api/v1/events/stream?kind=guard.alert`, plane.adminToken, 0);

    // Devices come back by themselves; every online device ends quarantined.
    const online = everyone.filter((id) => !parked.some((device) => device.deviceId === id));
    await waitFor("every online device quarantined", async () => {
      const rows = await listAllDevices(admin, everyone.length, "&containment=quarantined");
      return rows.filter((row) => ours.has(row.deviceId)).length === online.length;
    }, { timeoutMs: LONG, intervalMs: 500 });
    const quarantinedAfterMs = Date.now() - restartedAt;
    await waitFor("every online outbox emptied", () => fleet!.devices.filter((d) => !parked.includes(d) && d.outbox.length > 0).length === 0, { timeoutMs: LONG, intervalMs: 200 });

    // Parked devices: their commands expire and containment falls back (HW-TRUST-3): recorded, not lost.
    await waitFor("the parked devices' commands expired", async () => {
      const states = await Promise.all(parked.map((device) => admin.get(`/api/v1/devices/${device.deviceId}`)));
      return states.every((state: { containment: string }) => state.containment === "none");
    }, { timeoutMs: COMMAND_TTL_MS + LONG, intervalMs: 1000 });

    const commandsOf = new Map<string, CommandView[]>();
    await mapPool(everyone, 8, async (id) => {
      const { commands } = await admin.get<{ commands: CommandView[] }>(`/api/v1/devices/${id}/commands?limit=50`);
      commandsOf.set(id, commands.filter((command) => command.action === "quarantine"));
    });
    for (const id of everyone) {
      const commands = commandsOf.get(id)!;
      expect(commands, id).toHaveLength(1);
      const expected = parked.some((device) => device.deviceId === id) ? "expired" : "acked";
      expect(commands[0]!.status, id).toBe(expected);
    }
    for (const device of fleet.devices) {
      if (parked.includes(device)) {
        expect(device.executions.size, device.deviceId).toBe(0);
        continue;
      }
      expect([...device.executions.values()], device.deviceId).toEqual([1]);
      expect(device.refused, device.deviceId).toEqual([]);
    }
    for (const agent of agents) {
      expect(executions(agent, "quarantine")).toHaveLength(1);
      expect(minerState(agent)).toBe("stopped");
    }
    const parkedHistory = await admin.get<{ transitions: Array<{ machine: string; to: string; reason: string }> }>(`/api/v1/devices/${parked[0]!.deviceId}/history?limit=20`);
    expect(parkedHistory.transitions.some((t) => t.machine === "containment" && t.to === "none" && /expired/.test(t.reason))).toBe(true);

    // Events: every one an online device saw PUBACKed is stored and announced once (guard.alert carries its id).
    const delivered = fleet.devices.filter((d) => !parked.includes(d)).flatMap((d) => [...d.puback].filter((key) => key.startsWith(`kill-${backend}-`)));
    expect(delivered).toHaveLength(DEVICES - PARKED);
    const expectedIds = new Set(eventIds.filter((id) => delivered.includes(id)));
    await waitFor("every delivered event announced", () => new Set(stream!.events.map((event) => String(event.data.eventId))).size >= expectedIds.size, { timeoutMs: 120_000, intervalMs: 200 });
    const announced = stream.events.map((event) => String(event.data.eventId)).filter((id) => id.startsWith(`kill-${backend}-`));
    expect(new Set(announced)).toEqual(expectedIds);
    expect(announced).toHaveLength(expectedIds.size);

    console.log(`fault-figures ${JSON.stringify({
      campaign: `broker-kill-${backend}`, devices: everyone.length, parked: PARKED, apiCall, executedAtKill, pubackedAtKill,
      restartMs: restartedAt - killedAt, quarantinedAfterMs, commandsLost: 0, commandsDoubled: 0, eventsLost: 0,
    })}`);
  });
}

describe("fault: the plane (embedded broker) SIGKILLed during a fan-out, on PGlite", () => campaign("pglite"));
describeUnless(pgClusterMissing(), "fault: the plane (embedded broker) SIGKILLed during a fan-out, on PostgreSQL", () => campaign("postgres"));
