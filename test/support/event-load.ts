/**
 * Devices under load for the broker fail-over tests: mqtt.js clients holding real device keys (preauthorized
 * through the API), a fresh single-use connect token on every (re)connection, a server list to fail over along,
 * each publishing signed events at QoS 1 and keeping the ids RabbitMQ acknowledged (PUBACK): each must be stored.
 */
import { randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import { createConnectToken } from "../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url, type KeyPair } from "../../shared/crypto/index.js";
import { upTopic, type DeviceEvent } from "../../shared/protocol/index.js";
import type { ApiClient } from "./api.js";
import { waitFor } from "./wait.js";

export interface LoadDevice {
  id: string;
  keys: KeyPair;
  client: MqttClient;
  /** Event ids RabbitMQ acknowledged (PUBACK). */
  acked: string[];
}

/** Preauthorizes and connects a device; `mqttPorts` on 127.0.0.1, tried in this order on every reconnect. */
export async function loadDevice(admin: ApiClient, mqttPorts: number[]): Promise<LoadDevice> {
  const keys = generateKeyPair();
  const id = deviceIdFromPublicKey(keys.publicKey);
  await admin.post("/api/v1/devices/preauthorize", { publicKey: toBase64Url(keys.publicKey), model: "S19" });
  const client = mqtt.connect({
    servers: mqttPorts.map((port) => ({ host: "127.0.0.1", port })),
    protocol: "mqtt",
    protocolVersion: 4, clientId: id, username: id, password: createConnectToken(id, keys.privateKey, Date.now()),
    reconnectPeriod: 300, connectTimeout: 10_000, clean: true,
  });
  // Tokens are single-use (HW-AUTH-1): the next connection attempt gets a new one.
  client.on("close", () => (client.options.password = createConnectToken(id, keys.privateKey, Date.now()) as never));
  client.on("error", () => undefined);
  return { id, keys, client, acked: [] };
}

/** Starts every device publishing signed events; the returned function stops them and resolves when they stopped. */
export function publishEvents(devices: readonly LoadDevice[]): () => Promise<void> {
  let sending = true;
  const send = async (device: LoadDevice): Promise<void> => {
    while (sending) {
      if (!device.client.connected) {
        await new Promise((resolve) => device.client.once("connect", resolve));
        continue;
      }
      const event: DeviceEvent = signObject(
        { v: 1 as const, type: "event" as const, deviceId: device.id, id: `ev-${randomBytes(8).toString("hex")}`, ts: Date.now(), kind: "watch-change" as const, severity: "info" as const, detail: {} },
        device.keys.privateKey,
      );
      const ok = await device.client.publishAsync(upTopic(device.id, "event"), JSON.stringify(event), { qos: 1 }).then(() => true, () => false);
      if (ok) device.acked.push(event.id);
      // Load-generator pacing (10 events/s per device), not a synchronisation: each device's events stay within
      // one page of the events API.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const senders = devices.map((device) => send(device));
  return async () => {
    sending = false;
    devices.forEach((d) => d.client.emit("connect", {} as never)); // wake senders parked on a reconnect
    await Promise.all(senders);
  };
}

/** Waits until every event RabbitMQ acknowledged is listed by the plane (stored once: ids are unique per device). */
export async function expectAckedEventsStored(admin: ApiClient, devices: readonly LoadDevice[]): Promise<void> {
  for (const device of devices) {
    await waitFor(`${device.id}'s ${device.acked.length} acknowledged events stored`, async () => {
      const { events } = await admin.get(`/api/v1/devices/${device.id}/events?limit=1000`);
      const ids = (events as { id: string }[]).map((e) => e.id);
      if (new Set(ids).size !== ids.length) throw new Error(`${device.id}: an event stored twice`);
      return device.acked.every((id) => ids.includes(id));
    }, { timeoutMs: 120_000 });
  }
}
