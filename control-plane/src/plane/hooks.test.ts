/**
 * The production wiring of the services' hooks, through the whole plane in one process (real broker, real PGlite,
 * real HTTP API, real MQTT clients): what control-plane/src/plane registers is what the device side and the operator
 * service call. Fails if the plane stops registering policy delivery on hello or stops wiring the publisher's
 * `disconnect` to the broker.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issueConnectToken } from "../../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, type KeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import { type Command, downFilter, upTopic } from "../../../shared/protocol/index.js";
import { ApiClient } from "../../../test/support/api.js";
import type { Plane } from "./index.js";
import { startTestPlane, type TestPlane } from "./testing/index.js";

let running: TestPlane;
let plane: Plane;
let caPem: string;
let admin: ApiClient;
const clients: MqttClient[] = [];

beforeAll(async () => {
  running = await startTestPlane("hw-plane-hooks-");
  ({ plane, caPem } = running);
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
}, 180_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  await running?.close();
});

/** An accepted device (pre-authorized: accepted on arrival) with a live MQTT session and its connect nonce. */
async function connectedDevice(): Promise<{ deviceId: string; keys: KeyPair; client: MqttClient; connectNonce: string }> {
  const keys = generateKeyPair();
  const deviceId = deviceIdFromPublicKey(keys.publicKey);
  await admin.post("/api/v1/devices/preauthorize", { publicKey: toBase64Url(keys.publicKey), model: "S19" });
  const { token, claims } = issueConnectToken(deviceId, keys.privateKey, Date.now());
  const client = await new Promise<MqttClient>((resolve, reject) => {
    const c = mqtt.connect(plane.mqttUrl, { protocolVersion: 4, clientId: deviceId, username: deviceId, password: token, reconnectPeriod: 0, ca: caPem });
    clients.push(c);
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
  return { deviceId, keys, client, connectNonce: claims.nonce };
}

it("revoking a connected device drops its MQTT session at once (the operator service's publisher.disconnect)", async () => {
  const device = await connectedDevice();
  const closed = new Promise<void>((resolve) => device.client.once("close", () => resolve()));
  await admin.post(`/api/v1/devices/${device.deviceId}/revoke`, { reason: "stolen" });
  await closed;
  expect(device.client.connected).toBe(false);
}, 120_000);

it("a hello gets the device's due guard policy as a signed set-policy before the challenge (the beforeHello hook)", async () => {
  await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: ["stratum+tcp://pool.example.net:3333"] });
  // Created after the policy: no bulk delivery reached it, so only the hello can bring it.
  const device = await connectedDevice();
  const received: Array<{ type: string; action?: string }> = [];
  const challenged = new Promise<void>((resolve) => {
    device.client.on("message", (_topic, payload) => {
      const message = JSON.parse(payload.toString()) as { type: string; action?: string };
      received.push(message);
      if (message.type === "challenge") resolve();
    });
  });
  await device.client.subscribeAsync(downFilter(device.deviceId), { qos: 1 });
  const hello = signObject(
    {
      v: 1 as const,
      type: "hello" as const,
      deviceId: device.deviceId,
      connectNonce: device.connectNonce,
      model: "S19",
      firmwareVersion: "1.0.0",
      agentVersion: "0.1.0",
      bootId: "boot-1",
      containment: "none" as const,
      lastCommandSeq: 0,
      ts: Date.now(),
    },
    device.keys.privateKey,
  );
  await device.client.publishAsync(upTopic(device.deviceId, "hello"), JSON.stringify(hello), { qos: 1 });
  await challenged;
  const commands = received.filter((m): m is Command => m.type === "command");
  expect(commands.map((c) => c.action)).toContain("set-policy");
  expect(received.at(-1)?.type).toBe("challenge");
}, 120_000);
