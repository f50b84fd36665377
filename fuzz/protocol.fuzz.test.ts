/**
 * HW-FUZZ-1 / HW-MSG-1: every MQTT payload schema in shared/protocol, fed valid messages mutated byte-wise and
 * field-wise. `parsePayload` / `parseWith` either return a value that re-encodes to the same meaning, or throw
 * ValidationError (the documented refusal) naming a field; nothing else, within the case budget. Signed messages
 * additionally go through the signature check, whose refusal is VerificationError (HW-SIG-1, HW-CMD-1).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateKeyPair, signObject, verifySignedObject } from "../shared/crypto/index.js";
import { FreshnessError, ValidationError, VerificationError } from "../shared/errors/index.js";
import {
  ackSchema,
  challengeSchema,
  commandSchema,
  encodePayload,
  enrollmentRequestSchema,
  enrollmentResponseSchema,
  eventSchema,
  evidenceSchema,
  heartbeatSchema,
  helloSchema,
  MAX_JSON_DEPTH,
  MAX_PAYLOAD_BYTES,
  parsePayload,
  parseWith,
  verifyCommand,
} from "../shared/protocol/index.js";
import { bounded, deeplyNested, fuzz, mutatedBytes, mutatedObject, sameMeaning } from "./support.js";

const deviceKey = generateKeyPair();
const planeKey = generateKeyPair();
const deviceId = "hw-0123456789abcdef01234567";
const sig = "A".repeat(86);
const t = 1_700_000_000_000;
const sha = "ab".repeat(32);

/** One valid message per schema, as the agent or plane emits it (signed ones really signed). */
const VALID = {
  enroll: { schema: enrollmentRequestSchema, message: signObject({ v: 1, type: "enroll", deviceId, publicKey: "B".repeat(43), model: "S19", firmwareVersion: "2024.06.1", agentVersion: "0.1.0", enrollmentToken: "hwe_abc", ts: t }, deviceKey.privateKey) },
  "enroll-response": { schema: enrollmentResponseSchema, message: { deviceId, enrollment: "accepted", commandPublicKey: "C".repeat(43), mqttUrl: "mqtts://plane:8883" } },
  hello: { schema: helloSchema, message: signObject({ v: 1, type: "hello", deviceId, model: "S19", firmwareVersion: "2024.06.1", agentVersion: "0.1.0", bootId: "boot-1", containment: "none", lastCommandSeq: 3, ts: t, connectNonce: "c".repeat(22) }, deviceKey.privateKey) },
  heartbeat: {
    schema: heartbeatSchema,
    message: signObject({ v: 1, type: "heartbeat", deviceId, connectNonce: "c".repeat(22), seq: 9, ts: t, uptimeMs: 5000, containment: "quarantined", outboxDepth: 0, telemetry: { hashrateGhs: 95000.5, accepted: 10, rejected: 1, temperaturesC: [61, 63.5], fanRpm: [5400], activePool: "stratum+tcp://pool.example.net:3333" } }, deviceKey.privateKey),
  },
  challenge: { schema: challengeSchema, message: { v: 1, type: "challenge", deviceId, nonce: "n".repeat(22), issuedAt: t, expiresAt: t + 60_000 } },
  evidence: {
    schema: evidenceSchema,
    message: signObject(
      {
        v: 1, type: "evidence", deviceId, seq: 4, nonce: "n".repeat(22), reason: "challenge", ts: t, model: "S19", firmwareVersion: "2024.06.1", agentVersion: "0.1.0", bootId: "boot-1",
        measurements: [{ path: "/config/cgminer.conf", kind: "file", size: 120, sha256: sha }, { path: "/etc/ld.so.preload", kind: "missing", size: 0, sha256: "" }],
        observations: { "miner-api": { observed: true }, sockets: { observed: false, reason: "no /proc/net/tcp" } },
        findings: [{ guard: "pool-live", claim: "configuration", tier: "contraindicated", subject: "stratum+tcp://evil:3333", expected: { allowedUrls: ["stratum+tcp://pool:3333"] }, seen: { url: "stratum+tcp://evil:3333", user: "x" }, message: "live pool 0" }],
      },
      deviceKey.privateKey,
    ),
  },
  event: { schema: eventSchema, message: signObject({ v: 1, type: "event", deviceId, id: "evt_00000001", ts: t, kind: "guard-alert", severity: "critical", detail: { guard: "indicator", path: "/etc/ld.so.preload" } }, deviceKey.privateKey) },
  command: { schema: commandSchema, message: signObject({ v: 1, type: "command", deviceId, seq: 7, issuedAt: t, expiresAt: t + 300_000, action: "quarantine", params: { reason: "pool hijack" } }, planeKey.privateKey) },
  ack: { schema: ackSchema, message: signObject({ v: 1, type: "ack", deviceId, seq: 7, action: "quarantine", status: "done", containment: "quarantined", reason: "ok", ts: t }, deviceKey.privateKey) },
} as const;

const SIGNED = new Set(["enroll", "hello", "heartbeat", "evidence", "event", "command", "ack"]);

describe("HW-FUZZ-1: MQTT and device-facing payload schemas", () => {
  for (const [kind, { schema, message }] of Object.entries(VALID)) {
    const valid = encodePayload(message);

    it(`${kind}: the unmutated message parses (the seed is valid)`, () => {
      expect(parsePayload(schema, valid, kind)).toEqual(message);
    });

    it(`${kind}: byte-wise mutations parse to the same meaning or are a ValidationError`, () => {
      fuzz(
        `protocol ${kind} (bytes)`,
        fc.property(mutatedBytes(valid), (bytes) => {
          const first = bounded(() => parsePayload(schema, bytes, kind), [ValidationError]);
          if (!first.ok) return;
          // What parses re-serialises to the same meaning: parse(serialize(parse(x))) deep-equals parse(x).
          expect(sameMeaning(parsePayload(schema, encodePayload(first.value as object), kind), first.value)).toBe(true);
        }),
      );
    });

    it(`${kind}: field-wise mutations (types, deletions, extra keys, __proto__, 1000-deep nesting) parse or are a ValidationError`, () => {
      fuzz(
        `protocol ${kind} (fields)`,
        fc.property(mutatedObject(message), (value) => {
          const first = bounded(() => parseWith(schema, value, kind), [ValidationError]);
          if (!first.ok) {
            expect(typeof (first.error as ValidationError).field).toBe("string");
            return;
          }
          const encoded = encodePayload(first.value as object);
          expect(sameMeaning(parsePayload(schema, encoded, kind), first.value)).toBe(true);
          if (SIGNED.has(kind) && kind !== "command") {
            // A field-mutated signed message that still parses must not verify unless it means the same thing.
            const verified = bounded(() => verifySignedObject(first.value as never, deviceKey.publicKey), [VerificationError]);
            if (verified.ok) expect(sameMeaning(first.value, message)).toBe(true);
          }
        }),
      );
    });
  }

  it("command: a mutated command is executed only if it is the signed one (else VerificationError/FreshnessError, HW-CMD-1)", () => {
    const { message } = VALID.command;
    fuzz(
      "protocol command (verifyCommand)",
      fc.property(mutatedObject(message), (value) => {
        const parsed = bounded(() => parseWith(commandSchema, value, "command"), [ValidationError]);
        if (!parsed.ok) return;
        const verified = bounded(() => verifyCommand(parsed.value, planeKey.publicKey, { deviceId, lastSeq: 0, nowMs: t + 1 }), [VerificationError, FreshnessError]);
        if (verified.ok) expect(sameMeaning(parsed.value, message)).toBe(true);
      }),
    );
  });

  it("arbitrary bytes and arbitrary JSON are refused with ValidationError", () => {
    const arbitrary = fc.oneof(
      fc.uint8Array({ maxLength: 512 }),
      fc.jsonValue({ maxDepth: 6 }).map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? "null"))),
      fc.integer({ min: 1, max: 20_000 }).map((d) => new Uint8Array(Buffer.from(deeplyNested(d)))),
    );
    fuzz(
      "protocol any schema (arbitrary bytes)",
      fc.property(arbitrary, fc.constantFrom(...Object.keys(VALID)), (bytes, kind) => {
        const { schema } = VALID[kind as keyof typeof VALID];
        bounded(() => parsePayload(schema, bytes, kind), [ValidationError]);
      }),
    );
  });

  // Regression cases, fixed inputs (siblings of the byte mutations above).
  it.each([
    ["a trailing NUL", (b: Buffer) => Buffer.concat([b, Buffer.from([0])])],
    ["a lone surrogate escape in a string", (b: Buffer) => Buffer.from(b.toString().replace('"S19"', '"S\\ud80019"'))],
    ["invalid UTF-8 inside a string", (b: Buffer) => Buffer.concat([b.subarray(0, 20), Buffer.from([0xc3, 0x28]), b.subarray(20)])],
    ["a payload one byte over the cap", () => Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20)],
    ["a 100,000-deep nested payload", () => Buffer.from(deeplyNested(100_000))],
  ])("hello with %s: parsed or ValidationError, never another exception", (_what, make) => {
    const bytes = make(encodePayload(VALID.hello.message));
    bounded(() => parsePayload(helloSchema, bytes, "hello"), [ValidationError]);
  });

  // Crash found by this campaign (field-wise mutation of evidence): a free-form field nested ~10,000 deep parsed,
  // then overflowed the stack when re-encoded (JSON.stringify, canonical form, jsonb). Fixed in the schema
  // (HW-MSG-1: free-form fields nest at most MAX_JSON_DEPTH deep); these are its fixed regression inputs.
  it.each([
    ["evidence", "findings.0.expected", (deep: string) => encodePayload(VALID.evidence.message).toString().replace('"expected":{', `"expected":{"deep":${deep},`)],
    ["evidence", "findings.0.seen", (deep: string) => encodePayload(VALID.evidence.message).toString().replace('"seen":{', `"seen":{"deep":${deep},`)],
    ["event", "detail.guard", (deep: string) => encodePayload(VALID.event.message).toString().replace('"guard":"indicator"', `"guard":${deep}`)],
    ["command", "params.reason", (deep: string) => encodePayload(VALID.command.message).toString().replace('"reason":"pool hijack"', `"reason":${deep}`)],
  ] as const)("%s with %s nested 100,000 deep is a ValidationError naming the field (regression)", (kind, field, make) => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const bytes = Buffer.from(make(deep));
    expect(bytes.byteLength).toBeLessThan(MAX_PAYLOAD_BYTES);
    const outcome = bounded(() => parsePayload(VALID[kind].schema, bytes, kind), [ValidationError]);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect((outcome.error as ValidationError).field).toBe(field);
  });

  it(`free-form fields up to MAX_JSON_DEPTH (${MAX_JSON_DEPTH}) deep still parse`, () => {
    const deep = "[".repeat(MAX_JSON_DEPTH - 1) + "]".repeat(MAX_JSON_DEPTH - 1);
    const text = encodePayload(VALID.command.message).toString().replace('"reason":"pool hijack"', `"reason":${deep}`);
    expect(parsePayload(commandSchema, Buffer.from(text), "command").params.reason).toBeInstanceOf(Array);
  });
});
