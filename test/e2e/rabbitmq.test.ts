/**
 * The external broker mode over a real RabbitMQ node (its own, test/support/rabbitmq.ts) and a real plane:
 * HW-BROKER-2 (the hooks answer only the broker's secret), HW-TOPIC-1 through RabbitMQ (mqtt.js clients holding a
 * real device key), revocation closing the connection through the management API (HW-BROKER-1), the payload cap
 * (HW-BROKER-3), and a node restart: the compiled agent reconnects by itself and what it queued arrives.
 */
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { createConnectToken } from "../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url, type KeyPair } from "../../shared/crypto/index.js";
import { downTopic, upTopic } from "../../shared/protocol/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { simulatedAgentConfig, startAgent, writeAgentConfig, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { rabbitmqMissing, startRabbitPlane, stopRabbitNode, type RabbitPlane } from "../support/rabbitmq.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

let plane: RabbitPlane;
let admin: ApiClient;
const clients: MqttClient[] = [];
const agents: ManagedProcess[] = [];

async function acceptedDevice(): Promise<{ id: string; keys: KeyPair }> {
  const keys = generateKeyPair();
  const id = deviceIdFromPublicKey(keys.publicKey);
  await admin.post("/api/v1/devices/preauthorize", { publicKey: toBase64Url(keys.publicKey), model: "S19" });
  await waitFor("device accepted", async () => (await admin.get(`/api/v1/devices/${id}`)).enrollment === "accepted");
  return { id, keys };
}

function connectAs(id: string, keys: KeyPair): Promise<MqttClient> {
  return mqtt
    .connectAsync(plane.mqttUrl, {
      protocolVersion: 4, clientId: id, username: id, password: createConnectToken(id, keys.privateKey, Date.now()),
      reconnectPeriod: 0, connectTimeout: 30_000, ca: plane.caPem!,
    })
    .then((client) => {
      clients.push(client);
      return client;
    });
}

/** Event messages the plane dropped for `reason`, from its metrics. */
async function rejectedEvents(reason: string): Promise<number> {
  const text = (await admin.request("GET", "/metrics")).body as string;
  return [...text.matchAll(/^hashward_mqtt_messages_rejected_total\{([^}]*)\} (\d+)/gm)]
    .filter((m) => m[1]!.includes('kind="event"') && m[1]!.includes(`reason="${reason}"`))
    .reduce((sum, m) => sum + Number(m[2]), 0);
}

function closedPromise(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve();
    client.once("close", () => resolve());
  });
}

describeUnless(rabbitmqMissing(), "RabbitMQ broker mode (own node, real plane, real MQTT clients)", () => {
  beforeAll(async () => {
    plane = await startRabbitPlane();
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
  }, 300_000);

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await Promise.all(agents.map((agent) => agent.kill("SIGKILL")));
    await plane?.proc.kill("SIGKILL");
    await stopRabbitNode(plane);
  }, 120_000);

  it("the hook endpoints answer nothing to a caller without the shared secret (HW-BROKER-2)", async () => {
    const { port } = new URL(plane.hookUrl);
    const form = new URLSearchParams({ username: "hw-0123456789abcdef01234567", password: "x", vhost: "/", client_id: "hw-0123456789abcdef01234567" });
    for (const path of ["/user", "/topic", `/${"0".repeat(48)}/user`, "/user/extra"]) {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", body: form });
      expect(response.status, path).toBe(404);
      expect(await response.text()).toBe("");
    }
    // With the secret, the same request is answered: refused (unknown device), as RabbitMQ would hear it.
    const answered = await fetch(`${plane.hookUrl}/user`, { method: "POST", body: form });
    expect(await answered.text()).toBe("deny");
  });

  it("a device gets its commands through RabbitMQ; it cannot subscribe to another device's down topics (HW-TOPIC-1)", async () => {
    const a = await acceptedDevice();
    const b = await acceptedDevice();
    const clientA = await connectAs(a.id, a.keys);
    await clientA.subscribeAsync(downTopic(a.id, "challenge").replace(/challenge$/, "+"), { qos: 1 });
    const received = new Promise<string>((resolve) => clientA.once("message", (topic) => resolve(topic)));
    await admin.post(`/api/v1/devices/${a.id}/attest`);
    expect(await received).toBe(downTopic(a.id, "challenge"));

    const clientB = await connectAs(b.id, b.keys);
    const closed = closedPromise(clientB);
    const granted = await clientB.subscribeAsync(downTopic(a.id, "command"), { qos: 1 }).then((g) => g, () => null);
    // RabbitMQ answers a refused subscription with the failure code (0x80) or closes the connection.
    if (granted !== null && clientB.connected) expect(granted.map((g) => g.qos)).toEqual([128]);
    else await closed;
    // And A's next challenge still reaches A only.
    const again = new Promise<string>((resolve) => clientA.once("message", (topic) => resolve(topic)));
    await admin.post(`/api/v1/devices/${a.id}/attest`);
    expect(await again).toBe(downTopic(a.id, "challenge"));
  });

  it("a device publishing to another device's topic is cut off and nothing reaches the plane (HW-TOPIC-1)", async () => {
    const a = await acceptedDevice();
    const b = await acceptedDevice();
    const clientA = await connectAs(a.id, a.keys);
    const closed = closedPromise(clientA);
    clientA.publish(upTopic(b.id, "event"), JSON.stringify({ v: 1, type: "event", deviceId: b.id }), { qos: 1 });
    await closed;
    expect(clientA.connected).toBe(false);
    const { events } = await admin.get(`/api/v1/devices/${b.id}/events`);
    expect(events).toEqual([]);
  });

  it("an oversize payload is refused by RabbitMQ and never handled (HW-BROKER-3)", async () => {
    const a = await acceptedDevice();
    const client = await connectAs(a.id, a.keys);
    // max_message_size (payload cap + 1 KiB) refuses it before it is enqueued: RabbitMQ logs the channel error
    // (3.10's MQTT plugin then leaves the connection open without a channel). The plane's ingest would refuse it
    // too (reason "oversize") if a broker let it through.
    client.publish(upTopic(a.id, "event"), Buffer.alloc(300 * 1024, 0x20), { qos: 1 });
    await waitFor("RabbitMQ refused the message", () => /message size 307200 is larger than configured max size/.test(plane.node.logText()), { timeoutMs: 60_000 });
    const { events } = await admin.get(`/api/v1/devices/${a.id}/events`);
    expect(events).toEqual([]);
    expect(await rejectedEvents("oversize")).toBe(0);
  }, 120_000);

  it("revocation closes the device's live connection through the management API, and it cannot come back", async () => {
    const a = await acceptedDevice();
    const client = await connectAs(a.id, a.keys);
    const closed = closedPromise(client);
    await admin.post(`/api/v1/devices/${a.id}/revoke`, { reason: "stolen" });
    await closed;
    const error = await connectAs(a.id, a.keys).then((c) => (c.end(true), null), (err: Error) => err);
    expect(error?.message).toMatch(/Not authorized|Bad username or password/i);
  });

  it("the RabbitMQ node restarted: the agent reconnects by itself and what it queued meanwhile arrives", async () => {
    const dir = tempDir("rmq-agent").path;
    const boardRoot = join(dir, "board");
    await createSimulatedBoard(boardRoot, { model: "S19" });
    const stateDir = join(dir, "state");
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "rmq" });
    const configFile = writeAgentConfig(dir, simulatedAgentConfig(plane, { stateDir, boardRoot, model: "S19", firmwareVersion: "2024.06.1" }, {
      measure: { paths: ["/firmware", "/config"] }, enrollmentToken: token.token,
    }));
    agents.push(startAgent("rmq-agent", configFile));
    const id = await waitFor("agent key", () => loadDeviceKey(stateDir)?.deviceId);
    await waitFor("agent connected through RabbitMQ", async () => (await admin.get(`/api/v1/devices/${id}`)).connected === true, { timeoutMs: 120_000 });
    await waitFor("agent seen (its signed heartbeats ingested)", async () => (await admin.get(`/api/v1/devices/${id}`)).lastSeenAt !== null, { timeoutMs: 60_000 });

    await plane.node.kill();
    const outbox = join(stateDir, "outbox");
    appendFileSync(join(boardRoot, "config/cgminer.conf"), "\n# edited while the broker was down\n");
    const queued = await waitFor("the watch-change event queued while RabbitMQ is down", () =>
      readdirSync(outbox).find((file) => file.includes("-event-") && readFileSync(join(outbox, file), "utf8").includes('"watch-change"')),
      { timeoutMs: 60_000 },
    );
    const killedAt = Date.now();
    await plane.node.start();
    await waitFor("watch-change event delivered after the node restart", async () => {
      const { events } = await admin.get(`/api/v1/devices/${id}/events`);
      return events.some((e: any) => e.kind === "watch-change");
    }, { timeoutMs: 180_000 });
    await waitFor("the agent's outbox drained", () => !readdirSync(outbox).includes(queued), { timeoutMs: 60_000 });
    await waitFor("heartbeats flow again", async () => Date.parse((await admin.get(`/api/v1/devices/${id}`)).lastSeenAt) > killedAt, { timeoutMs: 60_000 });
    // The whole test: enrollment, a RabbitMQ node stopped and started again (Erlang boot, quorum queue recovery),
    // the agent's reconnect backoff; each wait above has its own bound, the test's default 60 s was below their sum.
  }, 600_000);
});
