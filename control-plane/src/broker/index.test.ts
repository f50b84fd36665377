import { connect as connectTcp } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createConnectToken, issueConnectToken } from "../../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { FreshnessError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import { downFilter, downTopic, upTopic, type Command, type Heartbeat, type Hello } from "../../../shared/protocol/index.js";
import { LivenessRefusal } from "../errors.js";
import { FakeDeviceSide } from "./testing/fake-device-side.js";
import { waitFor } from "../../../test/support/wait.js";
import { createBroker, type Broker } from "./index.js";

const MAX_PAYLOAD = 2_048;

interface Device {
  id: string;
  keys: KeyPair;
}

function newDevice(): Device {
  const keys = generateKeyPair();
  return { id: deviceIdFromPublicKey(keys.publicKey), keys };
}

/** The fake device side does not verify (the service does, HW-LIVE-1), so any well-formed nonce will do here. */
const SOME_CONNECT_NONCE = "test-connection-nonce-0";

function hello(device: Device, bootId = "boot-1", connectNonce = SOME_CONNECT_NONCE): Hello {
  return signObject(
    {
      v: 1 as const,
      type: "hello" as const,
      deviceId: device.id,
      connectNonce,
      model: "S19",
      firmwareVersion: "1.0.0",
      agentVersion: "0.1.0",
      bootId,
      containment: "none" as const,
      lastCommandSeq: 0,
      ts: Date.now(),
    },
    device.keys.privateKey,
  ) as Hello;
}

function heartbeat(device: Device, seq: number, connectNonce = SOME_CONNECT_NONCE): Heartbeat {
  return signObject(
    { v: 1 as const, type: "heartbeat" as const, deviceId: device.id, connectNonce, seq, ts: Date.now(), uptimeMs: 1, containment: "none" as const, outboxDepth: 0 },
    device.keys.privateKey,
  ) as Heartbeat;
}

let fake: FakeDeviceSide;
let registry: Registry;
let broker: Broker;
let port: number;
const clients: MqttClient[] = [];

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const found = registry.getSingleMetric(name);
  if (!found) return 0;
  const { values } = await found.get();
  const match = values.find((value) => Object.entries(labels).every(([key, label]) => value.labels[key] === label));
  return match?.value ?? 0;
}

function enroll(device: Device, enrollment: "accepted" | "pending" | "rejected" | "revoked" = "accepted"): void {
  fake.setIdentity(device.id, toBase64Url(device.keys.publicKey), enrollment);
}

/** A new device, enrolled and accepted. */
function enrolledDevice(): Device {
  const device = newDevice();
  enroll(device);
  return device;
}

/** The connect-token nonce each test client connected with (what the broker must hand over as the session, HW-LIVE-1). */
const connectNonces = new WeakMap<MqttClient, string>();

/** Connects `device` with a fresh token (or the given fields) to the shared broker, or to the one on `options.port`. */
function connect(device: Device, options: { password?: string; clientId?: string; username?: string; port?: number } = {}): Promise<MqttClient> {
  const issued = issueConnectToken(device.id, device.keys.privateKey, Date.now());
  const client = mqtt.connect(`mqtt://127.0.0.1:${options.port ?? port}`, {
    protocolVersion: 4,
    clientId: options.clientId ?? device.id,
    username: options.username ?? device.id,
    password: options.password ?? issued.token,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  clients.push(client);
  if (options.password === undefined) connectNonces.set(client, issued.claims.nonce);
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", reject);
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
}

async function refusedWith(promise: Promise<unknown>): Promise<number | undefined> {
  const error = await promise.then(
    () => {
      throw new Error("connect unexpectedly succeeded");
    },
    (e: unknown) => e as { code?: number },
  );
  return error.code;
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve();
    client.once("close", () => resolve());
  });
}

beforeEach(async () => {
  fake = new FakeDeviceSide();
  registry = new Registry();
  broker = await createBroker({
    deviceSide: fake,
    logger: pino({ level: "silent" }),
    registry,
    maxPayloadBytes: MAX_PAYLOAD,
    identityCacheMs: 0,
  });
  port = await broker.listen(0, "127.0.0.1");
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.end(true);
  await broker.close();
});

describe("CONNECT authentication", () => {
  it("accepts an accepted device with a fresh token and reports the connection", async () => {
    const device = enrolledDevice();
    await connect(device);
    await waitFor("onConnected", () => fake.callsOf("onConnected").length === 1);
    expect(broker.publisher.isConnected(device.id)).toBe(true);
  });

  it.each(["pending", "rejected", "revoked"] as const)("refuses a %s device with code 5", async (state) => {
    const device = newDevice();
    enroll(device, state);
    expect(await refusedWith(connect(device))).toBe(5);
    expect(await metric("hashward_mqtt_connect_refused_total", { reason: "not-accepted" })).toBe(1);
    expect(fake.callsOf("onConnected")).toHaveLength(0);
  });

  it("refuses an unknown device with code 5", async () => {
    expect(await refusedWith(connect(newDevice()))).toBe(5);
    expect(await metric("hashward_mqtt_connect_refused_total", { reason: "unknown-device" })).toBe(1);
  });

  it("refuses a token signed by another key with code 4", async () => {
    const device = enrolledDevice();
    const forged = createConnectToken(device.id, generateKeyPair().privateKey, Date.now());
    expect(await refusedWith(connect(device, { password: forged }))).toBe(4);
    expect(await metric("hashward_mqtt_connect_refused_total", { reason: "bad-token" })).toBe(1);
  });

  it("refuses an expired token with code 4", async () => {
    const device = enrolledDevice();
    const expired = createConnectToken(device.id, device.keys.privateKey, Date.now() - 10 * 60_000, 60_000);
    expect(await refusedWith(connect(device, { password: expired }))).toBe(4);
    expect(await metric("hashward_mqtt_connect_refused_total", { reason: "expired-token" })).toBe(1);
  });

  it("refuses a replayed token with code 4 (HW-AUTH-1)", async () => {
    const device = enrolledDevice();
    const token = createConnectToken(device.id, device.keys.privateKey, Date.now());
    const first = await connect(device, { password: token });
    first.end(true);
    expect(await refusedWith(connect(device, { password: token }))).toBe(4);
    expect(await metric("hashward_mqtt_connect_refused_total", { reason: "replayed-token" })).toBe(1);
  });

  it("refuses a token replayed after a broker restart: used nonces are remembered by the device side (HW-AUTH-1)", async () => {
    const device = enrolledDevice();
    const token = createConnectToken(device.id, device.keys.privateKey, Date.now());
    (await connect(device, { password: token })).end(true);
    // A new broker (a restarted plane) has an empty memory; the nonce record survives with the database.
    await broker.close();
    broker = await createBroker({ deviceSide: fake, logger: pino({ level: "silent" }), registry: new Registry(), maxPayloadBytes: MAX_PAYLOAD, identityCacheMs: 0 });
    port = await broker.listen(0, "127.0.0.1");
    expect(await refusedWith(connect(device, { password: token }))).toBe(4);
    const fresh = await connect(device); // a fresh token still gets in
    expect(fresh.connected).toBe(true);
  });

  it("refuses a token for another device, a garbage password and a non-device username", async () => {
    const device = newDevice();
    const other = newDevice();
    enroll(device);
    enroll(other);
    const otherToken = createConnectToken(other.id, other.keys.privateKey, Date.now());
    expect(await refusedWith(connect(device, { password: otherToken }))).toBe(4);
    expect(await refusedWith(connect(device, { password: "not.a-token" }))).toBe(4);
    expect(await refusedWith(connect(device, { username: "admin", clientId: "admin" }))).toBe(4);
  });

  it("refuses a clientId that is not the username with code 2 [MQTT-3.1.3-9]", async () => {
    const device = enrolledDevice();
    expect(await refusedWith(connect(device, { clientId: newDevice().id }))).toBe(2);
  });
});

describe("publish ACL and ingest", () => {
  it("hands an own-topic publish to the device side once, and counts it", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await waitFor("onHello", () => fake.callsOf("onHello").length === 1);
    expect(fake.callsOf("onHello")[0]?.message.deviceId).toBe(device.id);
    expect(await metric("hashward_mqtt_messages_total", { kind: "hello" })).toBe(1);
    expect(client.connected).toBe(true);
  });

  it("keeps per-device order (hello before evidence) even for one TCP chunk", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    for (let i = 0; i < 20; i++) {
      client.publish(upTopic(device.id, "hello"), JSON.stringify(hello(device, `boot-${i}`)), { qos: 0 });
    }
    await waitFor("20 hellos", () => fake.callsOf("onHello").length === 20);
    expect(fake.callsOf("onHello").map((call) => call.message.bootId)).toEqual(Array.from({ length: 20 }, (_, i) => `boot-${i}`));
  });

  it("disconnects a device publishing to another device's topic and hands nothing over (HW-TOPIC-1)", async () => {
    const device = newDevice();
    const victim = newDevice();
    enroll(device);
    enroll(victim);
    const client = await connect(device);
    const gone = closed(client);
    client.publish(upTopic(victim.id, "hello"), JSON.stringify(hello(victim)), { qos: 1 });
    await gone;
    expect(await metric("hashward_mqtt_acl_denied_total", { action: "publish", reason: "foreign-topic" })).toBe(1);
    expect(fake.callsOf("onHello")).toHaveLength(0);
    await waitFor("onDisconnected", () => fake.callsOf("onDisconnected").length === 1);
  });

  it.each(["asic/v1/x/up/hello", "other/topic", "$SYS/broker/x"])("disconnects a device publishing to %s", async (topic) => {
    const device = enrolledDevice();
    const client = await connect(device);
    const gone = closed(client);
    client.publish(topic, "{}", { qos: 0 });
    await gone;
    expect(fake.calls.filter((call) => call.method.startsWith("onH"))).toHaveLength(0);
  });

  it("refuses a device publishing to its own down/ topic", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    const gone = closed(client);
    client.publish(downTopic(device.id, "command"), "{}", { qos: 0 });
    await gone;
  });

  it.each([
    ["just over the payload cap (checked in authorizePublish)", MAX_PAYLOAD + 1, "publish"],
    ["far over (refused by the packet parser before buffering)", MAX_PAYLOAD * 8, "packet"],
  ])("disconnects an oversize payload %s", async (_what, size, action) => {
    const device = enrolledDevice();
    const client = await connect(device);
    const gone = closed(client);
    client.publish(upTopic(device.id, "heartbeat"), Buffer.alloc(size, 0x20), { qos: 0 });
    await gone;
    expect(await metric("hashward_mqtt_acl_denied_total", { action, reason: "oversize" })).toBe(1);
    expect(fake.callsOf("onHeartbeat")).toHaveLength(0);
  });

  it("drops malformed JSON, counts it, and keeps the client connected", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    await client.publishAsync(upTopic(device.id, "heartbeat"), "{not json", { qos: 1 });
    await client.publishAsync(upTopic(device.id, "evidence"), JSON.stringify({ type: "evidence" }), { qos: 1 });
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await waitFor("the valid hello after the malformed ones", () => fake.callsOf("onHello").length === 1);
    expect(await metric("hashward_mqtt_messages_rejected_total", { kind: "heartbeat", reason: "invalid" })).toBe(1);
    expect(await metric("hashward_mqtt_messages_rejected_total", { kind: "evidence", reason: "invalid" })).toBe(1);
    expect(fake.callsOf("onHeartbeat")).toHaveLength(0);
    expect(client.connected).toBe(true);
  });

  it("drops a payload naming another device", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(newDevice())), { qos: 1 });
    await waitFor("count", async () => (await metric("hashward_mqtt_messages_rejected_total", { kind: "hello", reason: "device-mismatch" })) === 1);
    expect(fake.callsOf("onHello")).toHaveLength(0);
  });

  it.each([
    [new VerificationError("bad sig"), "unverified"],
    [new FreshnessError("replayed seq"), "stale"],
    [new ValidationError("bad nonce", "nonce"), "invalid"],
    [new Error("database down"), "internal"],
    [new LivenessRefusal("forged", "bad-signature"), "bad-signature"],
    [new LivenessRefusal("other connection", "wrong-connection"), "wrong-connection"],
    [new LivenessRefusal("old seq", "replay"), "replay"],
    [new LivenessRefusal("clock", "clock"), "clock"],
  ])("counts a handler refusal %s as %s and survives it", async (error, reason) => {
    const device = enrolledDevice();
    const client = await connect(device);
    fake.failNext = error;
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await waitFor("count", async () => (await metric("hashward_mqtt_messages_rejected_total", { kind: "hello", reason })) === 1);
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await waitFor("next hello handled", () => fake.callsOf("onHello").length === 1);
  });

  it("hands each hello and heartbeat over with its connection's session: the token nonce and the enrolled key (HW-LIVE-1)", async () => {
    const device = enrolledDevice();
    const first = await connect(device);
    await first.publishAsync(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await first.publishAsync(upTopic(device.id, "heartbeat"), JSON.stringify(heartbeat(device, 1)), { qos: 1 });
    await waitFor("heartbeat handled", () => fake.callsOf("onHeartbeat").length === 1);
    const expected = { connectNonce: connectNonces.get(first), publicKey: toBase64Url(device.keys.publicKey) };
    expect(fake.callsOf("onHello")[0]?.session).toMatchObject(expected);
    expect(fake.callsOf("onHeartbeat")[0]?.session).toMatchObject({ ...expected, lastHeartbeatSeq: -1 });

    // A takeover (a second CONNECT with another token) is another session: the old nonce is not handed over.
    const second = await connect(device);
    await second.publishAsync(upTopic(device.id, "heartbeat"), JSON.stringify(heartbeat(device, 2)), { qos: 1 });
    await waitFor("second heartbeat handled", () => fake.callsOf("onHeartbeat").length === 2);
    expect(fake.callsOf("onHeartbeat")[1]?.session.connectNonce).toBe(connectNonces.get(second));
    expect(connectNonces.get(second)).not.toBe(connectNonces.get(first));
  });

  it("drops and counts an unsigned hello or heartbeat (reason unsigned) and keeps the client connected (HW-LIVE-1)", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    const { sig: _sig, ...unsignedHeartbeat } = heartbeat(device, 1);
    const { sig: _helloSig, connectNonce: _nonce, ...unsignedHello } = hello(device);
    await client.publishAsync(upTopic(device.id, "heartbeat"), JSON.stringify(unsignedHeartbeat), { qos: 1 });
    await client.publishAsync(upTopic(device.id, "hello"), JSON.stringify(unsignedHello), { qos: 1 });
    await client.publishAsync(upTopic(device.id, "heartbeat"), JSON.stringify({ ...heartbeat(device, 2), sig: "" }), { qos: 1 });
    await waitFor("unsigned hello counted", async () => (await metric("hashward_mqtt_messages_rejected_total", { kind: "hello", reason: "unsigned" })) === 1);
    expect(await metric("hashward_mqtt_messages_rejected_total", { kind: "heartbeat", reason: "unsigned" })).toBe(2);
    expect(fake.callsOf("onHeartbeat")).toHaveLength(0);
    expect(fake.callsOf("onHello")).toHaveLength(0);
    expect(client.connected).toBe(true);
  });

  it("disconnects a connected device at its next publish once it is revoked", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    enroll(device, "revoked");
    const gone = closed(client);
    client.publish(upTopic(device.id, "hello"), JSON.stringify(hello(device)), { qos: 1 });
    await gone;
    expect(fake.callsOf("onHello")).toHaveLength(0);
    expect(await metric("hashward_mqtt_acl_denied_total", { action: "publish", reason: "not-accepted" })).toBe(1);
  });

  it("hands one device's messages over in the order it sent them, however long identity re-checks take", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    // Descending delays: with an asynchronous ACL check the later packets of one read would overtake earlier ones.
    let delay = 40;
    fake.lookupDelayMs = () => (delay = Math.max(0, delay - 2));
    const sent = Array.from({ length: 20 }, (_, i) => i + 1);
    for (const seq of sent) {
      client.publish(upTopic(device.id, "heartbeat"), JSON.stringify(heartbeat(device, seq)), { qos: 0 });
    }
    await waitFor("every heartbeat handled", () => fake.callsOf("onHeartbeat").length === sent.length);
    expect(fake.callsOf("onHeartbeat").map((call) => (call.message as { seq: number }).seq)).toEqual(sent);
  });

  it("disconnect(deviceId) closes the live connection", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    const gone = closed(client);
    broker.disconnect(device.id);
    await gone;
    await waitFor("isConnected false", () => !broker.publisher.isConnected(device.id));
    broker.disconnect(newDevice().id); // unknown: no-op
  });
});

describe("a database outage during ingest (HW-FAULT-2)", () => {
  const outage = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
  const event = (device: Device, id: string) =>
    signObject(
      { v: 1 as const, type: "event" as const, deviceId: device.id, id, ts: Date.now(), kind: "guard-alert" as const, severity: "warning" as const, detail: {} },
      device.keys.privateKey,
    );

  it("a QoS 1 message is handled before its PUBACK: held while the database is out, then handled once", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    fake.failures = [outage(), outage(), outage()];
    await client.publishAsync(upTopic(device.id, "event"), JSON.stringify(event(device, "evt-held-1")), { qos: 1 });
    // The PUBACK came, so the device forgets the event: the plane must already have it.
    expect(fake.callsOf("onEvent").map((call) => call.message.id)).toEqual(["evt-held-1"]);
    expect(await metric("hashward_mqtt_ingest_retries_total", { kind: "event" })).toBe(3);
    expect(client.connected).toBe(true);
  });

  it("refuses it without a PUBACK when the outage outlasts ingestRetryMs; the device sends it again after reconnecting", async () => {
    await broker.close();
    broker = await createBroker({ deviceSide: fake, logger: pino({ level: "silent" }), registry: (registry = new Registry()), identityCacheMs: 0, ingestRetryMs: 300 });
    port = await broker.listen(0, "127.0.0.1");
    const device = enrolledDevice();
    const client = await connect(device);
    fake.failures = Array.from({ length: 1_000 }, outage);
    let pubacked = false;
    client.publish(upTopic(device.id, "event"), JSON.stringify(event(device, "evt-refused-1")), { qos: 1 }, (error) => {
      if (!error) pubacked = true;
    });
    await closed(client);
    expect(pubacked).toBe(false);
    expect(fake.callsOf("onEvent")).toEqual([]);
    expect(await metric("hashward_mqtt_messages_rejected_total", { kind: "event", reason: "unavailable" })).toBe(1);
    fake.failures = [];
    const again = await connect(device);
    await again.publishAsync(upTopic(device.id, "event"), JSON.stringify(event(device, "evt-refused-1")), { qos: 1 });
    expect(fake.callsOf("onEvent").map((call) => call.message.id)).toEqual(["evt-refused-1"]);
  });

  it("drops a QoS 0 heartbeat the database could not take (counted), keeps the device connected and its later messages flowing", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    fake.failures = [outage()];
    client.publish(upTopic(device.id, "heartbeat"), JSON.stringify(heartbeat(device, 1, connectNonces.get(client))), { qos: 0 });
    await client.publishAsync(upTopic(device.id, "heartbeat"), JSON.stringify(heartbeat(device, 2, connectNonces.get(client))), { qos: 1 });
    expect(fake.callsOf("onHeartbeat").map((call) => call.message.seq)).toEqual([2]);
    expect(await metric("hashward_mqtt_messages_rejected_total", { kind: "heartbeat", reason: "unavailable" })).toBe(1);
    expect(client.connected).toBe(true);
  });
});

describe("subscribe ACL and publisher", () => {
  function command(deviceId: string, seq: number): Command {
    return signObject(
      {
        v: 1 as const,
        type: "command" as const,
        deviceId,
        seq,
        issuedAt: Date.now(),
        expiresAt: Date.now() + 60_000,
        action: "quarantine" as const,
        params: {},
      },
      generateKeyPair().privateKey,
    );
  }

  it("delivers the plane's QoS 1 command on the device's own down/ filter", async () => {
    const device = enrolledDevice();
    const client = await connect(device);
    const granted = await client.subscribeAsync(downFilter(device.id), { qos: 1 });
    expect(granted[0]?.qos).toBe(1);
    const received = new Promise<{ topic: string; payload: Buffer }>((resolve) =>
      client.once("message", (topic, payload) => resolve({ topic, payload })),
    );
    await broker.publisher.publish(device.id, "command", command(device.id, 1));
    const message = await received;
    expect(message.topic).toBe(downTopic(device.id, "command"));
    expect(JSON.parse(message.payload.toString()).seq).toBe(1);
  });

  it.each([0, 1, 2] as const)("grants QoS min(%i, 1) in the SUBACK and delivers at that QoS (HW-MQTT-1)", async (requested) => {
    const device = enrolledDevice();
    const client = await connect(device);
    const granted = await client.subscribeAsync(downFilter(device.id), { qos: requested });
    expect(granted[0]?.qos).toBe(Math.min(requested, 1));
    const received = new Promise<{ qos: number }>((resolve) => client.once("message", (_topic, _payload, packet) => resolve({ qos: packet.qos })));
    await broker.publisher.publish(device.id, "command", command(device.id, 1));
    expect((await received).qos).toBe(Math.min(requested, 1));
  });

  it("refuses to publish a message for one device on another's topic", async () => {
    await expect(broker.publisher.publish(newDevice().id, "command", command(newDevice().id, 1))).rejects.toBeInstanceOf(ValidationError);
  });

  it.each(["victim-down", "wildcard", "up"])("disconnects a device subscribing to a %s topic", async (which) => {
    const device = newDevice();
    const victim = newDevice();
    enroll(device);
    const client = await connect(device);
    const topic = { "victim-down": downFilter(victim.id), wildcard: "#", up: upTopic(device.id, "hello") }[which]!;
    const gone = closed(client);
    client.subscribe(topic, { qos: 1 });
    await gone;
    expect(await metric("hashward_mqtt_acl_denied_total", { action: "subscribe", reason: "foreign-topic" })).toBe(1);
  });

  it("never forwards one device's up/ messages to another device", async () => {
    const a = newDevice();
    const b = newDevice();
    enroll(a);
    enroll(b);
    const clientA = await connect(a);
    const clientB = await connect(b);
    await clientB.subscribeAsync(downFilter(b.id), { qos: 1 });
    const seen: string[] = [];
    clientB.on("message", (topic) => seen.push(topic));
    await clientA.publishAsync(upTopic(a.id, "hello"), JSON.stringify(hello(a)), { qos: 1 });
    await broker.publisher.publish(b.id, "command", command(b.id, 7));
    await waitFor("B's own command", () => seen.length === 1);
    expect(seen).toEqual([downTopic(b.id, "command")]);
  });
});

describe("robustness", () => {
  it("survives garbage bytes on the socket", async () => {
    await new Promise<void>((resolve) => {
      const socket = connectTcp(port, "127.0.0.1", () => socket.end(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00])));
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    const device = enrolledDevice();
    await connect(device);
  });

  it("keeps delivering when many more messages arrive than are being delivered (10,000 devices once crashed the plane)", async () => {
    // aedes' default of 100 deliveries at once queued the rest; a message nobody subscribes to (every device
    // message: the plane takes them in authorizePublish) completes synchronously, so draining a long queue recursed
    // once per message until "Maximum call stack size exceeded" ended the process (quarantine-fanout-10k, where
    // slow TLS sockets held deliveries). Here a listener holds 200 deliveries until 50,000 more messages wait.
    const held: Array<() => void> = [];
    await new Promise<void>((resolve) => broker.aedes.subscribe("bench/held", (_packet, callback) => void held.push(callback), resolve));
    const total = 200 + 50_000;
    let published = 0;
    const done = () => void published++;
    const packet = (topic: string) => ({ cmd: "publish" as const, topic, payload: Buffer.from("{}"), qos: 0 as const, retain: false, dup: false });
    for (let i = 0; i < 200; i++) broker.aedes.publish(packet("bench/held"), done);
    for (let i = 200; i < total; i++) broker.aedes.publish(packet("bench/unsubscribed"), done);
    await waitFor("deliveries held", () => held.length > 0);
    for (const release of held.splice(0)) release();
    await waitFor("every publish handled", () => {
      for (const release of held.splice(0)) release();
      return published === total;
    });
  });

  it("close() is idempotent and waits for ingest", async () => {
    const device = enrolledDevice();
    await connect(device);
    await Promise.all([broker.close(), broker.close()]);
    expect(fake.callsOf("onDisconnected")).toHaveLength(1);
  });
});

describe("bounded logging of attacker-chosen input (HW-LOG-1)", () => {
  let logged: string[];
  let loudBroker: Broker;
  let loudPort: number;

  beforeEach(async () => {
    logged = [];
    const sink = { write: (line: string) => void logged.push(line) };
    // Info is the production default; debug adds one clipped line per connection.
    loudBroker = await createBroker({ deviceSide: fake, logger: pino({ level: "info" }, sink), registry: new Registry(), identityCacheMs: 0 });
    loudPort = await loudBroker.listen(0, "127.0.0.1");
  });

  afterEach(async () => {
    await loudBroker.close();
  });

  function attempt(options: { clientId: string; username: string; password: string }): Promise<void> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${loudPort}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    clients.push(client);
    return new Promise((resolve) => {
      client.once("error", () => resolve());
      client.once("close", () => resolve());
    });
  }

  it("20 refused CONNECTs per kind with 60 KB usernames, client ids and passwords write a few short lines", async () => {
    const huge = (seed: number) => `${seed}`.padEnd(60_000, "x");
    const device = enrolledDevice();
    for (let i = 0; i < 20; i++) {
      // Each attempt chooses a new username: a throttle keyed on it would log every one.
      await attempt({ clientId: huge(i), username: huge(i), password: "p" }); // bad-username
      await attempt({ clientId: huge(i), username: device.id, password: "p" }); // client-id-mismatch
      await attempt({ clientId: device.id, username: device.id, password: huge(i) }); // bad-token (too long)
    }
    const bytes = logged.reduce((sum, line) => sum + line.length, 0);
    const refusals = logged.filter((line) => line.includes("mqtt connect refused"));
    expect(refusals).toHaveLength(3); // one per (peer address, reason) per minute
    for (const line of logged) expect(line.length).toBeLessThan(1_500);
    expect(bytes).toBeLessThan(5_000); // 60 attempts; before: over 3.6 MB
    expect(refusals.join("")).toContain("60000 chars");
  });

  it("clips a 60 KB topic of a refused SUBSCRIBE", async () => {
    const client = await connect(enrolledDevice(), { port: loudPort });
    const gone = closed(client);
    client.subscribe(`asic/v1/${"y".repeat(60_000)}`, { qos: 1 });
    await gone;
    const refusal = logged.find((line) => line.includes("ACL violation"));
    expect(refusal).toBeDefined();
    expect(refusal!.length).toBeLessThan(1_500);
  });
});

describe("session takeover (HW-AUTH-2)", () => {
  it("a second authenticated CONNECT under a connected device's id: warn line with both peers, metric, service told; no takeover on a plain reconnect", async () => {
    const logged: string[] = [];
    const sink = { write: (line: string) => void logged.push(line) };
    const localRegistry = new Registry();
    const watched = await createBroker({ deviceSide: fake, logger: pino({ level: "info" }, sink), registry: localRegistry, identityCacheMs: 0 });
    const watchedPort = await watched.listen(0, "127.0.0.1");
    try {
      const device = enrolledDevice();
      const open = () => connect(device, { port: watchedPort });
      const first = await open();
      await first.endAsync(); // a clean disconnect, then a reconnect: not a takeover
      await waitFor("first disconnect", () => fake.callsOf("onDisconnected").length === 1);
      const second = await open();
      const secondGone = closed(second);
      await open(); // takes the live session over
      await secondGone;
      await waitFor("onSessionTakeover", () => fake.callsOf("onSessionTakeover").length === 1);
      expect(fake.callsOf("onSessionTakeover")[0]).toMatchObject({ deviceId: device.id, peers: { previousPeer: "127.0.0.1", newPeer: "127.0.0.1" } });
      const metric = await localRegistry.getSingleMetric("hashward_mqtt_session_takeovers_total")!.get();
      expect(metric.values[0]?.value).toBe(1);
      const warn = logged.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => String(line.msg).startsWith("mqtt session takeover"));
      expect(warn).toHaveLength(1);
      expect(warn[0]).toMatchObject({ level: 40, deviceId: device.id, previousPeer: "127.0.0.1", newPeer: "127.0.0.1" });
      expect(watched.publisher.isConnected(device.id)).toBe(true);
    } finally {
      await watched.close();
    }
  });
});
