/**
 * Challenges (HW-EVD-1): single-use, expiring nonces the device answers with evidence. Sent on every hello and on
 * an operator's "attest now".
 */
import { randomBytes } from "node:crypto";
import { toBase64Url } from "../../../shared/crypto/index.js";
import type { Challenge } from "../../../shared/protocol/index.js";
import { challenges } from "../db/index.js";
import { ConflictError, NotFoundError } from "../errors.js";
import type { ServiceContext } from "./context.js";
import { lockDevice, recordAudit, type Tx } from "./tx.js";
import type { ControlPlaneService } from "./types.js";

/** Creates a one-time challenge for the device inside `tx` (HW-EVD-1: single-use, expiring). */
export async function insertChallenge(ctx: ServiceContext, tx: Tx, deviceId: string, now: number): Promise<Challenge> {
  const nonce = toBase64Url(new Uint8Array(randomBytes(24)));
  const expiresAt = now + ctx.options.challengeTtlMs;
  await tx.insert(challenges).values({ nonce, deviceId, issuedAt: new Date(now), expiresAt: new Date(expiresAt) });
  return { v: 1 as const, type: "challenge" as const, deviceId, nonce, issuedAt: now, expiresAt };
}

/** Publishes a committed challenge when the device is connected here; a failure is logged (the next hello sends another). */
export async function publishChallenge(ctx: ServiceContext, challenge: Challenge): Promise<void> {
  if (!ctx.publisher.isConnected(challenge.deviceId)) return;
  try {
    await ctx.publisher.publish(challenge.deviceId, "challenge", challenge);
  } catch (error) {
    ctx.logger.warn({ err: error, deviceId: challenge.deviceId }, "challenge publish failed");
  }
}

/** The operator's "attest now": a challenge to an accepted device, audited. NotFoundError / ConflictError otherwise. */
export function createChallenges(ctx: ServiceContext): Pick<ControlPlaneService, "attestNow"> {
  const { db } = ctx;
  return {
    async attestNow(actor, deviceId) {
      const now = ctx.now();
      const at = new Date(now);
      const challenge = await db.transaction(async (tx) => {
        const device = await lockDevice(tx, deviceId);
        if (!device) throw new NotFoundError("device", deviceId);
        if (device.enrollment !== "accepted") throw new ConflictError(`device ${deviceId} is ${device.enrollment}, not accepted`);
        const created = await insertChallenge(ctx, tx, deviceId, now);
        await recordAudit(tx, [{ actor, action: "device.attest-now", target: deviceId, detail: { expiresAt: new Date(created.expiresAt).toISOString() } }], at);
        return created;
      });
      await publishChallenge(ctx, challenge);
      return { nonce: challenge.nonce, expiresAt: new Date(challenge.expiresAt).toISOString() };
    },

  };
}
