/**
 * The EMQX mode's broker side that is not the hooks:
 *   - revocation: the request EMQX's REST API documents for kicking a client (`DELETE /api/v5/clients/{clientid}`,
 *     HTTP Basic with an API key and secret; docs.emqx.com REST API, "Clients"), sent to a fake that records it;
 *   - ingest over an MQTT 5 shared subscription with two replicas, against Mosquitto 2 (EMQX cannot be installed
 *     here; Mosquitto speaks the same MQTT 5 shared subscriptions). Mosquitto runs without authentication or ACLs:
 *     the device rules are EMQX's job through the hooks, tested in ./hooks.test.ts, not here.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../../shared/crypto/index.js";
import { downFilter, upTopic, type Command } from "../../../../shared/protocol/index.js";
import { startMosquitto, mosquittoMissing, type MosquittoBroker } from "../../../../test/support/mosquitto.js";
import { describeUnless } from "../../../../test/support/skip.js";
import { waitFor } from "../../../../test/support/wait.js";
import type { Database } from "../../db/index.js";
import { FakeDeviceSide } from "../testing/fake-device-side.js";
import { ingestSubscription, kickClient, startEmqxTransport, type EmqxTransport } from "./transport.js";

const SECRET = "t".repeat(40);
const DEVICE = "hw-0123456789abcdef01234567";

describe("revocation through EMQX's REST API", () => {
  let server: Server;
  let seen: { method: string; url: string; authorization: string | undefined }[];
  let status: number;
  let base: string;

  beforeEach(async () => {
    seen = [];
    status = 204;
    server = createServer((request: IncomingMessage, response) => {
      seen.push({ method: request.method ?? "", url: request.url ?? "", authorization: request.headers.authorization });
      response.writeHead(status).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
  });
  afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("sends DELETE /api/v5/clients/<device id> with the API key and secret as Basic auth", async () => {
    await kickClient(`${base.replace("http://", "http://hashward:k3y%2Fsecret@")}`, DEVICE);
    expect(seen).toEqual([{ method: "DELETE", url: `/api/v5/clients/${DEVICE}`, authorization: `Basic ${Buffer.from("hashward:k3y/secret").toString("base64")}` }]);
  });

  it("keeps a path prefix of the API URL and encodes the client id", async () => {
    await kickClient(`${base.replace("http://", "http://k:s@")}/emqx/`, "a b/c");
    expect(seen[0]?.url).toBe("/emqx/api/v5/clients/a%20b%2Fc");
  });

  it("takes 404 (the device is not connected) as done, and throws on any other failure naming the status", async () => {
    status = 404;
    await expect(kickClient(`${base.replace("http://", "http://k:s@")}`, DEVICE)).resolves.toBeUndefined();
    status = 401;
    await expect(kickClient(`${base.replace("http://", "http://k:s@")}`, DEVICE)).rejects.toThrow(/401/);
  });

  it("subscribes the replicas in one shared group", () => {
    expect(ingestSubscription("hashward")).toBe("$share/hashward/asic/v1/+/up/+");
  });
});

describeUnless(mosquittoMissing(), "EMQX-mode ingest over MQTT 5 shared subscriptions, two replicas (against Mosquitto 2)", () => {
  let broker: MosquittoBroker;
  let replicas: { transport: EmqxTransport; fake: FakeDeviceSide }[];
  let device: MqttClient;
  const keys = generateKeyPair();
  const id = deviceIdFromPublicKey(keys.publicKey);

  const event = (eventId: string) =>
    signObject({ v: 1 as const, type: "event" as const, deviceId: id, id: eventId, ts: Date.now(), kind: "guard-alert" as const, severity: "warning" as const, detail: {} }, keys.privateKey);
  const handled = () => replicas.flatMap((replica) => replica.fake.callsOf("onEvent").map((call) => call.message.id));

  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(() => broker?.stop());

  beforeEach(async () => {
    replicas = [];
    for (let i = 0; i < 2; i += 1) {
      const fake = new FakeDeviceSide();
      fake.setIdentity(id, toBase64Url(keys.publicKey), "accepted");
      const transport = await startEmqxTransport({
        config: { kind: "emqx", mqttUrls: [broker.url], hookHost: "127.0.0.1", hookPort: 0, hookSecret: SECRET, shareGroup: "hashward" },
        deviceSide: fake,
        // Events, evidence and acks never read the nonce table (only hello and heartbeat sessions do).
        db: null as unknown as Database,
        logger: pino({ level: "silent" }),
        registry: new Registry(),
        ingestConnections: 2,
      });
      replicas.push({ transport, fake });
    }
    await Promise.all(replicas.map((replica) => replica.transport.ready()));
    device = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: id, username: id, password: "token", clean: true, reconnectPeriod: 0 });
  });
  afterEach(async () => {
    await device?.endAsync();
    await Promise.all(replicas.map((replica) => replica.transport.close()));
  });

  it("hands each device message to exactly one replica: 200 events, each handled once, both replicas ingesting", async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `evt-shared-${i}`);
    for (const eventId of ids) await device.publishAsync(upTopic(id, "event"), JSON.stringify(event(eventId)), { qos: 1 });
    await waitFor("every event handled", () => handled().length >= ids.length);
    expect(handled().sort()).toEqual([...ids].sort());
    for (const replica of replicas) expect(replica.fake.callsOf("onEvent").length).toBeGreaterThan(0);
  });

  it("holds a message whose handler fails internally (database down) and handles it once when it is back", async () => {
    for (const replica of replicas) replica.fake.failures = [new Error("connection terminated"), new Error("connection terminated")];
    await device.publishAsync(upTopic(id, "event"), JSON.stringify(event("evt-held")), { qos: 1 });
    await waitFor("the held event handled", () => handled().includes("evt-held"));
    await device.publishAsync(upTopic(id, "event"), JSON.stringify(event("evt-after")), { qos: 1 });
    await waitFor("the next event handled", () => handled().includes("evt-after"));
    expect(handled().filter((eventId) => eventId === "evt-held")).toHaveLength(1);
  });

  it("publishes commands at QoS 1 to the device's down topic; the device receives each once", async () => {
    const received: string[] = [];
    device.on("message", (topic, payload) => received.push(`${topic} ${(JSON.parse(payload.toString()) as Command).seq}`));
    await device.subscribeAsync(downFilter(id), { qos: 1 });
    const command = (seq: number) => ({ v: 1, type: "command", deviceId: id, seq, issuedAt: Date.now(), expiresAt: Date.now() + 60_000, action: "quarantine", params: {}, sig: "x" }) as unknown as Command;
    await replicas[0]!.transport.publisher.publish(id, "command", command(1));
    await replicas[1]!.transport.publisher.publish(id, "command", command(2));
    await waitFor("both commands received", () => received.length >= 2);
    expect(received.sort()).toEqual([`asic/v1/${id}/down/command 1`, `asic/v1/${id}/down/command 2`]);
  });

  it("refuses to publish a command for another device on this device's topic", async () => {
    const other = { deviceId: DEVICE, seq: 1 } as unknown as Command;
    await expect(replicas[0]!.transport.publisher.publish(id, "command", other)).rejects.toThrow(/published to/);
  });
});
