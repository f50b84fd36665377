/**
 * Regenerates shared/crypto/vectors.json from fixed TEST seeds (never used outside tests).
 * Run: npx tsx scripts/gen-crypto-vectors.ts
 */
import { writeFileSync } from "node:fs";
import { canonicalize } from "../shared/canonical/index.js";
import { deviceIdFromPublicKey, keyPairFromPrivate, signObject, toBase64Url } from "../shared/crypto/index.js";

const TEST_PLANE_SEED = new Uint8Array(32).fill(7);
const TEST_OTHER_SEED = new Uint8Array(32).fill(9);
const plane = keyPairFromPrivate(TEST_PLANE_SEED);
const other = keyPairFromPrivate(TEST_OTHER_SEED);
const deviceId = deviceIdFromPublicKey(keyPairFromPrivate(new Uint8Array(32).fill(3)).publicKey);

const command = {
  v: 1,
  type: "command",
  deviceId,
  seq: 5,
  issuedAt: 1_800_000_000_000,
  expiresAt: 1_800_000_060_000,
  action: "quarantine",
  params: { reason: "vector", "ü-key": "ünïcode", n: 1e21 },
};
const signed = signObject(command, plane.privateKey);
const tampered = { ...signed, seq: 6 };
const sigBytes = Buffer.from(signed.sig, "base64url");
sigBytes[0] = sigBytes[0]! ^ 0x01;
const flipped = { ...signed, sig: sigBytes.toString("base64url") };

// The identity point as a "public key" with R = identity and S = 0: accepted by plain cofactorless checks
// (OpenSSL) and by ZIP-215, so both of our verifiers must refuse small-order keys explicitly.
const smallOrderKey = new Uint8Array(32);
smallOrderKey[0] = 1;
const smallOrderMessage = { ...command, deviceId };
const smallOrderSig = new Uint8Array(64);
smallOrderSig[0] = 1;
const smallOrderSigned = { ...smallOrderMessage, sig: toBase64Url(smallOrderSig) };

const vectors = {
  note: "Test-only keys (seeds 0x07.., 0x09.., 0x03..). Both verifiers must give `valid` for each case; small-order keys are refused by both.",
  planePublicKey: toBase64Url(plane.publicKey),
  otherPublicKey: toBase64Url(other.publicKey),
  smallOrderPublicKey: toBase64Url(smallOrderKey),
  deviceId,
  canonical: canonicalize(command),
  cases: [
    { name: "valid", message: signed, publicKey: "plane", nowMs: 1_800_000_001_000, valid: true, fresh: true },
    { name: "wrong key", message: signed, publicKey: "other", nowMs: 1_800_000_001_000, valid: false, fresh: true },
    { name: "tampered field", message: tampered, publicKey: "plane", nowMs: 1_800_000_001_000, valid: false, fresh: true },
    { name: "tampered signature byte", message: flipped, publicKey: "plane", nowMs: 1_800_000_001_000, valid: false, fresh: true },
    { name: "expired", message: signed, publicKey: "plane", nowMs: 1_800_000_060_000, valid: true, fresh: false },
    { name: "small-order public key", message: smallOrderSigned, publicKey: "smallOrder", nowMs: 1_800_000_001_000, valid: false, fresh: true },
  ],
};
writeFileSync(new URL("../shared/crypto/vectors.json", import.meta.url), `${JSON.stringify(vectors, null, 2)}\n`);
console.log("wrote shared/crypto/vectors.json");
