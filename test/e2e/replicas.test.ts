/**
 * Plane replicas on one PostgreSQL, as real processes (docs/scale.md "Replicas", HW-HA-1..4): three planes started
 * at the same moment on a fresh database, each with the embedded broker on its own ports and its own devices
 * (lightweight simulated devices: real keys, real signed enrollment, real MQTT over TLS).
 *
 * - one admin token, one command key, one set of TUF online keys, one CA for all three;
 * - every timer fires once: a rollout advanced by the engine's tick gives each device one update command, a quarantine
 *   sent through one replica reaches the devices of all three and is re-published once per retry period, each device
 *   goes stale once, each TUF timestamp is re-signed only when due; fleet-wide timers run only on the lease holder;
 * - the lease holder SIGKILLed: another replica takes over after the lease expired (never before) and the timers
 *   go on there.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBase64Url, signObject } from "../../shared/crypto/index.js";
import { upTopic, verifyCommand, type Command } from "../../shared/protocol/index.js";
import { BENCH_MODEL, connectDevice, disconnectAll, enrollDevice, heartbeatPayload, heartbeatTopic, makeDevices, type SimDevice } from "../../bench/support/devices.js";
import { metricValue } from "../../bench/support/plane.js";
import { createTemporaryPostgres } from "../../control-plane/src/db/test-postgres.js";
import { ApiClient, planeFetch } from "../support/api.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { createReleaser } from "../support/release.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

const baseUrl = process.env.HASHWARD_TEST_DATABASE_URL;
const REPLICAS = 3;
const DEVICES_PER_REPLICA = 3;
const LEASE_TTL_MS = 3_000;
const RETRY_MS = 1_000;
const TIMESTAMP_TTL_MS = 3_000;
const LEADER_TASKS = ["markStaleDevices", "rolloutTick", "renewTufMetadata"];

interface Received {
  command: Command;
  at: number;
}

describeUnless(baseUrl ? null : "set HASHWARD_TEST_DATABASE_URL to a PostgreSQL URL to run", "plane replicas on one PostgreSQL (real processes)", () => {
  let database: { url: string; drop(): Promise<void> };
  let sql: pg.Pool;
  let planes: ControlPlane[] = [];
  let admins: ApiClient[] = [];
  /** Devices of each replica, connected to that replica's embedded broker. */
  const fleet: SimDevice[][] = [];
  const received = new Map<string, Received[]>();
  /** Temp folders to remove afterwards (data folders, images, release keys). */
  const folders: string[] = [];

  const query = async <T,>(text: string, values: unknown[] = []): Promise<T[]> => (await sql.query(text, values)).rows as T[];
  const metrics = async (index: number): Promise<string> => String((await admins[index]!.request("GET", "/metrics")).body);
  const alive = () => planes.map((plane, index) => ({ plane, index })).filter(({ plane }) => plane.proc.running);
  const leaderIndex = async (): Promise<number | undefined> => {
    for (const { index } of alive()) if (metricValue(await metrics(index), "hashward_leader") === 1) return index;
    return undefined;
  };

  beforeAll(async () => {
    database = await createTemporaryPostgres(baseUrl!);
    sql = new pg.Pool({ connectionString: database.url, max: 2 });
    const env = {
      DATABASE_URL: database.url,
      HASHWARD_LEASE_TTL_MS: String(LEASE_TTL_MS),
      HASHWARD_COMMAND_RETRY_MS: String(RETRY_MS),
      HASHWARD_STALE_AFTER_MS: "3000",
      HASHWARD_ROLLOUT_TICK_MS: "300",
      HASHWARD_TUF_TIMESTAMP_TTL_MS: String(TIMESTAMP_TTL_MS),
      HASHWARD_TUF_RENEW_CHECK_MS: "200",
      HASHWARD_AUTO_QUARANTINE: "off",
      // One folder of release images for all replicas (metadata is in the database).
      HASHWARD_TUF_IMAGE_DIR: tempDir("replicas-images").path,
    };
    // All at once, on an empty database: the race HW-HA-1 and HW-HA-2 are about.
    planes = await Promise.all(Array.from({ length: REPLICAS }, () => startControlPlane({ env })));
    folders.push(env.HASHWARD_TUF_IMAGE_DIR, ...planes.map((plane) => plane.dataDir));
  }, 240_000);

  afterAll(async () => {
    await disconnectAll(fleet.flat());
    await Promise.all(planes.map((plane) => plane.proc.kill("SIGTERM")));
    await sql?.end();
    await database?.drop();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  }, 60_000);

  it("HW-HA-1, HW-HA-2: three replicas started together share one admin token, one command key, one set of TUF online keys and one CA", async () => {
    const creators = planes.filter((plane) => plane.adminToken !== "");
    expect(creators).toHaveLength(1);
    expect((await query<{ n: number }>("select count(*)::int as n from api_tokens where role = 'admin'"))[0]!.n).toBe(1);
    const tokenFile = join(creators[0]!.dataDir, "admin.token");
    for (const plane of planes.filter((p) => p !== creators[0])) {
      expect(existsSync(join(plane.dataDir, "admin.token"))).toBe(false);
      // The others say where the token is.
      await plane.proc.waitForLine("where the admin token is", (line) => line.adminTokenFile === tokenFile);
    }
    admins = planes.map((plane) => new ApiClient(plane.httpUrl, creators[0]!.adminToken));

    expect(new Set(planes.map((plane) => plane.caCertHash)).size).toBe(1);
    expect(new Set(planes.map((plane) => plane.caPem)).size).toBe(1);
    const onlineKeys = await Promise.all(admins.map((admin) => admin.get("/api/v1/tuf/online-keys")));
    for (const keys of onlineKeys) expect(keys).toEqual(onlineKeys[0]);
    const names = await query<{ name: string }>("select name from plane_secrets order by name");
    expect(names.map((row) => row.name)).toEqual(["admin-token-file", "command-signing-key", "tls-ca", "tuf-snapshot-key", "tuf-timestamp-key"]);

    // Devices enroll and connect at each replica; every enrollment answer pins the same command key.
    const { token } = await admins[0]!.post<{ token: string }>("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 100, label: "replicas e2e" });
    for (const plane of planes) {
      const devices = makeDevices(DEVICES_PER_REPLICA);
      fleet.push(devices);
      for (const device of devices) {
        expect(await enrollDevice(plane.httpUrl, device, token)).toBe("accepted");
        const client = await connectDevice(plane.mqttUrl, device, { subscribeDown: true, ca: plane.caPem });
        received.set(device.deviceId, []);
        client.on("message", (topic, payload) => {
          if (!topic.endsWith("/down/command")) return;
          const command = JSON.parse(payload.toString("utf8")) as Command;
          received.get(device.deviceId)!.push({ command, at: Date.now() });
          // The device installs every update at once (a signed ack "done"); quarantines are never acked.
          if (command.action === "update" && received.get(device.deviceId)!.filter((r) => r.command.seq === command.seq).length === 1) {
            const ack = signObject(
              { v: 1 as const, type: "ack" as const, deviceId: device.deviceId, seq: command.seq, action: command.action, status: "done" as const, containment: "none" as const, ts: Date.now() },
              device.keyPair.privateKey,
            );
            client.publish(upTopic(device.deviceId, "ack"), JSON.stringify(ack), { qos: 1 });
          }
        });
        // One signed heartbeat: seen once, then silent (the staleness sweep has work to do).
        client.publish(heartbeatTopic(device), heartbeatPayload(device, 1, Date.now()), { qos: 1 });
      }
    }
    expect(new Set(fleet.flat().map((d) => d.commandPublicKey)).size).toBe(1);
  }, 120_000);

  it("HW-HA-3, HW-HA-4: with a fleet on three replicas every timer fires once", async () => {
    const devices = fleet.flat();
    const commandKey = fromBase64Url(devices[0]!.commandPublicKey!);

    // A rollout created on replica 1, advanced group by group by the engine's tick (wherever the lease is).
    const releaseDir = tempDir("replicas-release").path;
    folders.push(releaseDir);
    const releaser = await createReleaser(releaseDir, admins[0]!);
    const image = await releaser.publish({ name: "fw-bench-2.0.0", model: BENCH_MODEL, version: "2.0.0" });
    // Uploaded through replica 0, served by replica 2: devices may download from any replica.
    const download = await planeFetch(`${planes[2]!.httpUrl}/tuf/targets/${image.sha256}.fw-bench-2.0.0`);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(readFileSync(image.imageFile))).toBe(true);
    const [publishedTimestamp] = await query<{ version: number }>("select max(version)::int as version from tuf_metadata where role = 'timestamp'");
    const rollout = await admins[1]!.post<{ id: string }>("/api/v1/rollouts", {
      targetName: "fw-bench-2.0.0",
      selector: { model: BENCH_MODEL },
      groups: [{ size: 3 }, { size: 3 }],
      successThreshold: 100,
      errorThreshold: 50,
    });
    const done = await waitFor(
      "the rollout to complete",
      async () => {
        const view = await admins[2]!.get<{ state: string }>(`/api/v1/rollouts/${rollout.id}`);
        return view.state !== "running" && view;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    expect(done.state).toBe("completed");

    // A quarantine sent through replica 2 reaches the devices connected to every replica.
    await admins[2]!.post("/api/v1/quarantine", { deviceIds: devices.map((d) => d.deviceId), reason: "replicas e2e" });
    await waitFor(
      "every device to receive its quarantine command",
      () => devices.every((d) => received.get(d.deviceId)!.some((r) => r.command.action === "quarantine")),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    // A few retry periods of re-publishing (the devices never ack the quarantine), and staleness for everyone.
    await waitFor(
      "re-publishes of every quarantine and every device stale",
      async () => {
        const retried = devices.every((d) => received.get(d.deviceId)!.filter((r) => r.command.action === "quarantine").length >= 3);
        const [stale] = await query<{ n: number }>("select count(*)::int as n from devices where appraisal = 'stale'");
        return retried && stale!.n === devices.length;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    // TUF timestamps keep being re-signed (TTL 3 s: about every 2 s).
    await waitFor(
      "four timestamps re-signed after the release",
      async () => (await query<{ n: number }>("select count(*)::int as n from tuf_metadata where role = 'timestamp' and version > $1", [publishedTimestamp!.version]))[0]!.n >= 4,
      { timeoutMs: 90_000, intervalMs: 200 },
    );

    for (const device of devices) {
      const commands = received.get(device.deviceId)!;
      // Every command any replica sent carries the one shared key and was signed for this device.
      for (const { command } of commands) verifyCommand(command, commandKey, { deviceId: device.deviceId, lastSeq: 0, nowMs: command.issuedAt });
      // No doubled rollout step: one update command per device, and one quarantine.
      expect(new Set(commands.filter((r) => r.command.action === "update").map((r) => r.command.seq)).size).toBe(1);
      const quarantines = commands.filter((r) => r.command.action === "quarantine");
      expect(new Set(quarantines.map((r) => r.command.seq)).size).toBe(1);
      // Re-published at most once per retry period (HW-HA-4: a claim needs 0.9 of the period since the last one):
      // the first publish, the first tick's claim, one per period after, and one for delivery delays on a loaded machine.
      const spanMs = quarantines.at(-1)!.at - quarantines[0]!.at;
      expect(quarantines.length).toBeLessThanOrEqual(3 + Math.floor(spanMs / (0.9 * RETRY_MS)));
    }
    const updates = await query<{ device_id: string; n: number }>("select device_id, count(*)::int as n from commands where action = 'update' group by device_id");
    expect(updates.map((row) => row.n)).toEqual(devices.map(() => 1));
    // Each device went stale once (one transition, one operator event).
    const staleTransitions = await query<{ n: number }>("select count(*)::int as n from transitions where machine = 'appraisal' and to_state = 'stale' group by device_id");
    expect(staleTransitions.map((row) => row.n)).toEqual(devices.map(() => 1));
    const staleEvents = await query<{ n: number }>("select count(*)::int as n from plane_events where kind = 'device.stale' group by device_id");
    expect(staleEvents.map((row) => row.n)).toEqual(devices.map(() => 1));
    // Each timestamp re-signed only when less than a third of the previous one's lifetime was left.
    const timestamps = await query<{ version: number; created_at: Date; expires_at: Date }>(
      "select version, created_at, expires_at from tuf_metadata where role = 'timestamp' and version >= $1 order by version",
      [publishedTimestamp!.version],
    );
    for (let i = 1; i < timestamps.length; i += 1) {
      expect(timestamps[i]!.version).toBe(timestamps[i - 1]!.version + 1);
      expect(timestamps[i]!.created_at.getTime()).toBeGreaterThan(timestamps[i - 1]!.expires_at.getTime() - TIMESTAMP_TTL_MS / 3);
    }

    // The fleet-wide timers ran only where the lease was held; the claimed work ran on every replica.
    const texts = await Promise.all(planes.map((_, index) => metrics(index)));
    const leaders = texts.map((text) => metricValue(text, "hashward_leader_acquired_total") > 0);
    expect(leaders.filter(Boolean).length).toBeGreaterThanOrEqual(1);
    for (const [index, text] of texts.entries()) {
      for (const task of LEADER_TASKS) if (!leaders[index]) expect(metricValue(text, "hashward_timer_runs_total", { task })).toBe(0);
      expect(metricValue(text, "hashward_timer_runs_total", { task: "retryPendingCommands" })).toBeGreaterThan(0);
    }
    await waitFor("exactly one replica leading", async () => (await Promise.all(planes.map((_, index) => metrics(index)))).filter((text) => metricValue(text, "hashward_leader") === 1).length === 1);
  }, 300_000);

  it("HW-HA-3: the lease holder SIGKILLed, another replica takes over once the lease expired, and the timers go on there", async () => {
    const killed = await waitFor("a leader", leaderIndex, { timeoutMs: 30_000 });
    await planes[killed]!.proc.kill("SIGKILL");
    // Read after the kill: the dead holder can renew no more, so this is the end of its lease.
    const [before] = await query<{ holder: string; term: number; expires_at: Date }>("select holder, term::int as term, expires_at from leases where name = 'plane-timers'");
    const [timestampBefore] = await query<{ version: number }>("select max(version)::int as version from tuf_metadata where role = 'timestamp'");
    const sweepsBefore = new Map<number, number>();
    for (const { index } of alive()) sweepsBefore.set(index, metricValue(await metrics(index), "hashward_timer_runs_total", { task: "markStaleDevices" }));

    // Documented bound: LEASE_TTL_MS + LEASE_TTL_MS / 3 after the last renewal; the wait adds room for a loaded machine.
    const successor = await waitFor("another replica to lead", leaderIndex, { timeoutMs: LEASE_TTL_MS + LEASE_TTL_MS / 3 + 30_000, intervalMs: 100 });
    expect(successor).not.toBe(killed);
    const [after] = await query<{ holder: string; term: number; acquired_at: Date }>("select holder, term::int as term, acquired_at from leases where name = 'plane-timers'");
    expect(after!.holder).not.toBe(before!.holder);
    expect(after!.term).toBeGreaterThan(before!.term);
    // Never two leaders: taken only after the dead holder's lease ran out (database clock on both sides).
    expect(after!.acquired_at.getTime()).toBeGreaterThanOrEqual(before!.expires_at.getTime());

    // The new leader renews the TUF timestamp and sweeps staleness.
    await waitFor(
      "a timestamp renewed by the new leader",
      async () => (await query<{ n: number }>("select count(*)::int as n from tuf_metadata where role = 'timestamp' and version > $1", [timestampBefore!.version]))[0]!.n >= 2,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await waitFor("the new leader to sweep staleness", async () => metricValue(await metrics(successor), "hashward_timer_runs_total", { task: "markStaleDevices" }) > sweepsBefore.get(successor)!, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
  }, 180_000);
});
