import { describe, expect, it } from "vitest";
import { downTopic, evidenceSchema, generateKeyPair, helloSchema, observationForGuard, OBSERVATIONS, parsePayload, parseTopic, signObject, upTopic, heartbeatSchema, MAX_PAYLOAD_BYTES, ValidationError } from "../index.js";

const id = "hw-0123456789abcdef01234567";

describe("topics", () => {
  it("round-trips up and down topics", () => {
    expect(parseTopic(upTopic(id, "evidence"))).toEqual({ direction: "up", deviceId: id, kind: "evidence" });
    expect(parseTopic(downTopic(id, "command"))).toEqual({ direction: "down", deviceId: id, kind: "command" });
  });
  it.each([
    "asic/v1/+/up/hello", `asic/v1/${id}/up/#`, `asic/v2/${id}/up/hello`, `asic/v1/${id}/up/unknown`,
    `asic/v1/${id}/down/ack`, `asic/v1/${id}/up/hello/extra`, "asic/v1/not-a-device/up/hello",
  ])("refuses %s", (topic) => {
    expect(parseTopic(topic)).toBeNull();
  });
});

describe("parsePayload", () => {
  const key = generateKeyPair();
  const connectNonce = "AAAAAAAAAAAAAAAAAAAAAA";
  const good = signObject({ v: 1, type: "heartbeat", deviceId: id, connectNonce, seq: 1, ts: 1, uptimeMs: 5, containment: "none", outboxDepth: 0 }, key.privateKey);
  const hello = signObject(
    { v: 1, type: "hello", deviceId: id, connectNonce, model: "S19", firmwareVersion: "1", agentVersion: "1", bootId: "b", containment: "none", lastCommandSeq: 0, ts: 1 },
    key.privateKey,
  );
  it("accepts a valid heartbeat", () => {
    expect(parsePayload(heartbeatSchema, Buffer.from(JSON.stringify(good)), "heartbeat").seq).toBe(1);
  });
  it("names the bad field", () => {
    const bad = Buffer.from(JSON.stringify({ ...good, seq: -1 }));
    expect(() => parsePayload(heartbeatSchema, bad, "heartbeat")).toThrow(expect.objectContaining({ field: "seq" }));
  });
  // HW-LIVE-1: hello and heartbeat carry the device's signature and the connection they were signed for.
  it.each([
    ["heartbeat", heartbeatSchema, good],
    ["hello", helloSchema, hello],
  ] as const)("a %s without sig or connectNonce names the missing field", (_kind, schema, message) => {
    const { sig: _sig, ...unsigned } = message;
    const { connectNonce: _nonce, ...unbound } = message;
    expect(() => parsePayload(schema, Buffer.from(JSON.stringify(unsigned)), "m")).toThrow(expect.objectContaining({ field: "sig" }));
    expect(() => parsePayload(schema, Buffer.from(JSON.stringify(unbound)), "m")).toThrow(expect.objectContaining({ field: "connectNonce" }));
    expect(() => parsePayload(schema, Buffer.from(JSON.stringify({ ...message, sig: "x" })), "m")).toThrow(expect.objectContaining({ field: "sig" }));
    expect(parsePayload(schema, Buffer.from(JSON.stringify(message)), "m")).toEqual(message);
  });
  it("refuses unknown fields, non-JSON, invalid UTF-8 and oversized payloads", () => {
    expect(() => parsePayload(heartbeatSchema, Buffer.from(JSON.stringify({ ...good, extra: 1 })), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.from("{not json"), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.from([0xff, 0xfe]), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 32), "hb")).toThrow(ValidationError);
  });
});

describe("evidence observations (HW-APPRAISE-3)", () => {
  const base = {
    v: 1, type: "evidence", deviceId: "hw-0123456789abcdef01234567", seq: 1, nonce: null, reason: "guard", ts: 1, model: "S19",
    firmwareVersion: "1", agentVersion: "1", bootId: "b", measurements: [], sig: "A".repeat(86),
  };

  it("are optional (older agents) and name each input with observed and an optional reason", () => {
    expect(evidenceSchema.parse(base).observations).toBeUndefined();
    const observations = { "miner-api": { observed: false, reason: "miner stopped (quarantined); unreachable" }, sockets: { observed: true } };
    expect(evidenceSchema.parse({ ...base, observations }).observations).toEqual(observations);
  });

  it("refuse an unknown input, a missing flag or an over-long reason", () => {
    for (const observations of [{ disk: { observed: true } }, { sockets: {} }, { sockets: { observed: "yes" } }, { config: { observed: false, reason: "x".repeat(257) } }]) {
      expect(evidenceSchema.safeParse({ ...base, observations }).success, JSON.stringify(observations)).toBe(false);
    }
  });

  it("map every guard to the input it reads; an unknown guard maps to none", () => {
    expect(OBSERVATIONS).toEqual(["miner-api", "sockets", "config", "indicators"]);
    expect(["pool-live", "miner-api", "miner-stop", "connection", "listening-port", "pool-config", "api-exposure", "indicator"].map(observationForGuard)).toEqual([
      "miner-api", "miner-api", "miner-api", "sockets", "sockets", "config", "config", "indicators",
    ]);
    expect(observationForGuard("future-guard")).toBeNull();
    expect(observationForGuard("constructor")).toBeNull();
  });
});
