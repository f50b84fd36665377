/**
 * The compiled agent against a plane that an attacker controls the broker of: only commands signed by the
 * pinned plane key, addressed to this device, unexpired and above the last executed sequence change anything.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { generateKeyPair, signObject } from "../../shared/crypto/index.js";
import { downTopic } from "../../shared/protocol/index.js";
import { startFakePlane, type FakePlane } from "../support/fake-plane.js";
import { startAgent, writeAgentConfig, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

let plane: FakePlane;
let agent: ManagedProcess;
let boardRoot: string;
let deviceId: string;

const minerState = () => readFileSync(join(boardRoot, "run/miner.state"), "utf8").trim();

function command(seq: number, action: "quarantine" | "release", overrides: Record<string, unknown> = {}, key = plane.commandKey.privateKey) {
  const now = Date.now();
  return signObject(
    { v: 1, type: "command", deviceId, seq, issuedAt: now, expiresAt: now + 60_000, action, params: { reason: "test" }, ...overrides },
    key,
  );
}

async function send(message: unknown): Promise<void> {
  const payload = typeof message === "string" ? message : JSON.stringify(message);
  await plane.observer.publishAsync(downTopic(deviceId, "command"), payload, { qos: 1 });
}

const acks = (seq: number) => plane.received.filter((r) => r.topic.endsWith("/up/ack") && r.message?.seq === seq);
const rejections = () => plane.received.filter((r) => r.topic.endsWith("/up/event") && r.message?.kind === "command-rejected");

async function expectRejected(message: unknown, what: string): Promise<void> {
  const before = rejections().length;
  await send(message);
  await waitFor(`command-rejected event for ${what}`, () => rejections().length > before);
}

beforeAll(async () => {
  plane = await startFakePlane();
  const dir = tempDir("agent-cmd").path;
  boardRoot = join(dir, "board");
  await createSimulatedBoard(boardRoot, { model: "S19" });
  const config = writeAgentConfig(dir, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    allowPlaintext: true, // a stand-in plane for attacks on the command path (test/support/fake-plane.ts)
    stateDir: join(dir, "state"),
    model: "S19",
    firmwareVersion: "1.0.0",
    platform: { kind: "simulated", root: boardRoot },
    measure: { paths: ["/firmware", "/config"] },
    heartbeatIntervalMs: 1000,
  });
  agent = startAgent("agent", config);
  const hello = await waitFor("the agent's hello", () => plane.received.find((r) => r.topic.endsWith("/up/hello")));
  deviceId = hello.message.deviceId;
});

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await plane?.close();
});

describe("agent command acceptance (real binary, real MQTT)", () => {
  it("executes a valid signed quarantine and answers a signed ack", async () => {
    expect(minerState()).toBe("running");
    await send(command(1, "quarantine"));
    const [ack] = await waitFor("ack for seq 1", () => acks(1).length > 0 && acks(1));
    expect(ack!.message).toMatchObject({ status: "done", containment: "quarantined", action: "quarantine" });
    expect(minerState()).toBe("stopped");
  });

  it("rejects a command signed by another key and changes nothing", async () => {
    await expectRejected(command(2, "release", {}, generateKeyPair().privateKey), "forged signature");
    expect(minerState()).toBe("stopped");
    expect(acks(2)).toHaveLength(0);
  });

  it("rejects an expired command", async () => {
    await expectRejected(command(2, "release", { issuedAt: Date.now() - 120_000, expiresAt: Date.now() - 60_000 }), "expired");
    expect(minerState()).toBe("stopped");
    expect(acks(2)).toHaveLength(0);
  });

  it("rejects a command addressed to another device", async () => {
    await expectRejected(command(2, "release", { deviceId: "hw-0123456789abcdef01234567" }), "wrong device");
    expect(minerState()).toBe("stopped");
  });

  it("drops malformed payloads and keeps working", async () => {
    await send("{not json");
    await send({ v: 1, type: "command" });
    await send(command(2, "release"));
    await waitFor("ack for seq 2", () => acks(2).length > 0);
    expect(minerState()).toBe("running");
    expect(agent.running).toBe(true);
  });

  it("rejects a replay of an older command and changes nothing", async () => {
    await expectRejected(command(1, "quarantine"), "replayed seq 1");
    expect(minerState()).toBe("running");
  });
});
