/**
 * Authenticated liveness (HW-LIVE-1) with real components: the control plane under Bun (embedded aedes + PGlite),
 * the compiled agent on a simulated board, real MQTT and HTTP. The plane's stale threshold is set small
 * (HASHWARD_STALE_AFTER_MS) so "goes stale" and "stays fresh" are observable within a test.
 */
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { generateKeyPair, issueConnectToken, signObject } from "../../shared/index.js";
import { upTopic } from "../../shared/protocol/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { simulatedAgentConfig, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
const FIRMWARE = "2024.06.1";
const STALE_AFTER_MS = 3_000;
/** control-plane/src/plane STALE_CHECK_INTERVAL_MS: the stale timer's period. */
const STALE_CHECK_MS = 5_000;

let plane: ControlPlane;
let admin: ApiClient;
let agent: ManagedProcess | undefined;
let configFile: string;
let stateDir: string;
let deviceId: string;

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);

/** hashward_mqtt_messages_rejected_total for one kind and reason, from GET /metrics. */
async function rejected(kind: string, reason: string): Promise<number> {
  const text = (await admin.request("GET", "/metrics")).body as string;
  const line = text.split("\n").find((l) => l.startsWith("hashward_mqtt_messages_rejected_total{") && l.includes(`kind="${kind}"`) && l.includes(`reason="${reason}"`));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

async function transitionsTo(id: string, to: string): Promise<number> {
  const { transitions } = await admin.get(`/api/v1/devices/${id}/history`);
  return transitions.filter((t: { machine: string; to: string }) => t.machine === "appraisal" && t.to === to).length;
}

beforeAll(async () => {
  plane = await startControlPlane({ env: { HASHWARD_STALE_AFTER_MS: String(STALE_AFTER_MS) } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  const dir = tempDir("liveness").path;
  const boardRoot = join(dir, "board");
  await createSimulatedBoard(boardRoot, { model: MODEL });
  stateDir = join(dir, "state");
  const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "e2e liveness" });
  configFile = writeAgentConfig(
    dir,
    simulatedAgentConfig(plane, { stateDir, boardRoot, model: MODEL, firmwareVersion: FIRMWARE }, { enrollmentToken: token.token, heartbeatIntervalMs: 500 }),
  );
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await plane?.proc.kill("SIGKILL");
});

describe("liveness only from signed messages (HW-LIVE-1)", () => {
  it("a compiled agent's signed heartbeats keep it fresh across several stale checks", async () => {
    agent = startAgent("liveness-agent", configFile);
    deviceId = await waitFor("the agent's key", () => loadDeviceKey(stateDir)?.deviceId);
    const first = await waitFor("device appraised and seen", async () => {
      const d = await device(deviceId).catch(() => undefined);
      return d?.appraisal === "warning" && d.lastSeenAt !== null && d;
    });
    // Heartbeats alone (timer attestation is off) carry last-seen past two stale-timer runs and the threshold.
    const firstSeen = Date.parse(first.lastSeenAt);
    const later = await waitFor(
      "last-seen advanced by heartbeats",
      async () => {
        const d = await device(deviceId);
        return Date.parse(d.lastSeenAt) - firstSeen > STALE_AFTER_MS + 2 * STALE_CHECK_MS && d;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(later).toMatchObject({ appraisal: "warning", connected: true });
    expect(await transitionsTo(deviceId, "stale")).toBe(0);
    for (const reason of ["unsigned", "bad-signature", "wrong-connection", "replay", "clock"]) {
      expect(await rejected("heartbeat", reason)).toBe(0);
    }
  });

  it("a party holding the device's session without its key: forged heartbeats are dropped and counted, the device goes stale", async () => {
    // The miner is cut off; a thief with a harvested connect token holds its MQTT session (the test mints that
    // token with the device key, as the agent would have sent it) but has no key to sign heartbeats with.
    await agent!.kill("SIGKILL");
    agent = undefined;
    const key = loadDeviceKey(stateDir)!;
    const { token, claims } = issueConnectToken(deviceId, key.privateKey, Date.now());
    const thief: MqttClient = await mqtt.connectAsync(plane.mqttUrl, {
      protocolVersion: 4, clientId: deviceId, username: deviceId, password: token, reconnectPeriod: 0, connectTimeout: 10_000, ca: plane.caPem ?? undefined,
    });
    const wrongKey = generateKeyPair();
    const otherConnection = issueConnectToken(deviceId, key.privateKey, Date.now()).claims.nonce;
    let seq = 1_000_000;
    const heartbeat = (connectNonce: string) => ({
      v: 1, type: "heartbeat", deviceId, connectNonce, seq: ++seq, ts: Date.now(), uptimeMs: 1, containment: "none", outboxDepth: 0,
      telemetry: { hashrateGhs: 123_456, activePool: "stratum+tcp://made-up.example:3333" },
    });
    const forgeries = () => [
      // Unsigned, as an old agent or a forger sends it.
      (({ connectNonce: _n, ...unsigned }) => unsigned)(heartbeat(claims.nonce)),
      // Signed with a key that is not the device's.
      signObject(heartbeat(claims.nonce), wrongKey.privateKey),
      // The device's own signature, but made for another connection (captured from the agent's session).
      signObject(heartbeat(otherConnection), key.privateKey),
    ];
    const publishForgeries = () => Promise.all(forgeries().map((message) => thief.publishAsync(upTopic(deviceId, "heartbeat"), JSON.stringify(message), { qos: 1 })));
    // The thief keeps "heartbeating" every 500 ms, like the agent, for as long as the test waits.
    const keepForging = setInterval(() => void publishForgeries().catch(() => undefined), 500);
    try {
      await publishForgeries();
      const forgedHello = signObject(
        { v: 1, type: "hello", deviceId, connectNonce: claims.nonce, model: MODEL, firmwareVersion: "6.6.6", agentVersion: "0.0.0", bootId: "forged", containment: "none", lastCommandSeq: 0, ts: Date.now() },
        wrongKey.privateKey,
      );
      await thief.publishAsync(upTopic(deviceId, "hello"), JSON.stringify(forgedHello), { qos: 1 });

      await waitFor("forged heartbeats counted", async () => (await rejected("heartbeat", "bad-signature")) >= 1 && (await rejected("heartbeat", "unsigned")) >= 1 && (await rejected("heartbeat", "wrong-connection")) >= 1);
      expect(await rejected("hello", "bad-signature")).toBe(1);

      const stale = await waitFor(
        "device stale while the thief holds its session",
        async () => {
          const d = await device(deviceId);
          return d.appraisal === "stale" && d;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect(stale).toMatchObject({ connected: true, firmwareVersion: FIRMWARE });
      expect(stale.telemetry?.hashrateGhs).not.toBe(123_456);
      expect(await transitionsTo(deviceId, "stale")).toBe(1);
    } finally {
      clearInterval(keepForging);
      await thief.endAsync(true);
    }
  });

  it("the real agent back on its session leaves stale on its signed evidence", async () => {
    agent = startAgent("liveness-agent-2", configFile);
    const view = await waitFor(
      "device appraised again",
      async () => {
        const d = await device(deviceId);
        return d.appraisal === "warning" && d;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(view).toMatchObject({ connected: true, firmwareVersion: FIRMWARE });
  });
});
