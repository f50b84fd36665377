import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { verifySignedObject, fromBase64Url, PROTOCOL_VERSION } from "../../../shared/index.js";
import { parseAgentConfig, type AgentConfig } from "../config/index.js";
import { silentLogger } from "../log/index.js";
import { createSimulatedBoard, SIMULATED_MEASURE_PATHS, type SimulatedBoard } from "../platform/index.js";
import { RecordingPlatform } from "../platform/testing/index.js";
import { FakeEnrollmentServer, PlaneSigner, TestBroker, tempDir, waitFor } from "../testing/index.js";
import { EventEmitter } from "node:events";
import { Agent, agentDestinations, EXIT, installProcessHandlers } from "./index.js";

describe("agent runtime against aedes and a fake enrollment server", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(overrides: Partial<Record<string, unknown>> = {}) {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const board = createSimulatedBoard(join(dir.path, "board"), { model: "S19" });
    const plane = new PlaneSigner();
    const holder = { broker: await new TestBroker().start() };
    cleanups.push(() => holder.broker.close().catch(() => undefined));
    const enrollment = await new FakeEnrollmentServer(plane.publicKey).start();
    cleanups.push(() => enrollment.close());
    enrollment.onAccepted = (deviceId, pub) => holder.broker.keys.set(deviceId, pub);
    const config: AgentConfig = parseAgentConfig({
      controlPlaneUrl: enrollment.url,
      mqttUrl: holder.broker.url,
      allowPlaintext: true, // in-process fakes; TLS and pinning: agent/src/plane-trust and test/e2e/hostile-lan
      stateDir: join(dir.path, "state"),
      model: "S19",
      firmwareVersion: "1.0.0",
      platform: { kind: "simulated", root: board.root },
      measure: { paths: [...SIMULATED_MEASURE_PATHS] },
      heartbeatIntervalMs: 100,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      enrollPollMs: 100,
      ...overrides,
    });
    const agents: Agent[] = [];
    const startAgent = async (deps: { platform?: RecordingPlatform } = {}) => {
      const agent = new Agent(config, { log: silentLogger(), agentVersion: "0.1.0-test", ...deps });
      agents.push(agent);
      cleanups.push(() => agent.stop());
      await agent.start();
      return agent;
    };
    return { dir, board: board as SimulatedBoard, plane, holder, enrollment, config, startAgent };
  }

  it("enrolls, connects with a token, says hello, sends startup evidence, heartbeats, answers challenges and commands", async () => {
    const s = await setup();
    const agent = await s.startAgent();
    const broker = s.holder.broker;
    const id = agent.deviceId;
    await waitFor("hello", () => broker.of("hello").length === 1);
    await waitFor("startup evidence", () => broker.of("evidence").length === 1);
    await waitFor("heartbeats", () => broker.of("heartbeat").length >= 2);
    await waitFor("agent-started event", () => broker.of("event").some((e) => e["kind"] === "agent-started"));
    const hello = broker.of("hello")[0]!;
    expect(hello).toMatchObject({ v: PROTOCOL_VERSION, deviceId: id, model: "S19", containment: "none", lastCommandSeq: 0, agentVersion: "0.1.0-test" });
    const evidence = broker.of("evidence")[0]!;
    expect(evidence).toMatchObject({ reason: "startup", nonce: null, seq: 1 });
    verifySignedObject(evidence, agent.identity.keyPair.publicKey);
    expect((evidence["measurements"] as { path: string }[]).map((m) => m.path)).toContain("/firmware/bmminer");
    const hb = broker.of("heartbeat");
    expect(hb[1]!["seq"]).toBe((hb[0]!["seq"] as number) + 1);
    // HW-LIVE-1: hello and heartbeats are signed by the device key and bound to the connection they travel on.
    const connectionNonce = broker.received.find((m) => m.kind === "hello")!.connectNonce;
    expect(connectionNonce).toBeTruthy();
    for (const message of [hello, ...hb]) {
      verifySignedObject(message, agent.identity.keyPair.publicKey);
      expect(message["connectNonce"]).toBe(connectionNonce);
    }

    const nonce = "abcdefghijklmnopqrstuv";
    await broker.publishDown(id, "challenge", { v: 1, type: "challenge", deviceId: id, nonce, issuedAt: Date.now(), expiresAt: Date.now() + 30_000 });
    await waitFor("challenge evidence", () => broker.of("evidence").find((e) => e["nonce"] === nonce));
    expect(broker.of("evidence").at(-1)).toMatchObject({ reason: "challenge", seq: 2 });

    await broker.publishDown(id, "command", s.plane.command(id, 1, "quarantine"));
    await waitFor("ack", () => broker.of("ack").length === 1);
    expect(broker.of("ack")[0]).toMatchObject({ seq: 1, status: "done", containment: "quarantined" });
    verifySignedObject(broker.of("ack")[0]!, fromBase64Url(agent.identity.publicKey));
    expect(await s.board.isQuarantined()).toBe(true);
    expect(s.board.networkPolicy()).toEqual({ mode: "restricted", allow: ["127.0.0.1"] });
    await waitFor("quarantined heartbeat", () => broker.of("heartbeat").some((h) => h["containment"] === "quarantined"));
  });

  it("reconnects after a broker restart and delivers events produced while it was down", async () => {
    const s = await setup();
    const agent = await s.startAgent();
    const first = s.holder.broker;
    await waitFor("connected and flushed", () => first.of("evidence").length === 1 && agent.outbox.depth === 0);
    const port = first.port;
    await first.close();
    await waitFor("disconnect noticed", () => !agent.session?.connected);

    // An out-of-band config edit while offline: detected by the watch, queued in the outbox.
    writeFileSync(join(s.board.root, "config/cgminer.conf"), '{"pools":[{"url":"stratum+tcp://evil.example:3333"}]}\n');
    await waitFor("watch-change queued while offline", () => agent.outbox.depth >= 1);

    // Same port: the agent's configured URL (the OS gave it to us first; not a fixed port).
    const second = await new TestBroker().start(port);
    s.holder.broker = second;
    for (const [k, v] of first.keys) second.keys.set(k, v);
    await waitFor("watch-change delivered after reconnect", () => second.of("event").some((e) => e["kind"] === "watch-change"));
    expect(second.of("event").find((e) => e["kind"] === "watch-change")).toMatchObject({ detail: { paths: ["/config/cgminer.conf"] } });
    await waitFor("hello and evidence after reconnect", () => second.of("hello").length === 1 && second.of("evidence").length >= 1);
    const evidence = second.of("evidence")[0]!;
    expect(evidence["seq"]).toBeGreaterThan(1);
    // HW-LIVE-1: the new connection's hello carries the new token's nonce, not the old one.
    const firstNonce = first.received.find((m) => m.kind === "hello")!.connectNonce;
    const secondHello = second.received.find((m) => m.kind === "hello")!;
    expect(secondHello.body["connectNonce"]).toBe(secondHello.connectNonce);
    expect(secondHello.connectNonce).not.toBe(firstNonce);
    await waitFor("outbox drained", () => agent.outbox.depth === 0);
  });

  it("re-applies a persisted quarantine on restart before enrolling, and only a signed release lifts it", async () => {
    const s = await setup();
    const agent = await s.startAgent();
    const id = agent.deviceId;
    await waitFor("hello", () => s.holder.broker.of("hello").length === 1);
    await s.holder.broker.publishDown(id, "command", s.plane.command(id, 1, "quarantine"));
    await waitFor("quarantine ack", () => s.holder.broker.of("ack").length === 1);
    await agent.stop();

    // Reboot: the board comes back mining with the upgrade path enabled; the agent must restore quarantine.
    await s.board.release();
    const requestsBefore = s.enrollment.requests.length;
    const platform = new RecordingPlatform(s.board.root);
    let requestsAtQuarantine = -1;
    const quarantine = platform.quarantine.bind(platform);
    platform.quarantine = async (opts) => {
      requestsAtQuarantine = s.enrollment.requests.length;
      await quarantine(opts);
    };
    const restarted = await s.startAgent({ platform });
    expect(platform.calls[0]).toEqual({ op: "quarantine", opts: { controlPlaneHosts: ["127.0.0.1"] } });
    expect(requestsAtQuarantine).toBe(requestsBefore);
    await waitFor("second hello", () => s.holder.broker.of("hello").length === 2);
    expect(s.holder.broker.of("hello")[1]).toMatchObject({ containment: "quarantined", lastCommandSeq: 1 });

    // Redelivered quarantine is re-acked from state; a forged release is rejected; a signed release lifts it.
    await s.holder.broker.publishDown(id, "command", s.plane.command(id, 2, "release", { key: new PlaneSigner().keyPair }));
    await waitFor("forged release rejected", () => s.holder.broker.of("event").some((e) => e["kind"] === "command-rejected"));
    expect(restarted.state.containment).toBe("quarantined");
    await s.holder.broker.publishDown(id, "command", s.plane.command(id, 2, "release"));
    await waitFor("release ack", () => s.holder.broker.of("ack").some((a) => a["seq"] === 2));
    expect(restarted.state.containment).toBe("none");
    expect(platform.calls.map((c) => c.op)).toEqual(["quarantine", "release"]);
  });

  it("an already accepted device connects even when the enrollment endpoint is down", async () => {
    const s = await setup({ mqttUrl: undefined });
    s.enrollment.decide = () => ({ status: 200, enrollment: "accepted", mqttUrl: s.holder.broker.url });
    const agent = await s.startAgent();
    await waitFor("hello via the enrollment-provided mqttUrl", () => s.holder.broker.of("hello").length === 1);
    await agent.stop();
    await s.enrollment.close();
    await s.startAgent();
    await waitFor("hello after restart without the enrollment endpoint", () => s.holder.broker.of("hello").length === 2);
  });

  it("exits with code 3 when the device is revoked", async () => {
    const s = await setup();
    s.enrollment.decide = () => ({ status: 403, enrollment: "revoked" });
    const agent = await s.startAgent();
    expect(await agent.exited).toBe(EXIT.revoked);
  });
});

describe("process-level handlers and the agent's own destinations", () => {
  it("an unhandled rejection is logged and the agent keeps running; an uncaught exception exits 1 for the supervisor", () => {
    const proc = Object.assign(new EventEmitter(), { exits: [] as number[], exit(code: number) { this.exits.push(code); } });
    const lines: { level: string; msg: string }[] = [];
    const log = Object.assign(silentLogger(), {
      error: (_: unknown, msg: string) => void lines.push({ level: "error", msg }),
      fatal: (_: unknown, msg: string) => void lines.push({ level: "fatal", msg }),
    });
    installProcessHandlers(log, proc);
    proc.emit("unhandledRejection", Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" }), Promise.resolve());
    expect(proc.exits).toEqual([]);
    expect(lines).toEqual([{ level: "error", msg: expect.stringContaining("unhandled promise rejection") }]);
    proc.emit("uncaughtException", new Error("boom"));
    expect(proc.exits).toEqual([EXIT.failure]);
    expect(lines[1]).toMatchObject({ level: "fatal" });
  });

  it("the TUF metadata and targets hosts are approved destinations besides the plane's HTTP and MQTT URLs", () => {
    const config = parseAgentConfig({
      controlPlaneUrl: "https://plane.example.net",
      stateDir: "/tmp/x",
      model: "S19",
      firmwareVersion: "1.0.0",
      platform: { kind: "simulated", root: "/tmp/x" },
      update: { metadataUrl: "https://cdn.example.org/tuf/metadata/", targetsUrl: "https://files.example.org/targets/" },
    });
    expect(agentDestinations(config, "mqtts://mqtt.example.net:8883")).toEqual([
      "https://plane.example.net",
      "mqtts://mqtt.example.net:8883",
      "https://cdn.example.org/tuf/metadata/",
      "https://files.example.org/targets/",
    ]);
  });
});
