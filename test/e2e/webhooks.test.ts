/**
 * Webhooks end to end: the real plane process and the real compiled agent over MQTT, a real local receiver that
 * checks every Standard Webhooks signature, fails three times, and sees the plane restart in between.
 * HW-HOOK-1 (signatures), HW-HOOK-2 (outbox, at-least-once, deduplicated by webhook-id).
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { restartControlPlane, simulatedAgentConfig, startAgent, startControlPlane, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";
import { startWebhookReceiver, type WebhookReceiver } from "../support/webhook-receiver.js";

let plane: ControlPlane;
let agent: ManagedProcess | undefined;
let receiver: WebhookReceiver;
/** Answers for the next requests; 200 once empty. */
const plan: number[] = [500, 500, 500];

beforeAll(async () => {
  receiver = await startWebhookReceiver(plan);
  plane = await startControlPlane({
    env: { HASHWARD_WEBHOOK_ALLOW_LOOPBACK: "true", HASHWARD_WEBHOOK_RETRY_BASE_MS: "300", HASHWARD_WEBHOOK_TICK_MS: "100" },
  });
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await plane?.proc.kill("SIGKILL");
  await receiver?.close();
});

describe("webhooks (real plane, real agent, real receiver)", () => {
  it("delivers a quarantine signed, after three failures and a plane restart, once per webhook-id", async () => {
    const admin = new ApiClient(plane.httpUrl, plane.adminToken);
    const { url, received } = receiver;
    const registered = await admin.post<{ endpoint: { id: string }; secret: string }>("/api/v1/webhooks", { url, kinds: ["device.quarantined", "device.released"] });
    receiver.setSecret(registered.secret);

    const dir = tempDir("webhook-miner").path;
    const boardRoot = join(dir, "board");
    const stateDir = join(dir, "state");
    await createSimulatedBoard(boardRoot, { model: "S19" });
    const configFile = writeAgentConfig(dir, simulatedAgentConfig(plane, { stateDir, boardRoot, model: "S19", firmwareVersion: "1.0.0" }));
    agent = startAgent("webhook-miner", configFile);
    const deviceId = await waitFor("the agent's key", () => loadDeviceKey(stateDir)?.deviceId, { timeoutMs: 60_000 });
    await waitFor("the device pending", async () => (await admin.request("GET", `/api/v1/devices/${deviceId}`)).status === 200, { timeoutMs: 60_000 });
    await admin.post(`/api/v1/devices/${deviceId}/accept`, { reason: "test" });
    await waitFor("the device connected", async () => (await admin.get(`/api/v1/devices/${deviceId}`)).connected === true, { timeoutMs: 60_000 });
    await admin.post(`/api/v1/devices/${deviceId}/quarantine`, { reason: "webhook test" });

    // Two failed attempts, then the plane goes down with the delivery still owed.
    await waitFor("two failed attempts", () => received.filter((r) => r.answered === 500).length >= 2, { timeoutMs: 60_000 });
    await plane.proc.kill("SIGTERM");
    plane = await restartControlPlane(plane);
    const adminAfter = new ApiClient(plane.httpUrl, plane.adminToken);

    await waitFor("the quarantine delivered", () => received.some((r) => r.body.type === "device.quarantined" && r.answered === 200), { timeoutMs: 60_000 });
    await waitFor("the device connected again", async () => (await adminAfter.get(`/api/v1/devices/${deviceId}`)).connected === true, { timeoutMs: 60_000 });
    await adminAfter.post(`/api/v1/devices/${deviceId}/release`, { reason: "webhook test" });
    await waitFor("the release delivered", () => received.some((r) => r.body.type === "device.released" && r.answered === 200), { timeoutMs: 60_000 });

    expect(received.every((r) => r.verified)).toBe(true);
    expect(received.filter((r) => r.answered === 500)).toHaveLength(3);
    // At least once, deduplicated by webhook-id: each event has one id, and exactly one 2xx for it.
    const byType = (type: string) => new Set(received.filter((r) => r.body.type === type).map((r) => r.id));
    expect(byType("device.quarantined").size).toBe(1);
    expect(byType("device.released").size).toBe(1);
    for (const id of new Set(received.map((r) => r.id))) expect(received.filter((r) => r.id === id && r.answered === 200)).toHaveLength(1);

    // The delivery log an operator reads: each attempt counted, the same number the receiver saw.
    const log = await adminAfter.get<{ deliveries: Array<{ id: string; kind: string; status: string; attempts: number }> }>(`/api/v1/webhooks/${registered.endpoint.id}/deliveries`);
    expect(log.deliveries.map((d) => [d.kind, d.status, d.attempts])).toEqual([
      ["device.released", "delivered", received.filter((r) => r.body.type === "device.released").length],
      ["device.quarantined", "delivered", received.filter((r) => r.body.type === "device.quarantined").length],
    ]);
    expect(log.deliveries.map((d) => d.id).sort()).toEqual([...new Set(received.map((r) => r.id))].sort());
  }, 480_000); // two plane starts (PGlite migrations take over a minute on a loaded machine) and an agent
});
