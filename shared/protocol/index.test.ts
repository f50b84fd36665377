import { describe, expect, it } from "vitest";
import { downTopic, generateKeyPair, helloSchema, parsePayload, parseTopic, signObject, upTopic, heartbeatSchema, MAX_PAYLOAD_BYTES, ValidationError } from "../index.js";

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
