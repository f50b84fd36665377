/**
 * HW-AUTH-2 through the whole plane in one process (real broker, real PGlite, real HTTP API, real MQTT clients):
 * three takeovers of a device's session within the window leave it `warning` with three stored events, where
 * before they left it `trusted, connected` with two info lines.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createConnectToken } from "../../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../shared/crypto/index.js";
import { ApiClient, planeFetch } from "../../../test/support/api.js";
import { waitFor } from "../../../test/support/wait.js";
import type { Plane } from "./index.js";
import { startTestPlane, type TestPlane } from "./testing/index.js";

let running: TestPlane;
let plane: Plane;
let caPem: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  running = await startTestPlane("hw-takeover-", { HASHWARD_SESSION_TAKEOVER_THRESHOLD: "3", HASHWARD_SESSION_TAKEOVER_WINDOW_MS: "600000" });
  ({ plane, caPem } = running);
}, 180_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  await running?.close();
});

it("three session takeovers make the device `warning` with three session-takeover events (HW-AUTH-2)", async () => {
  const admin = new ApiClient(plane.httpUrl, plane.adminToken);
  const keys = generateKeyPair();
  const deviceId = deviceIdFromPublicKey(keys.publicKey);
  await admin.post("/api/v1/devices/preauthorize", { publicKey: toBase64Url(keys.publicKey), model: "S19" });
  // preauthorized devices are accepted on arrival: enroll is not needed for the broker, only `accepted`.
  await waitFor("device listed", async () => (await admin.get(`/api/v1/devices/${deviceId}`)).enrollment === "accepted", { timeoutMs: 30_000 });

  const connect = () =>
    new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(plane.mqttUrl, {
        protocolVersion: 4,
        clientId: deviceId,
        username: deviceId,
        password: createConnectToken(deviceId, keys.privateKey, Date.now()),
        reconnectPeriod: 0,
        ca: caPem,
      });
      clients.push(client);
      client.once("connect", () => resolve(client));
      client.once("error", reject);
    });
  await connect();
  for (let i = 0; i < 3; i++) await connect(); // each one replaces the live session

  const device = await waitFor("appraisal warning", async () => {
    const view = await admin.get(`/api/v1/devices/${deviceId}`);
    return view.appraisal === "warning" ? view : undefined;
  }, { timeoutMs: 60_000 });
  expect(device.connected).toBe(true);
  const { events } = await admin.get(`/api/v1/devices/${deviceId}/events?limit=10`);
  expect((events as Array<{ kind: string }>).filter((e) => e.kind === "session-takeover")).toHaveLength(3);
  const { transitions } = await admin.get(`/api/v1/devices/${deviceId}/history?limit=5`);
  expect(transitions[0]).toMatchObject({ machine: "appraisal", to: "warning", reason: expect.stringContaining("session takeover") });
  const metrics = await (await planeFetch(`${plane.httpUrl}/metrics`)).text();
  expect(metrics).toMatch(/^hashward_mqtt_session_takeovers_total 3$/m);
}, 180_000);
