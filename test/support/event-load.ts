/**
 * Devices under load for the broker fail-over tests: mqtt.js clients holding real device keys (preauthorized
 * through the API), a fresh single-use connect token on every (re)connection, a server list to fail over along,
 * each publishing signed events at QoS 1 and keeping the ids RabbitMQ acknowledged (PUBACK): each must be stored.
 */
import { randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import { createConnectToken } from "../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url, type KeyPair } from "../../shared/crypto/index.js";
import { downFilter, parseTopic, upTopic, type Ack, type Command, type DeviceEvent } from "../../shared/protocol/index.js";
import type { ApiClient } from "./api.js";
import { waitFor } from "./wait.js";

export interface LoadDevice {
  id: string;
  keys: KeyPair;
  client: MqttClient;
  /** Event ids RabbitMQ acknowledged (PUBACK). */
  acked: string[];
  /** Command seq -> times the broker delivered it (QoS 1 and the plane's retry timer may deliver a seq again). */
  deliveries: Map<number, number>;
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
  return { id, keys, client, acked: [], deliveries: new Map() };
}

/** The signed `done` ack the agent sends for `command` (containment `quarantined` after a quarantine, else `none`). */
export function signedAckFor(command: Pick<Command, "seq" | "action">, deviceId: string, privateKey: Uint8Array): Ack {
  return signObject(
    {
      v: 1 as const,
      type: "ack" as const,
      deviceId,
      seq: command.seq,
      action: command.action,
      status: "done" as const,
      containment: command.action === "quarantine" ? ("quarantined" as const) : ("none" as const),
      ts: Date.now(),
    },
    privateKey,
  );
}

/**
 * Makes the device take commands as the agent does (HW-CMD-1): subscribe to its own down topics at QoS 1 (mqtt.js
 * subscribes again after every reconnect), count every delivery per seq, execute each seq once and ack it signed
 * at QoS 1, and answer a redelivered seq with the stored ack again (the agent's idempotent re-ack). Resolves once
 * subscribed.
 */
export async function takeCommands(device: LoadDevice): Promise<void> {
  const acks = new Map<number, string>();
  device.client.on("message", (topic, payload) => {
    if (parseTopic(topic)?.direction !== "down" || !topic.endsWith("/command")) return;
    const command = JSON.parse(payload.toString("utf8")) as Command;
    device.deliveries.set(command.seq, (device.deliveries.get(command.seq) ?? 0) + 1);
    const stored = acks.get(command.seq);
    if (stored !== undefined) {
      device.client.publish(upTopic(device.id, "ack"), stored, { qos: 1 });
      return;
    }
    const ack = signedAckFor(command, device.id, device.keys.privateKey);
    acks.set(command.seq, JSON.stringify(ack));
    device.client.publish(upTopic(device.id, "ack"), JSON.stringify(ack), { qos: 1 });
  });
  await device.client.subscribeAsync(downFilter(device.id), { qos: 1 });
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
