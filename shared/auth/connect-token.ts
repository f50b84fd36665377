/**
 * MQTT CONNECT password for a device: a short-lived token signed by the device key.
 *   base64url(canonical JSON {deviceId, iat, exp, nonce}) "." base64url(Ed25519 signature over those bytes)
 * The broker checks the signature against the enrolled key, the expiry, a bounded lifetime, and remembers
 * nonces until they expire so a captured token cannot be replayed (rule HW-AUTH-1).
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { canonicalBytes } from "../canonical/index.js";
import { fromBase64Url, signBytes, toBase64Url, verifyBytes, type Verifier } from "../crypto/index.js";
import { FreshnessError, VerificationError } from "../errors/index.js";

export const CONNECT_TOKEN_MAX_TTL_MS = 10 * 60_000;
export const CLOCK_SKEW_MS = 60_000;

const claimsSchema = z.strictObject({
  deviceId: z.string().max(64),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().nonnegative(),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
});
export type ConnectTokenClaims = z.infer<typeof claimsSchema>;

export function createConnectToken(deviceId: string, privateKey: Uint8Array, nowMs: number, ttlMs = 5 * 60_000): string {
  return issueConnectToken(deviceId, privateKey, nowMs, ttlMs).token;
}

/**
 * Like `createConnectToken`, also returning the claims: the agent signs `claims.nonce` into every hello and
 * heartbeat it sends on the connection this token opens (`connectNonce`, HW-LIVE-1).
 */
export function issueConnectToken(
  deviceId: string,
  privateKey: Uint8Array,
  nowMs: number,
  ttlMs = 5 * 60_000,
): { token: string; claims: ConnectTokenClaims } {
  const claims: ConnectTokenClaims = {
    deviceId,
    iat: nowMs,
    exp: nowMs + Math.min(ttlMs, CONNECT_TOKEN_MAX_TTL_MS),
    nonce: randomBytes(16).toString("base64url"),
  };
  const body = canonicalBytes(claims);
  return { token: `${toBase64Url(body)}.${toBase64Url(signBytes(body, privateKey))}`, claims };
}

/** Verifies a token for `deviceId`. Throws VerificationError (bad form/signature) or FreshnessError (time). */
export function verifyConnectToken(
  token: string,
  deviceId: string,
  publicKey: Uint8Array,
  nowMs: number,
  verifier: Verifier = verifyBytes,
): ConnectTokenClaims {
  let claims: ConnectTokenClaims;
  try {
    const [bodyPart, sigPart, extra] = token.split(".");
    if (!bodyPart || !sigPart || extra !== undefined) throw new VerificationError("connect token is not body.signature");
    const body = fromBase64Url(bodyPart);
    if (!verifier(fromBase64Url(sigPart), body, publicKey)) {
      throw new VerificationError(`connect token signature does not verify for ${deviceId}`);
    }
    claims = claimsSchema.parse(JSON.parse(Buffer.from(body).toString("utf8")));
  } catch (cause) {
    if (cause instanceof VerificationError) throw cause;
    throw new VerificationError(`connect token is malformed: ${String(cause)}`, { cause });
  }
  if (claims.deviceId !== deviceId) {
    throw new VerificationError(`connect token is for ${claims.deviceId}, not ${deviceId}`);
  }
  if (claims.exp <= nowMs) throw new FreshnessError(`connect token expired at ${claims.exp} (now ${nowMs})`);
  if (claims.iat > nowMs + CLOCK_SKEW_MS) throw new FreshnessError(`connect token issued in the future (${claims.iat})`);
  if (claims.exp - claims.iat > CONNECT_TOKEN_MAX_TTL_MS) {
    throw new FreshnessError(`connect token lifetime ${claims.exp - claims.iat} ms exceeds ${CONNECT_TOKEN_MAX_TTL_MS}`);
  }
  return claims;
}

/** Remembers token nonces until their expiry so each token is usable once (bounded: oldest evicted). */
export class NonceMemory {
  private readonly seen = new Map<string, number>();
  constructor(private readonly maxEntries = 200_000) {}

  /** Returns false when the nonce was already used. */
  remember(nonce: string, expiresAtMs: number, nowMs: number): boolean {
    if (this.seen.size >= this.maxEntries) this.prune(nowMs);
    if (this.seen.has(nonce)) return false;
    this.seen.set(nonce, expiresAtMs);
    return true;
  }

  private prune(nowMs: number): void {
    for (const [nonce, exp] of this.seen) if (exp <= nowMs) this.seen.delete(nonce);
    // Still full: evict oldest insertions; a token older than its TTL fails the expiry check anyway.
    for (const nonce of this.seen.keys()) {
      if (this.seen.size < this.maxEntries) break;
      this.seen.delete(nonce);
    }
  }
}
