import { randomBytes } from "node:crypto";
import * as ed from "@noble/ed25519";
import { describe, expect, it } from "vitest";
import vectors from "./vectors.json";
import { canonicalize } from "../canonical/index.js";
import {
  createFastSigner,
  deviceIdFromPublicKey, fromBase64Url, generateKeyPair, keyPairFromPrivate, signBytes, signObject, verifyBytes, verifyBytesFast, verifySignedObject,
} from "./index.js";
import { verifyCommand } from "../protocol/verify-command.js";
import { commandSchema } from "../protocol/schemas.js";
import { FreshnessError, VerificationError } from "../errors/index.js";

const keys = {
  plane: fromBase64Url(vectors.planePublicKey),
  other: fromBase64Url(vectors.otherPublicKey),
  smallOrder: fromBase64Url(vectors.smallOrderPublicKey),
};
type KeyName = keyof typeof keys;

describe("committed signature vectors", () => {
  it("canonical form is RFC 8785 (sorted keys, ES number form)", () => {
    const { sig: _sig, ...body } = vectors.cases[0]!.message;
    expect(canonicalize(body)).toBe(vectors.canonical);
  });

  for (const vector of vectors.cases) {
    it(`${vector.name}: reference and native verifiers agree (${vector.valid ? "valid" : "invalid"})`, () => {
      const key = keys[vector.publicKey as KeyName];
      const reference = () => verifySignedObject(vector.message, key, verifyBytes);
      const fast = () => verifySignedObject(vector.message, key, verifyBytesFast);
      if (vector.valid) {
        expect(reference).not.toThrow();
        expect(fast).not.toThrow();
      } else {
        expect(reference).toThrow(VerificationError);
        expect(fast).toThrow(VerificationError);
      }
    });

    it(`${vector.name}: command acceptance ${vector.valid && vector.fresh ? "accepts" : "rejects"}`, () => {
      const command = commandSchema.parse(vector.message);
      const key = keys[vector.publicKey as KeyName];
      const run = () => verifyCommand(command, key, { deviceId: vectors.deviceId, lastSeq: 0, nowMs: vector.nowMs });
      if (vector.valid && vector.fresh) expect(run).not.toThrow();
      else if (vector.valid) expect(run).toThrow(FreshnessError);
      else expect(run).toThrow(VerificationError);
    });
  }

  it("a command replayed at or below the last executed seq is refused", () => {
    const command = commandSchema.parse(vectors.cases[0]!.message);
    expect(() => verifyCommand(command, keys.plane, { deviceId: vectors.deviceId, lastSeq: 5, nowMs: vectors.cases[0]!.nowMs }))
      .toThrow(FreshnessError);
  });

  it("a command for another device is refused", () => {
    const command = commandSchema.parse(vectors.cases[0]!.message);
    expect(() => verifyCommand(command, keys.plane, { deviceId: "hw-000000000000000000000000", lastSeq: 0, nowMs: vectors.cases[0]!.nowMs }))
      .toThrow(VerificationError);
  });
});

describe("native signing (node:crypto) against the @noble/ed25519 reference", () => {
  const TEST_PLANE_SEED = new Uint8Array(32).fill(7); // the vectors' test seed

  it("signObject and createFastSigner give the committed vector's signature", () => {
    const { sig: _sig, ...body } = vectors.cases[0]!.message;
    expect(signObject(body, TEST_PLANE_SEED).sig).toBe(vectors.cases[0]!.message.sig);
    expect(signObject(body, TEST_PLANE_SEED, createFastSigner(TEST_PLANE_SEED)).sig).toBe(vectors.cases[0]!.message.sig);
    expect(keyPairFromPrivate(TEST_PLANE_SEED).publicKey).toEqual(keys.plane);
  });

  it("gives @noble/ed25519's public key and signature bytes on fresh keys", () => {
    for (let i = 0; i < 20; i++) {
      const { privateKey, publicKey } = generateKeyPair();
      expect(publicKey).toEqual(ed.getPublicKey(privateKey));
      const message = new Uint8Array(randomBytes(i * 7));
      expect(signBytes(message, privateKey)).toEqual(ed.sign(message, privateKey));
      expect(createFastSigner(privateKey)(message)).toEqual(ed.sign(message, privateKey));
    }
  });

  it("signs with the bytes the key array holds now, and refuses a key of the wrong length", () => {
    const seed = new Uint8Array(generateKeyPair().privateKey);
    const message = new Uint8Array([1, 2, 3]);
    signBytes(message, seed);
    seed.fill(9);
    expect(signBytes(message, seed)).toEqual(ed.sign(message, seed));
    expect(() => signBytes(message, new Uint8Array(31))).toThrow(VerificationError);
    expect(() => keyPairFromPrivate(new Uint8Array(33))).toThrow(VerificationError);
  });
});

describe("signObject / verifySignedObject", () => {
  it("round-trips on fresh keys with both verifiers and fails closed on garbage", () => {
    const { privateKey, publicKey } = generateKeyPair();
    const signed = signObject({ a: 1, b: "x" }, privateKey);
    expect(() => verifySignedObject(signed, publicKey)).not.toThrow();
    expect(() => verifySignedObject(signed, publicKey, verifyBytesFast)).not.toThrow();
    expect(() => verifySignedObject({ ...signed, sig: "***" }, publicKey)).toThrow(VerificationError);
    expect(() => verifySignedObject({ a: 1 }, publicKey)).toThrow(VerificationError);
    expect(() => verifySignedObject({ ...signed, a: Number.NaN }, publicKey)).toThrow(VerificationError);
  });

  it("derives a topic-safe device id from the public key", () => {
    expect(deviceIdFromPublicKey(generateKeyPair().publicKey)).toMatch(/^hw-[0-9a-f]{24}$/);
  });
});
