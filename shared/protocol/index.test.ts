import { describe, expect, it } from "vitest";
import { downTopic, parsePayload, parseTopic, upTopic, heartbeatSchema, MAX_PAYLOAD_BYTES, ValidationError } from "../index.js";

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
  const good = { v: 1, type: "heartbeat", deviceId: id, seq: 1, ts: 1, uptimeMs: 5, containment: "none", outboxDepth: 0 };
  it("accepts a valid heartbeat", () => {
    expect(parsePayload(heartbeatSchema, Buffer.from(JSON.stringify(good)), "heartbeat").seq).toBe(1);
  });
  it("names the bad field", () => {
    const bad = Buffer.from(JSON.stringify({ ...good, seq: -1 }));
    expect(() => parsePayload(heartbeatSchema, bad, "heartbeat")).toThrow(expect.objectContaining({ field: "seq" }));
  });
  it("refuses unknown fields, non-JSON, invalid UTF-8 and oversized payloads", () => {
    expect(() => parsePayload(heartbeatSchema, Buffer.from(JSON.stringify({ ...good, extra: 1 })), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.from("{not json"), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.from([0xff, 0xfe]), "hb")).toThrow(ValidationError);
    expect(() => parsePayload(heartbeatSchema, Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 32), "hb")).toThrow(ValidationError);
  });
});
