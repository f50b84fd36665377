/**
 * Ed25519 identity and signatures over canonical JSON.
 *
 * Signing and public-key derivation go through node:crypto (OpenSSL in Node, BoringSSL in Bun): Ed25519 is
 * deterministic (RFC 8032), so the bytes are those of @noble/ed25519, which the tests check on the committed
 * vectors and fresh keys. @noble/ed25519 stays the strict reference verifier; its signing would build a 4,225-point
 * base-point table (1.3 MB of heap for the process's life) and cost ~0.6 ms per heartbeat on the agent.
 * `verifyFast` uses node:crypto for hot verification paths on the control plane; `vectors.json` beside this file
 * proves both verifiers agree, negative cases included.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import * as ed from "@noble/ed25519";
import { canonicalBytes } from "../canonical/index.js";
import { VerificationError } from "../errors/index.js";

ed.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash("sha512").update(message).digest());

export interface KeyPair {
  /** 32-byte Ed25519 seed. Never leaves the process that made it except into a 0600 file. */
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateKeyPair(): KeyPair {
  const privateKey = new Uint8Array(randomBytes(32));
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  if (privateKey.length !== 32) throw new VerificationError(`Ed25519 private key must be 32 bytes, got ${privateKey.length}`);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

// DER prefixes of an Ed25519 PKCS#8 private key and SubjectPublicKeyInfo (RFC 8410); the 32 raw bytes follow.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** The KeyObject of a 32-byte seed, kept per seed array (a device or plane signs with one key all its life). */
const nodePrivateKeys = new WeakMap<Uint8Array, { seed: Buffer; key: KeyObject }>();

function nodePrivateKey(privateKey: Uint8Array): KeyObject {
  const cached = nodePrivateKeys.get(privateKey);
  // The bytes are compared too: an array refilled in place must not sign with the key it held before.
  if (cached && cached.seed.equals(privateKey)) return cached.key;
  if (privateKey.length !== 32) throw new VerificationError(`Ed25519 private key must be 32 bytes, got ${privateKey.length}`);
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, privateKey]), format: "der", type: "pkcs8" });
  nodePrivateKeys.set(privateKey, { seed: Buffer.from(privateKey), key });
  return key;
}

/** The 32-byte Ed25519 public key of a 32-byte seed (RFC 8032 5.1.5). Throws VerificationError on a wrong length. */
function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  const spki = createPublicKey(nodePrivateKey(privateKey)).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length));
}

export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

export function fromBase64Url(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new VerificationError(`not base64url: ${JSON.stringify(text.slice(0, 40))}`);
  return new Uint8Array(Buffer.from(text, "base64url"));
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A device's id is derived from its public key, so a device cannot claim another device's id. */
export function deviceIdFromPublicKey(publicKey: Uint8Array): string {
  return `hw-${sha256Hex(publicKey).slice(0, 24)}`;
}

/** Ed25519 signature (64 bytes) of `message` with a 32-byte seed. Throws VerificationError on a wrong key length. */
export function signBytes(message: Uint8Array, privateKey: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, message, nodePrivateKey(privateKey)));
}

const weakKeyCache = new Map<string, boolean>();

/**
 * A public key that is not a canonical point of large order. A small-order key (the identity point, say)
 * "verifies" signatures nobody made, and the two verifiers would disagree on it (OpenSSL accepts it, strict
 * @noble/ed25519 does not), so both refuse it up front.
 */
export function isWeakPublicKey(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return true;
  const cacheKey = Buffer.from(publicKey).toString("hex");
  let weak = weakKeyCache.get(cacheKey);
  if (weak === undefined) {
    try {
      weak = ed.Point.fromBytes(publicKey, false).isSmallOrder();
    } catch {
      weak = true; // not a point at all
    }
    if (weakKeyCache.size >= NODE_KEY_CACHE_MAX) weakKeyCache.clear();
    weakKeyCache.set(cacheKey, weak);
  }
  return weak;
}

/** Reference verification (@noble/ed25519, strict RFC 8032). Never throws: any failure is `false` (fail closed). */
export function verifyBytes(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    if (signature.length !== 64 || isWeakPublicKey(publicKey)) return false;
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

const nodeKeyCache = new Map<string, KeyObject>();
const NODE_KEY_CACHE_MAX = 50_000;

function nodePublicKey(publicKey: Uint8Array): KeyObject {
  const cacheKey = Buffer.from(publicKey).toString("hex");
  let key = nodeKeyCache.get(cacheKey);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: "der", type: "spki" });
    if (nodeKeyCache.size >= NODE_KEY_CACHE_MAX) nodeKeyCache.clear();
    nodeKeyCache.set(cacheKey, key);
  }
  return key;
}

/** Fast verification through node:crypto; must agree with `verifyBytes` on every committed vector. */
export function verifyBytesFast(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    if (signature.length !== 64 || isWeakPublicKey(publicKey)) return false;
    return nodeVerify(null, message, nodePublicKey(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * A signer bound to one key for the plane's hot paths (a bulk quarantine signs 1,000 commands): the same
 * node:crypto signature as `signBytes`, with the key object looked up once.
 */
export function createFastSigner(privateKey: Uint8Array): (message: Uint8Array) => Uint8Array {
  const key = nodePrivateKey(privateKey);
  return (message) => new Uint8Array(nodeSign(null, message, key));
}

/** A JSON object with a detached Ed25519 signature in `sig` over the RFC 8785 form of every other field. */
export type Signed<T extends object> = T & { sig: string };

export function signObject<T extends object>(
  body: T,
  privateKey: Uint8Array,
  signer: (message: Uint8Array) => Uint8Array = (message) => signBytes(message, privateKey),
): Signed<T> {
  const { sig: _ignored, ...rest } = body as T & { sig?: unknown };
  const signature = signer(canonicalBytes(rest));
  return { ...(rest as T), sig: toBase64Url(signature) };
}

export type Verifier = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean;

/**
 * Verifies `sig` over the canonical form of the rest of the object. Throws VerificationError on any failure,
 * including malformed input (fail closed).
 */
export function verifySignedObject(
  signed: object,
  publicKey: Uint8Array,
  verifier: Verifier = verifyBytes,
): void {
  let ok = false;
  try {
    const { sig, ...rest } = signed as { sig?: unknown };
    if (typeof sig !== "string") throw new VerificationError("missing signature field 'sig'");
    ok = verifier(fromBase64Url(sig), canonicalBytes(rest), publicKey);
  } catch (cause) {
    if (cause instanceof VerificationError) throw cause;
    throw new VerificationError(`signature check failed: ${String(cause)}`, { cause });
  }
  if (!ok) throw new VerificationError("signature does not verify with the expected key");
}
