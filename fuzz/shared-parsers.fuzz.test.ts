/**
 * HW-FUZZ-1 on the shared parsers of signed input: MQTT connect tokens (HW-AUTH-1; refusal VerificationError, or its
 * subclass FreshnessError for time) and the TUF custom release metadata (HW-UPD-3; refusal ValidationError naming
 * the field). Valid tokens and metadata are mutated character-wise and field-wise, plus arbitrary input.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createConnectToken, verifyConnectToken } from "../shared/auth/connect-token.js";
import { canonicalBytes } from "../shared/canonical/index.js";
import { generateKeyPair, signBytes, toBase64Url } from "../shared/crypto/index.js";
import { ValidationError, VerificationError } from "../shared/errors/index.js";
import { parseReleaseCustom } from "../shared/protocol/release.js";
import { bounded, fuzz, mutatedBytes, mutatedObject, sameMeaning } from "./support.js";

const key = generateKeyPair();
const deviceId = "hw-0123456789abcdef01234567";
const now = 1_700_000_000_000;

describe("HW-FUZZ-1: connect tokens", () => {
  const token = createConnectToken(deviceId, key.privateKey, now);
  const verify = (t: string) => verifyConnectToken(t, deviceId, key.publicKey, now + 1);
  it("the seed token verifies", () => {
    expect(verify(token).deviceId).toBe(deviceId);
  });
  it("a mutated token verifies only if it carries the same claims, else VerificationError", () => {
    const original = verify(token);
    fuzz(
      "connect token (mutated)",
      fc.property(fc.oneof(mutatedBytes(Buffer.from(token)).map((b) => Buffer.from(b).toString("latin1")), fc.string({ maxLength: 300 }), fc.string({ unit: "binary", maxLength: 300 })), (t) => {
        const outcome = bounded(() => verify(t), [VerificationError]);
        // base64url decoding ignores trailing bits and junk characters; what matters is the signed claims.
        if (outcome.ok) expect(outcome.value).toEqual(original);
      }),
    );
  });
  it("well-signed tokens with hostile claims are refused with VerificationError (or FreshnessError) and never throw anything else", () => {
    const claims = { deviceId, iat: now, exp: now + 60_000, nonce: "n".repeat(22) };
    fuzz(
      "connect token (signed hostile claims)",
      fc.property(mutatedObject(claims), (value) => {
        let body: Uint8Array;
        try {
          body = canonicalBytes(value);
        } catch {
          return; // not encodable, so nobody can sign it
        }
        const t = `${toBase64Url(body)}.${toBase64Url(signBytes(body, key.privateKey))}`;
        const outcome = bounded(() => verify(t), [VerificationError]);
        if (outcome.ok) {
          expect(outcome.value.deviceId).toBe(deviceId);
          expect(outcome.value.exp).toBeGreaterThan(now + 1);
          expect(outcome.value.exp - outcome.value.iat).toBeLessThanOrEqual(10 * 60_000);
        }
      }),
    );
  });
});

describe("HW-FUZZ-1: TUF custom release metadata (shared/protocol/release.ts)", () => {
  const custom = {
    hardwareModels: ["S19", "S19j Pro"],
    version: "2.1.0-rc.1+build.5",
    referenceMeasurements: [
      { path: "/usr/bin/bmminer", sha256: "ab".repeat(32), size: 1024, claim: "executables" },
      { path: "/etc/ld.so.preload", sha256: "", size: 0 },
      { path: "/config/cgminer.conf", kind: "missing", size: 0, sha256: "zz" },
    ],
    releaseNotes: "kept as is",
  };
  it("field-wise mutations parse to a value that re-parses identically, or are a ValidationError naming a custom.* field", () => {
    fuzz(
      "TUF custom metadata",
      fc.property(fc.oneof(mutatedObject(custom), fc.jsonValue({ maxDepth: 4 })), (value) => {
        const outcome = bounded(() => parseReleaseCustom(value, "fw-s19-2.1.0"), [ValidationError]);
        if (!outcome.ok) {
          expect((outcome.error as ValidationError).field).toMatch(/^signed\.targets\.fw-s19-2\.1\.0\.custom/);
          return;
        }
        const again = parseReleaseCustom(JSON.parse(JSON.stringify(outcome.value)), "fw-s19-2.1.0");
        expect(sameMeaning(again, outcome.value)).toBe(true);
      }),
    );
  });
  it("byte-wise mutations of the signed JSON text: JSON errors aside, only ValidationError", () => {
    fuzz(
      "TUF custom metadata (bytes)",
      fc.property(mutatedBytes(Buffer.from(JSON.stringify(custom))), (bytes) => {
        let value: unknown;
        try {
          value = JSON.parse(Buffer.from(bytes).toString("utf8"));
        } catch {
          return; // tuf-js refuses the document before the custom block is read
        }
        bounded(() => parseReleaseCustom(value, "fw"), [ValidationError]);
      }),
    );
  });
});

// Crash found by this campaign: a `version` nested 5,000 deep made the error message itself (JSON.stringify) overflow
// the stack, so the refusal was a RangeError instead of the documented ValidationError (HW-UPD-3).
it.each([
  ["version", { hardwareModels: ["S19"], version: JSON.parse("[".repeat(50_000) + "]".repeat(50_000)) as unknown }, "version"],
  ["version (object)", { hardwareModels: ["S19"], version: JSON.parse('{"a":'.repeat(20_000) + "1" + "}".repeat(20_000)) as unknown }, "version"],
  ["hardwareModels", { hardwareModels: JSON.parse("[".repeat(50_000) + "]".repeat(50_000)) as unknown, version: "1.0.0" }, "hardwareModels"],
  ["referenceMeasurements", { hardwareModels: ["S19"], version: "1.0.0", referenceMeasurements: [JSON.parse("[".repeat(50_000) + "]".repeat(50_000)) as unknown] }, "referenceMeasurements.0"],
])("regression: custom metadata with %s nested deep is a ValidationError naming it", (_what, custom, field) => {
  const outcome = bounded(() => parseReleaseCustom(custom, "fw"), [ValidationError]);
  expect(outcome.ok).toBe(false);
  if (!outcome.ok) expect((outcome.error as ValidationError).field).toBe(`signed.targets.fw.custom.${field}`);
});
