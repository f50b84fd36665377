/**
 * Fault campaign (docs/reliability.md "Plane-side faults"): PostgreSQL restarted under load. The real plane (Bun, embedded aedes, TLS) runs
 * on the test's OWN PostgreSQL cluster (test/support/pg-cluster.ts; the machine's server is never touched) while
 * FAULT_DEVICES lightweight devices (default 2,000; real keys, signed heartbeats, an agent-like outbox, see
 * support/fleet.ts) and two compiled agents are connected, and one bulk quarantine fans out to all of them.
 * While the acks come back, PostgreSQL is stopped the hard way (`pg_ctl stop -m immediate`: every backend killed,
 * WAL replay at the next start), a guard-alert event is sent by every device while it is down, and it is started
 * again. Rules HW-FAULT-1..3 (docs/rules.md); figures go to docs/reliability.md.
 *
 * Asserted, without restarting the plane:
 *   - /healthz says `database: "down"` while it is down and `"up"` after; new writes succeed;
 *   - every device got exactly one quarantine command (one row, one execution; redeliveries re-ack), its ack is
 *     persisted, containment `quarantined` with exactly one transition and one `device.quarantined` event;
 *   - every event a device saw PUBACKed is stored once (and announced once as `guard.alert`);
 *   - an operator's event stream that resumes with Last-Event-ID saw every committed plane event once, in its
 *     commit order (HW-SSE-2);
 *   - heartbeats are persisted again after the restart (last-seen moves for every device).
 */
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ApiClient } from "../support/api.js";
import { pgClusterMissing, startPgCluster, type PgCluster } from "../support/pg-cluster.js";
import { requireAgentBinary, startControlPlane, type ControlPlane } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";
import { endCampaign, executions, minerState, startFaultAgent, type FaultAgent } from "./support/agents.js";
import { Fleet } from "./support/fleet.js";
import { ResumingEventStream } from "./support/sse.js";

const DEVICES = Number(process.env.FAULT_DEVICES ?? 2000);
const LONG = 300_000;

let cluster: PgCluster | undefined;
let plane: ControlPlane | undefined;
let fleet: Fleet | undefined;
let stream: ResumingEventStream | undefined;
const agents: FaultAgent[] = [];
let db: pg.Pool;

afterAll(() => endCampaign({ stream, fleet, agents, plane, cluster, beforeCluster: () => db?.end().catch(() => undefined) }), LONG);

describeUnless(pgClusterMissing(), "fault: PostgreSQL restarted during heartbeats and a quarantine fan-out", () => {
  let admin: ApiClient;

  beforeAll(async () => {
    requireAgentBinary();
    cluster = await startPgCluster("fault-pg");
    const url = await cluster.createDatabase("hashward");
    plane = await startControlPlane({ env: { DATABASE_URL: url, HASHWARD_COMMAND_TTL_MS: "600000", HASHWARD_LOG_LEVEL: "info" } });
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    db = new pg.Pool({ connectionString: url, max: 2 });
    db.on("error", () => undefined);
  }, LONG);

  it(`no committed event lost, no command lost or doubled, the plane recovers without a restart (${DEVICES} devices)`, { timeout: 900_000 }, async () => {
    const token = (await admin.post("/api/v1/enrollment-tokens", { ttlMs: 3_600_000, maxUses: DEVICES + 10, label: "fault" })).token as string;
    agents.push(await startFaultAgent(plane!, "fault-agent-1", token), await startFaultAgent(plane!, "fault-agent-2", token));
    fleet = new Fleet(plane!, DEVICES);
    await fleet.enroll(token);
    await fleet.connect();
    fleet.startHeartbeats(2000);
    const everyone = [...fleet.ids, ...agents.map((agent) => agent.deviceId)];
    await waitFor("every device connected", async () => {
      const { rows } = await db.query<{ n: string }>("select count(*) as n from devices where connected and id = any($1)", [everyone]);
      return Number(rows[0]!.n) === everyone.length;
    }, { timeoutMs: LONG, intervalMs: 500 });
    stream = new ResumingEventStream(`${plane!.httpUrl}/api/v1/events/stream?kind=device.quarantined,guard.alert`, plane!.adminToken);
    await waitFor("event stream connected", async () => (await admin.request("GET", "/metrics")).body.includes("hashward_sse_clients 1"), { timeoutMs: 60_000 });

    // The fan-out: one API call, then the database goes down while acks are coming back.
    const beforeFault = new Date();
    await admin.post("/api/v1/quarantine", { deviceIds: everyone, reason: "fault campaign: fleet-wide quarantine" });
    await waitFor("the first acks on their way", () => fleet!.devices.filter((d) => d.executions.size > 0).length >= DEVICES / 10, { timeoutMs: LONG, intervalMs: 20 });
    const stoppedAt = Date.now();
    await cluster!.stop("immediate");
    await waitFor("/healthz reports the database down", async () => {
      const { status, body } = await new ApiClient(plane!.httpUrl).request("GET", "/healthz");
      return status === 200 && body.database === "down";
    }, { timeoutMs: 60_000, intervalMs: 100 });
    const eventIds = fleet.sendEvents("pg-down");
    // Operators keep working: a write while the database is down is refused as unavailable (503), not a 500.
    const refused = await admin.request("POST", "/api/v1/enrollment-tokens", { ttlMs: 60_000, maxUses: 1, label: "during outage" });
    expect(refused.status).toBe(503);
    await cluster!.start();
    const startedAt = Date.now();

    await waitFor("/healthz reports the database up", async () => (await new ApiClient(plane!.httpUrl).request("GET", "/healthz")).body.database === "up", { timeoutMs: 120_000, intervalMs: 100 });
    const healthyAfterMs = Date.now() - startedAt;
    expect((await admin.post("/api/v1/enrollment-tokens", { ttlMs: 60_000, maxUses: 1, label: "after outage" })).token).toMatch(/^hwe_/);

    // Every command executed once and its ack persisted; every PUBACKed event stored.
    await waitFor("every device quarantined", async () => {
      const { rows } = await db.query<{ n: string }>("select count(*) as n from devices where containment = 'quarantined' and id = any($1)", [everyone]);
      return Number(rows[0]!.n) === everyone.length;
    }, { timeoutMs: LONG, intervalMs: 500 });
    const quarantinedAfterMs = Date.now() - startedAt;
    await waitFor("every outbox emptied", () => fleet!.unsent() === 0, { timeoutMs: LONG, intervalMs: 200 });

    const commands = await db.query<{ device_id: string; n: string; acked: string }>(
      "select device_id, count(*) as n, count(*) filter (where status = 'acked' and ack is not null) as acked from commands where action = 'quarantine' and device_id = any($1) group by device_id",
      [everyone],
    );
    expect(commands.rows.length).toBe(everyone.length);
    expect(commands.rows.filter((row) => row.n !== "1" || row.acked !== "1")).toEqual([]);
    for (const device of fleet.devices) {
      expect([...device.executions.values()], device.deviceId).toEqual([1]);
      expect(device.refused, device.deviceId).toEqual([]);
    }
    for (const agent of agents) {
      expect(executions(agent, "quarantine")).toHaveLength(1);
      expect(minerState(agent)).toBe("stopped");
    }

    const transitions = await db.query<{ device_id: string; n: string }>(
      "select device_id, count(*) as n from transitions where machine = 'containment' and to_state = 'quarantined' and device_id = any($1) group by device_id",
      [everyone],
    );
    expect(transitions.rows.filter((row) => row.n !== "1")).toEqual([]);
    expect(transitions.rows.length).toBe(everyone.length);

    const stored = await db.query<{ id: string }>("select id from device_events where id = any($1)", [eventIds]);
    const pubacked = fleet.devices.flatMap((device) => [...device.puback].filter((key) => key.startsWith("pg-down-")));
    expect(pubacked.length).toBe(DEVICES);
    expect(new Set(stored.rows.map((row) => row.id))).toEqual(new Set(eventIds));

    // The operator's stream: every committed event once, in stream order (the SSE id is the commit-ordered
    // position, HW-SSE-2).
    const committed = await db.query<{ id: string; kind: string; device_id: string }>(
      "select position as id, kind, device_id from plane_events where kind in ('device.quarantined', 'guard.alert') and at >= $1 order by position",
      [beforeFault],
    );
    expect(committed.rows.filter((row) => row.kind === "device.quarantined").length).toBe(everyone.length);
    expect(committed.rows.filter((row) => row.kind === "guard.alert").length).toBe(DEVICES);
    const lastCommitted = Number(committed.rows[committed.rows.length - 1]!.id);
    await waitFor("the stream caught up", () => (stream!.lastId ?? 0) >= lastCommitted, { timeoutMs: 120_000, intervalMs: 200 });
    const streamed = stream.events.filter((event) => event.kind === "device.quarantined" || event.kind === "guard.alert").map((event) => event.id);
    expect(streamed).toEqual(committed.rows.map((row) => Number(row.id)));

    // Heartbeats are persisted again: last-seen moves past the restart for every lightweight device.
    await waitFor("heartbeats persisted after the restart", async () => {
      const { rows } = await db.query<{ n: string }>("select count(*) as n from devices where last_seen_at > $1 and id = any($2)", [new Date(startedAt), fleet!.ids]);
      return Number(rows[0]!.n) === DEVICES;
    }, { timeoutMs: LONG, intervalMs: 500 });
    expect(plane!.proc.running).toBe(true);

    console.log(`fault-figures ${JSON.stringify({
      campaign: "postgres-restart", devices: everyone.length, downMs: startedAt - stoppedAt, healthyAfterMs, quarantinedAfterMs,
      commandsLost: 0, commandsDoubled: 0, eventsLost: 0, streamReconnects: stream.reconnects,
    })}`);
  });
});
