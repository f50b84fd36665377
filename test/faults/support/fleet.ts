/**
 * A fleet of lightweight devices for the fault campaigns: the bench's simulated devices (real Ed25519 keys, real
 * signed enrollment, real MQTT CONNECT with single-use connect tokens; bench/support/devices.ts) plus the parts of
 * the agent a fault exercises, written the way the agent does them:
 *   - commands: verified with the plane's pinned command key (shared verifyCommand, HW-CMD-1); a redelivery of the
 *     last executed command (same seq and signature) re-sends the stored ack and executes nothing
 *     (agent/src/commands step 1); every execution is counted, so "applied twice" is visible;
 *   - an outbox: acks and events stay queued until their PUBACK and are sent again after a reconnect
 *     (agent/src/outbox);
 *   - reconnects by itself with a fresh connect token and backoff, then a signed hello (containment, last command
 *     seq) so the plane re-sends pending commands (agent/src/session);
 *   - signed heartbeats for the current connection (HW-LIVE-1) on a timer.
 * Only what is asserted is simulated: no measurements, no evidence.
 */
import type { MqttClient } from "mqtt";
import {
  createFastSigner, fromBase64Url, signObject, verifyCommand, type Ack, type Command, type DeviceEvent, type Hello,
} from "../../../shared/index.js";
import { upTopic } from "../../../shared/protocol/index.js";
import { BENCH_FIRMWARE, BENCH_MODEL, connectDevice, enrollAll, heartbeatPayload, heartbeatTopic, makeDevices, type SimDevice } from "../../../bench/support/devices.js";
import { mapPool } from "../../../bench/support/report.js";

interface OutboxEntry {
  topic: string;
  payload: string;
  /** Event id or `ack-<seq>`: what the plane must have stored once this is PUBACKed. */
  key: string;
}

export interface FleetDevice extends SimDevice {
  /** Seq and signature of the last executed command, and its stored ack (agent state.json). */
  lastSeq: number;
  lastSig: string | null;
  storedAck: Ack | null;
  containment: "none" | "quarantined";
  /** Executions per command seq: a seq executed twice is a doubled command. */
  executions: Map<number, number>;
  /** Every delivery of a command (redeliveries included), by seq. */
  deliveries: Map<number, number>;
  /** Commands refused by verifyCommand (replays of older seqs, bad signatures), with the reason. */
  refused: string[];
  outbox: OutboxEntry[];
  /** Keys of outbox entries whose PUBACK arrived (the device forgot them: the plane must have them). */
  puback: Set<string>;
  heartbeatSeq: number;
  connections: number;
}

export interface FleetPlane {
  httpUrl: string;
  mqttUrl: string;
  caPem: string | null;
}

const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 3_000;

export class Fleet {
  readonly devices: FleetDevice[];
  #commandKey: Uint8Array | null = null;
  #stopped = false;
  #heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  #startedAt = Date.now();
  #reconnects = new Set<ReturnType<typeof setTimeout>>();
  #parked = new Set<FleetDevice>();

  constructor(
    private readonly plane: FleetPlane,
    count: number,
  ) {
    this.devices = makeDevices(count).map((device) => ({
      ...device,
      lastSeq: 0,
      lastSig: null,
      storedAck: null,
      containment: "none" as const,
      executions: new Map(),
      deliveries: new Map(),
      refused: [],
      outbox: [],
      puback: new Set(),
      heartbeatSeq: 0,
      connections: 0,
    }));
  }

  get ids(): string[] {
    return this.devices.map((device) => device.deviceId);
  }

  /** Enrolls every device with `token` (accepted at once); pins the plane's command key from the answer. */
  async enroll(token: string): Promise<void> {
    await enrollAll(this.plane.httpUrl, this.devices, token);
    const key = this.devices[0]?.commandPublicKey;
    if (!key) throw new Error("the enrollment answer carried no commandPublicKey");
    this.#commandKey = fromBase64Url(key);
  }

  /** Connects every device (CONNECT, SUBSCRIBE down/#, hello); from then on each reconnects by itself. */
  async connect(concurrency = 32): Promise<void> {
    await mapPool(this.devices, concurrency, (device) => this.#connectOnce(device));
  }

  /** Signed heartbeats (QoS 0) from every connected device every `intervalMs`. */
  startHeartbeats(intervalMs: number): void {
    this.#heartbeatTimer = setInterval(() => {
      for (const device of this.devices) {
        const client = device.client;
        if (!client?.connected || !device.connectNonce) continue;
        device.heartbeatSeq += 1;
        client.publish(heartbeatTopic(device), heartbeatPayload(device, device.heartbeatSeq, this.#startedAt), { qos: 0 });
      }
    }, intervalMs);
  }

  /** Queues one signed `guard-alert` event per device in its outbox (sent now if connected). Returns the ids. */
  sendEvents(tag: string): string[] {
    return this.devices.map((device, index) => {
      const id = `${tag}-${index}`;
      const event: DeviceEvent = signObject(
        { v: 1 as const, type: "event" as const, deviceId: device.deviceId, id, ts: Date.now(), kind: "guard-alert" as const, severity: "warning" as const, detail: { guard: "fault-campaign", tag } },
        device.keyPair.privateKey,
        signerFor(device),
      );
      this.#enqueue(device, { topic: upTopic(device.deviceId, "event"), payload: JSON.stringify(event), key: id });
      return id;
    });
  }

  /** Devices whose outbox still holds something (not yet PUBACKed). */
  unsent(): number {
    return this.devices.filter((device) => device.outbox.length > 0).length;
  }

  connected(): number {
    return this.devices.filter((device) => device.client?.connected).length;
  }

  /** Takes `devices` offline for good (a miner powered off): disconnected, never reconnecting. */
  async park(devices: readonly FleetDevice[]): Promise<void> {
    for (const device of devices) this.#parked.add(device);
    await Promise.all(
      devices.map(async (device) => {
        const client = device.client;
        device.client = undefined;
        await client?.endAsync(true).catch(() => undefined);
      }),
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    for (const timer of this.#reconnects) clearTimeout(timer);
    await mapPool(this.devices, 64, async (device) => {
      const client = device.client;
      device.client = undefined;
      await client?.endAsync(true).catch(() => undefined);
    });
  }

  async #connectOnce(device: FleetDevice): Promise<void> {
    const client = await connectDevice(this.plane.mqttUrl, device, { subscribeDown: true, ca: this.plane.caPem });
    device.connections += 1;
    client.on("message", (topic, payload) => {
      if (topic.endsWith("/down/command")) this.#onCommand(device, payload.toString("utf8"));
    });
    client.on("close", () => {
      if (device.client === client) this.#scheduleReconnect(device, 0);
    });
    client.on("error", () => undefined); // a reset socket closes the client; the close handler reconnects
    // The agent's hello: what the device believes, so the plane re-sends what is still pending (HW-Q-1).
    const hello: Hello = signObject(
      {
        v: 1 as const, type: "hello" as const, deviceId: device.deviceId, connectNonce: device.connectNonce!, model: BENCH_MODEL,
        firmwareVersion: BENCH_FIRMWARE, agentVersion: "fault-fleet", bootId: "fault-fleet", containment: device.containment,
        lastCommandSeq: device.lastSeq, ts: Date.now(),
      },
      device.keyPair.privateKey,
      signerFor(device),
    );
    client.publish(upTopic(device.deviceId, "hello"), JSON.stringify(hello), { qos: 1 });
    for (const entry of device.outbox) this.#send(device, entry);
  }

  #scheduleReconnect(device: FleetDevice, attempt: number): void {
    if (this.#stopped || this.#parked.has(device)) return;
    device.client = undefined;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    const timer = setTimeout(() => {
      this.#reconnects.delete(timer);
      if (this.#stopped) return;
      this.#connectOnce(device).catch(() => this.#scheduleReconnect(device, attempt + 1));
    }, delay);
    this.#reconnects.add(timer);
  }

  #enqueue(device: FleetDevice, entry: OutboxEntry): void {
    device.outbox.push(entry);
    if (device.client?.connected) this.#send(device, entry);
  }

  #send(device: FleetDevice, entry: OutboxEntry): void {
    const client: MqttClient | undefined = device.client;
    if (!client) return;
    client.publish(entry.topic, entry.payload, { qos: 1 }, (error) => {
      if (error) return; // left in the outbox: sent again after the next connect
      const index = device.outbox.indexOf(entry);
      if (index < 0) return;
      device.outbox.splice(index, 1);
      device.puback.add(entry.key);
    });
  }

  #onCommand(device: FleetDevice, text: string): void {
    let command: Command;
    try {
      command = JSON.parse(text) as Command;
    } catch {
      device.refused.push("not JSON");
      return;
    }
    device.deliveries.set(command.seq, (device.deliveries.get(command.seq) ?? 0) + 1);
    // Step 1 of the agent: a redelivered last command re-sends its stored ack, changes nothing.
    if (device.storedAck && command.seq === device.lastSeq && command.sig === device.lastSig) {
      this.#enqueueAck(device, device.storedAck);
      return;
    }
    try {
      verifyCommand(command, this.#commandKey!, { deviceId: device.deviceId, lastSeq: device.lastSeq, nowMs: Date.now() }); // HW-CMD-1
    } catch (error) {
      device.refused.push(error instanceof Error ? error.message : String(error));
      return;
    }
    device.executions.set(command.seq, (device.executions.get(command.seq) ?? 0) + 1);
    if (command.action === "quarantine") device.containment = "quarantined";
    if (command.action === "release") device.containment = "none";
    const ack: Ack = signObject(
      {
        v: 1 as const, type: "ack" as const, deviceId: device.deviceId, seq: command.seq, action: command.action, status: "done" as const,
        containment: device.containment, ts: Date.now(),
      },
      device.keyPair.privateKey,
      signerFor(device),
    );
    device.lastSeq = command.seq;
    device.lastSig = command.sig;
    device.storedAck = ack;
    this.#enqueueAck(device, ack);
  }

  #enqueueAck(device: FleetDevice, ack: Ack): void {
    const key = `ack-${ack.seq}`;
    if (device.outbox.some((entry) => entry.key === key)) return; // already queued: one is enough
    this.#enqueue(device, { topic: upTopic(device.deviceId, "ack"), payload: JSON.stringify(ack), key });
  }
}

const signers = new WeakMap<FleetDevice, (message: Uint8Array) => Uint8Array>();
function signerFor(device: FleetDevice): (message: Uint8Array) => Uint8Array {
  let signer = signers.get(device);
  if (!signer) signers.set(device, (signer = createFastSigner(device.keyPair.privateKey)));
  return signer;
}
