/**
 * The trust loop with real components: the control plane under Bun (PGlite), compiled agent binaries on simulated
 * boards, real MQTT and HTTP. Steps build on each other, so they share one plane. One contract suite, run over
 * both transports (HW-BROKER-1): the embedded aedes broker, and RabbitMQ asking the plane's hooks (its own node,
 * test/support/rabbitmq.ts; skipped with the reason when rabbitmq-server is not installed).
 */
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import mqtt from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { createConnectToken, signObject, sha256Hex } from "../../shared/index.js";
import { upTopic } from "../../shared/protocol/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { AGENT_BINARY, restartControlPlane, simulatedAgentConfig, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";
import { rabbitmqMissing, restartRabbitPlane, startRabbitPlane, stopRabbitNode, type RabbitPlane } from "../support/rabbitmq.js";
import { describeUnless } from "../support/skip.js";

interface Transport {
  name: string;
  missing: string | null;
  start(): Promise<ControlPlane>;
  restart(plane: ControlPlane): Promise<ControlPlane>;
  stop(plane: ControlPlane | undefined): Promise<void>;
}

const TRANSPORTS: Transport[] = [
  { name: "embedded broker", missing: null, start: () => startControlPlane(), restart: restartControlPlane, stop: async () => undefined },
  {
    name: "RabbitMQ",
    missing: rabbitmqMissing(),
    start: () => startRabbitPlane(),
    restart: (plane) => restartRabbitPlane(plane as RabbitPlane),
    stop: (plane) => stopRabbitNode(plane as RabbitPlane | undefined),
  },
];

const MODEL = "S19";
const FIRMWARE = "2024.06.1";

interface Miner {
  name: string;
  dir: string;
  boardRoot: string;
  stateDir: string;
  configFile: string;
  proc?: ManagedProcess;
  deviceId?: string;
}

let plane: ControlPlane;
let admin: ApiClient;
const miners: Miner[] = [];

async function newMiner(name: string, extra: Record<string, unknown> = {}): Promise<Miner> {
  const dir = tempDir(name).path;
  const boardRoot = join(dir, "board");
  await createSimulatedBoard(boardRoot, { model: MODEL });
  const stateDir = join(dir, "state");
  const configFile = writeAgentConfig(
    dir,
    simulatedAgentConfig(plane, { stateDir, boardRoot, model: MODEL, firmwareVersion: FIRMWARE }, {
      measure: { paths: ["/firmware", "/config", "/dev/mtd2"] },
      ...extra,
    }),
  );
  const miner: Miner = { name, dir, boardRoot, stateDir, configFile };
  miners.push(miner);
  return miner;
}

function run(miner: Miner): ManagedProcess {
  miner.proc = startAgent(miner.name, miner.configFile);
  return miner.proc;
}

async function deviceIdOf(miner: Miner): Promise<string> {
  miner.deviceId ??= await waitFor(`${miner.name}'s key`, () => loadDeviceKey(miner.stateDir)?.deviceId);
  return miner.deviceId;
}

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);
/** Evidence messages the plane refused so far (every reason), from its Prometheus metrics. */
async function rejectedEvidence(): Promise<number> {
  const text = (await admin.request("GET", "/metrics")).body as string;
  return [...text.matchAll(/^hashward_mqtt_messages_rejected_total\{[^}]*kind="evidence"[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}
const minerState = (miner: Miner) => readFileSync(join(miner.boardRoot, "run/miner.state"), "utf8").trim();

for (const transport of TRANSPORTS) describeUnless(transport.missing, `trust loop over the ${transport.name} (real control plane, real agent binaries, real MQTT)`, () => {
  let trusted: Miner;

  beforeAll(async () => {
    miners.length = 0;
    plane = await transport.start();
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(miners.map((miner) => miner.proc?.kill("SIGKILL")));
    await plane?.proc.kill("SIGKILL");
    await transport.stop(plane);
  }, 120_000);

  it("a device whose key was not accepted stays pending and can publish nothing", async () => {
    const miner = await newMiner("pending-miner");
    run(miner);
    const id = await deviceIdOf(miner);
    const view = await waitFor("pending device listed", async () => {
      const { devices } = await admin.get(`/api/v1/devices?enrollment=pending`);
      return devices.find((d: any) => d.deviceId === id);
    });
    expect(view.enrollment).toBe("pending");

    // Its own key and a valid connect token still do not get it onto the broker.
    const key = loadDeviceKey(miner.stateDir)!;
    const error = await mqtt
      .connectAsync(plane.mqttUrl, {
        protocolVersion: 4, clientId: id, username: id, password: createConnectToken(id, key.privateKey, Date.now()),
        reconnectPeriod: 0, connectTimeout: 5000, ca: plane.caPem!,
      })
      .then((client) => { client.end(true); return null; }, (err: Error) => err);
    expect(error?.message).toMatch(/Not authorized|Bad username or password/i);
    const after = await device(id);
    expect(after.enrollment).toBe("pending");
    expect(after.lastSeenAt).toBeNull();
    await miner.proc!.kill("SIGKILL");
  });

  it("an accepted device whose firmware matches the reference values becomes trusted", async () => {
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 5, label: "e2e" });
    trusted = await newMiner("trusted-miner", { enrollmentToken: token.token });

    // Reference values captured the way an operator would: `measure` on a known-good board, then registered.
    const measured = JSON.parse(execFileSync(AGENT_BINARY, ["measure", "--config", trusted.configFile], { encoding: "utf8" }));
    await admin.post("/api/v1/reference-values", { model: MODEL, firmwareVersion: FIRMWARE, measurements: measured });

    run(trusted);
    const id = await deviceIdOf(trusted);
    const view = await waitFor("device trusted", async () => {
      const d = await device(id).catch(() => undefined);
      return d?.appraisal === "trusted" && d;
    });
    expect(view).toMatchObject({ enrollment: "accepted", containment: "none", connected: true });
    expect(view.lastAppraisal.status).toBe("affirming");
    expect(minerState(trusted)).toBe("running");
  });

  it("one changed file is contraindicated, named with both digests, and the device is quarantined by policy", async () => {
    const id = trusted.deviceId!;
    const conf = join(trusted.boardRoot, "config/cgminer.conf");
    const expected = sha256Hex(readFileSync(conf));
    appendFileSync(conf, '\n{"url":"stratum+tcp://evil.example:3333"}\n');
    const seen = sha256Hex(readFileSync(conf));

    const view = await waitFor("device quarantined", async () => {
      const d = await device(id);
      return d.containment === "quarantined" && d;
    });
    expect(view.appraisal).toBe("contraindicated");
    expect(view.lastAppraisal.differences).toContainEqual(
      expect.objectContaining({ path: "/config/cgminer.conf", kind: "changed", expected: expect.objectContaining({ sha256: expected }), seen: expect.objectContaining({ sha256: seen }) }),
    );
    expect(minerState(trusted)).toBe("stopped");
    const { transitions } = await admin.get(`/api/v1/devices/${id}/history`);
    expect(transitions.map((t: any) => `${t.machine}:${t.to}`)).toEqual(
      expect.arrayContaining(["appraisal:contraindicated", "containment:quarantine_requested", "containment:quarantined"]),
    );
  });

  it("the restarted agent is still quarantined; an operator release lifts it", async () => {
    const id = trusted.deviceId!;
    await trusted.proc!.kill("SIGKILL");
    writeFileSync(join(trusted.boardRoot, "run/miner.state"), "running\n"); // a reboot would start the miner again
    run(trusted);
    await waitFor("agent re-applies quarantine on start", () => minerState(trusted) === "stopped");
    expect((await device(id)).containment).toBe("quarantined");

    await admin.post(`/api/v1/devices/${id}/release`, { reason: "config restored by operator" });
    const view = await waitFor("device released", async () => {
      const d = await device(id);
      return d.containment === "none" && d;
    });
    expect(view.containment).toBe("none");
    expect(minerState(trusted)).toBe("running");
  });

  it("replayed evidence (an old nonce) is refused and changes nothing", async () => {
    const id = trusted.deviceId!;
    // The test plays the device (a thief of its key) from here on, so the real agent must not race it.
    await trusted.proc!.kill("SIGKILL");
    const key = loadDeviceKey(trusted.stateDir)!;
    const measurements = JSON.parse(execFileSync(AGENT_BINARY, ["measure", "--config", trusted.configFile], { encoding: "utf8" }));
    const evidence = (seq: number, nonce: string) =>
      JSON.stringify(signObject({
        v: 1, type: "evidence", deviceId: id, seq, nonce, reason: "challenge", ts: Date.now(),
        model: MODEL, firmwareVersion: FIRMWARE, agentVersion: "0.0.0", bootId: "replay", measurements,
      }, key.privateKey));
    const client = await mqtt.connectAsync(plane.mqttUrl, {
      protocolVersion: 4, clientId: `${id}`, username: id, password: createConnectToken(id, key.privateKey, Date.now()), reconnectPeriod: 0, ca: plane.caPem!,
    });
    try {
      // A challenge answered once, as the device would: accepted, and its nonce is used up.
      const { nonce } = await admin.post(`/api/v1/devices/${id}/attest`);
      const answeredSeq = (await device(id)).lastAppraisal.evidenceSeq + 50;
      await client.publishAsync(upTopic(id, "evidence"), evidence(answeredSeq, nonce), { qos: 1 });
      await waitFor("the answer appraised", async () => (await device(id)).lastAppraisal.evidenceSeq === answeredSeq);

      // The same nonce again, correctly signed and with a fresh seq: only the reused nonce can make it refused.
      const before = await device(id);
      const rejectedBefore = await rejectedEvidence();
      await client.publishAsync(upTopic(id, "evidence"), evidence(answeredSeq + 50, nonce), { qos: 1 });
      await waitFor("rejection counted", async () => (await rejectedEvidence()) > rejectedBefore);
      const after = await device(id);
      expect(after.lastAppraisal).toEqual(before.lastAppraisal);
      expect(after.appraisal).toBe(before.appraisal);
    } finally {
      await client.endAsync(true);
    }
  });

  it("a device publishing to another device's topic is cut off", async () => {
    const id = trusted.deviceId!;
    const key = loadDeviceKey(trusted.stateDir)!;
    const client = await mqtt.connectAsync(plane.mqttUrl, {
      protocolVersion: 4, clientId: id, username: id, password: createConnectToken(id, key.privateKey, Date.now()), reconnectPeriod: 0, ca: plane.caPem!,
    });
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.publish(upTopic("hw-0123456789abcdef01234567", "heartbeat"), "{}", { qos: 1 });
    await closed;
    expect(client.connected).toBe(false);
    client.end(true);
  });

  it("the control plane SIGKILLed and restarted has lost nothing; agents reconnect; offline events arrive", async () => {
    const id = trusted.deviceId!;
    run(trusted);
    await waitFor("agent connected again", async () => (await device(id)).connected === true);
    const before = await device(id);
    const { transitions: historyBefore } = await admin.get(`/api/v1/devices/${id}/history?limit=1000`);
    const { entries: auditBefore } = await admin.get("/api/v1/audit?limit=1000");
    const { referenceValues: referencesBefore } = await admin.get("/api/v1/reference-values");
    await plane.proc.kill("SIGKILL");

    // While the broker is down the agent notices a watched change and queues the event on disk.
    const outbox = join(trusted.stateDir, "outbox");
    appendFileSync(join(trusted.boardRoot, "config/cgminer.conf"), "\n# offline edit\n");
    const queued = await waitFor("the watch-change event queued in the agent's outbox while the plane is down", () =>
      readdirSync(outbox).find((file) => file.includes("-event-") && readFileSync(join(outbox, file), "utf8").includes('"watch-change"')),
    );
    expect(queued).toBeTruthy();

    plane = await transport.restart(plane);
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    // Every committed fact is still there (the agent may add new ones as soon as it reconnects).
    const after = await device(id);
    expect(after).toMatchObject({
      deviceId: id, publicKey: before.publicKey, enrollment: before.enrollment, model: MODEL, firmwareVersion: before.firmwareVersion,
    });
    const { transitions: historyAfter } = await admin.get(`/api/v1/devices/${id}/history?limit=1000`);
    expect(historyAfter.map((t: any) => t.id)).toEqual(expect.arrayContaining(historyBefore.map((t: any) => t.id)));
    const { entries: auditAfter } = await admin.get("/api/v1/audit?limit=1000");
    expect(auditAfter.map((e: any) => e.id)).toEqual(expect.arrayContaining(auditBefore.map((e: any) => e.id)));
    const { referenceValues: referencesAfter } = await admin.get("/api/v1/reference-values");
    expect(referencesAfter).toEqual(expect.arrayContaining(referencesBefore));

    await waitFor("agent reconnected", async () => (await device(id)).connected === true);
    const { events } = await waitFor("watch-change event delivered after restart", async () => {
      const result = await admin.get(`/api/v1/devices/${id}/events`);
      return result.events.some((e: any) => e.kind === "watch-change" && Date.parse(e.receivedAt) > Date.parse(before.updatedAt)) && result;
    });
    expect(events.length).toBeGreaterThan(0);
    await waitFor("the agent's outbox drained", () => !readdirSync(outbox).includes(queued));
  });
});
