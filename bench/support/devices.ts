/**
 * Simulated devices for the load benches: real Ed25519 identities, real signed enrollment over HTTP and real
 * MQTT 3.1.1 sessions (mqtt.js, in this process), speaking the shared protocol exactly as the agent does, but
 * without the agent's timers so a bench controls what is sent and when.
 */
import mqtt, { type MqttClient } from "mqtt";
import {
  createFastSigner, deviceIdFromPublicKey, generateKeyPair, issueConnectToken, signObject, toBase64Url, type KeyPair,
} from "../../shared/index.js";
import { downFilter, upTopic, type Heartbeat } from "../../shared/protocol/index.js";
import { fetchRetryingReset } from "../../shared/http/retry.js";
import { planeFetch } from "../../test/support/api.js";
import { mapPool } from "./report.js";

export const BENCH_MODEL = "S19-bench";
export const BENCH_FIRMWARE = "2024.06.1";

export interface SimDevice {
  deviceId: string;
  keyPair: KeyPair;
  client?: MqttClient;
  /** Nonce of the connect token of the current connection: signed into heartbeats (HW-LIVE-1). */
  connectNonce?: string;
  /** The plane's command-signing key (base64url) from the enrollment answer: what an agent pins. */
  commandPublicKey?: string;
}

export function makeDevices(count: number): SimDevice[] {
  return Array.from({ length: count }, () => {
    const keyPair = generateKeyPair();
    return { deviceId: deviceIdFromPublicKey(keyPair.publicKey), keyPair };
  });
}

/** POST /api/v1/enroll with a signed request; returns the enrollment state the plane answered. */
export async function enrollDevice(httpUrl: string, device: SimDevice, enrollmentToken: string): Promise<string> {
  const request = signObject(
    {
      v: 1 as const,
      type: "enroll" as const,
      deviceId: device.deviceId,
      publicKey: toBase64Url(device.keyPair.publicKey),
      model: BENCH_MODEL,
      firmwareVersion: BENCH_FIRMWARE,
      agentVersion: "bench",
      enrollmentToken,
      ts: Date.now(),
    },
    device.keyPair.privateKey,
  );
  // HW-HTTP-4: enrollment is idempotent; one retry on a reused connection's reset, as the agent does.
  const response = await fetchRetryingReset(
    planeFetch,
    `${httpUrl}/api/v1/enroll`,
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request) },
    { idempotent: true },
  );
  const body = (await response.json().catch(() => ({}))) as { enrollment?: string; commandPublicKey?: string };
  if (response.status !== 200) throw new Error(`enroll ${device.deviceId} -> ${response.status}: ${JSON.stringify(body)}`);
  if (body.commandPublicKey) device.commandPublicKey = body.commandPublicKey;
  return body.enrollment ?? "unknown";
}

/** Enrolls every device with bounded concurrency; returns the elapsed milliseconds. */
export async function enrollAll(httpUrl: string, devices: readonly SimDevice[], enrollmentToken: string, concurrency = 16): Promise<number> {
  const started = performance.now();
  const states = await mapPool(devices, concurrency, (device) => enrollDevice(httpUrl, device, enrollmentToken));
  const notAccepted = states.filter((state) => state !== "accepted").length;
  if (notAccepted > 0) throw new Error(`${notAccepted} of ${devices.length} devices were not accepted at enrollment`);
  return performance.now() - started;
}

/**
 * MQTT CONNECT as the agent does it: clientId = username = deviceId, password = a fresh connect token
 * (single use, so a new one per connection). A bare broker ignores the credentials.
 */
export async function connectDevice(mqttUrl: string, device: SimDevice, { subscribeDown, ca }: { subscribeDown: boolean; ca?: string | null }): Promise<MqttClient> {
  const { token, claims } = issueConnectToken(device.deviceId, device.keyPair.privateKey, Date.now());
  const client = await mqtt.connectAsync(mqttUrl, {
    protocolVersion: 4,
    clientId: device.deviceId,
    username: device.deviceId,
    password: token,
    clean: true,
    keepalive: 120,
    reconnectPeriod: 0,
    connectTimeout: 60_000,
    // mqtts:// (HW-TLS-1): the plane's own CA is the only trust anchor, as on an agent.
    ...(ca ? { ca } : {}),
  });
  if (subscribeDown) await client.subscribeAsync(downFilter(device.deviceId), { qos: 1 });
  device.client = client;
  device.connectNonce = claims.nonce;
  return client;
}

/** Connects every device with bounded concurrency; returns the elapsed milliseconds. */
export async function connectAll(
  mqttUrl: string,
  devices: readonly SimDevice[],
  { subscribeDown = false, concurrency = 32, ca = null }: { subscribeDown?: boolean; concurrency?: number; ca?: string | null } = {},
): Promise<number> {
  const started = performance.now();
  await mapPool(devices, concurrency, (device) => connectDevice(mqttUrl, device, { subscribeDown, ca }));
  return performance.now() - started;
}

export async function disconnectAll(devices: readonly SimDevice[]): Promise<void> {
  await mapPool(devices, 64, async (device) => {
    const client = device.client;
    device.client = undefined;
    if (client) await client.endAsync(true).catch(() => undefined);
  });
}

const signers = new WeakMap<SimDevice, (message: Uint8Array) => Uint8Array>();

/**
 * A heartbeat as the agent sends it: signed by the device key for the device's current connection (HW-LIVE-1);
 * telemetry.accepted carries seq so persistence can be checked. Signed through node:crypto (same bytes as the
 * agent's @noble/ed25519 signature, Ed25519 is deterministic) so building payloads stays cheap.
 */
export function heartbeatPayload(device: SimDevice, seq: number, startedAt: number, telemetry?: Heartbeat["telemetry"]): string {
  if (!device.connectNonce) throw new Error(`${device.deviceId} is not connected: a heartbeat is signed for a connection`);
  const body = {
    v: 1 as const,
    type: "heartbeat" as const,
    deviceId: device.deviceId,
    connectNonce: device.connectNonce,
    seq,
    ts: Date.now(),
    uptimeMs: Date.now() - startedAt,
    containment: "none" as const,
    outboxDepth: 0,
    telemetry: telemetry ?? { hashrateGhs: 95_000, accepted: seq, rejected: 0, temperaturesC: [64, 66, 65], fanRpm: [5400, 5460] },
  };
  let signer = signers.get(device);
  if (!signer) signers.set(device, (signer = createFastSigner(device.keyPair.privateKey)));
  const heartbeat: Heartbeat = signObject(body, device.keyPair.privateKey, signer);
  return JSON.stringify(heartbeat);
}

export function heartbeatTopic(device: SimDevice): string {
  return upTopic(device.deviceId, "heartbeat");
}
