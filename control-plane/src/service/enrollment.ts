/**
 * Enrollment (the enrollment machine, control-plane/src/trust): a device's signed enrollment request (proof of
 * possession, HW-SIG-1), enrollment tokens (HW-TOKEN-1), pre-authorization, and the operator's accept, reject and
 * revoke. A revoked or rejected device loses its pending commands and its live MQTT session at once
 * (`publisher.disconnect`).
 */
import { and, eq, gt, isNull, lt, sql } from "drizzle-orm";
import { deviceIdFromPublicKey, fromBase64Url, sha256Hex, toBase64Url, verifyBytesFast, verifySignedObject } from "../../../shared/crypto/index.js";
import { FreshnessError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import type { EnrollmentRequest, EnrollmentResponse } from "../../../shared/protocol/index.js";
import { commands, devices, enrollmentTokens } from "../db/index.js";
import { CapacityError, ConflictError, NotFoundError } from "../errors.js";
import { NEW, transition, type EnrollmentEvent } from "../trust/index.js";
import { iso, MAX_CLOCK_DIFFERENCE_MS, newId, newSecret, type ServiceContext } from "./context.js";
import { toDeviceView } from "./queries.js";
import { type DeviceRow, listTokens, lockDevice, recordAudit, recordTransitions, revokeTokenOnce } from "./tx.js";
import type { Actor, ControlPlaneService, DeviceView, EnrollmentState, EnrollmentTokenCreated, EnrollmentTokenView } from "./types.js";

/** Devices that may wait in `pending` at once unless ServiceOptions.maxPendingDevices says otherwise. */
export const DEFAULT_MAX_PENDING_DEVICES = 10_000;

function toEnrollmentTokenView(row: typeof enrollmentTokens.$inferSelect, now: number): EnrollmentTokenView {
  const status =
    row.revokedAt !== null ? "revoked" : row.expiresAt.getTime() <= now ? "expired" : row.uses >= row.maxUses ? "used-up" : "active";
  return {
    id: row.id,
    label: row.label,
    createdAt: row.createdAt.toISOString(),
    createdBy: row.createdBy as Actor,
    expiresAt: row.expiresAt.toISOString(),
    maxUses: row.maxUses,
    uses: row.uses,
    lastUsedAt: iso(row.lastUsedAt),
    revokedAt: iso(row.revokedAt),
    status,
  };
}

/** The enrollment methods of ControlPlaneService (errors as documented there). */
export function createEnrollment(
  ctx: ServiceContext,
): Pick<
  ControlPlaneService,
  | "enroll"
  | "createEnrollmentToken"
  | "listEnrollmentTokens"
  | "revokeEnrollmentToken"
  | "acceptDevice"
  | "rejectDevice"
  | "revokeDevice"
  | "preauthorizeDevice"
> {
  const { db } = ctx;

  async function changeEnrollment(actor: Actor, deviceId: string, event: EnrollmentEvent, reason: string): Promise<DeviceView> {
    const at = new Date(ctx.now());
    const row = await db.transaction(async (tx) => {
      const device = await lockDevice(tx, deviceId);
      if (!device) throw new NotFoundError("device", deviceId);
      const from = device.enrollment as EnrollmentState;
      const to = transition("enrollment", from, event);
      const [updated] = await tx.update(devices).set({ enrollment: to, updatedAt: at }).where(eq(devices.id, deviceId)).returning();
      if (to === "revoked" || to === "rejected") {
        // A device that may no longer connect gets nothing more; its pending commands end here.
        await tx
          .update(commands)
          .set({ status: "superseded", reason: `device ${to}` })
          .where(and(eq(commands.deviceId, deviceId), eq(commands.status, "pending")));
      }
      await recordTransitions(tx, [{ deviceId, machine: "enrollment", from, to, reason, actor }], at);
      return updated as DeviceRow;
    });
    if (row.enrollment === "revoked" || row.enrollment === "rejected") {
      try {
        await ctx.publisher.disconnect?.(deviceId);
      } catch (error) {
        ctx.logger.warn({ err: error, deviceId }, "disconnect after revoke failed");
      }
    }
    return toDeviceView(row);
  }

  async function enroll(request: EnrollmentRequest): Promise<EnrollmentResponse> {
    const now = ctx.now();
    const at = new Date(now);
    // Proof of possession: signed by the key in the request, and the id is derived from that key.
    let publicKey: Uint8Array;
    try {
      publicKey = fromBase64Url(request.publicKey);
    } catch (cause) {
      throw new VerificationError("enrollment publicKey is not base64url", { cause });
    }
    verifySignedObject(request, publicKey, verifyBytesFast); // HW-SIG-1
    if (request.deviceId !== deviceIdFromPublicKey(publicKey)) {
      throw new VerificationError(`deviceId ${request.deviceId} is not derived from the request's public key`);
    }
    if (Math.abs(now - request.ts) > MAX_CLOCK_DIFFERENCE_MS) {
      throw new FreshnessError(`enrollment ts ${request.ts} is more than 5 minutes from now (${now})`);
    }
    const actor: Actor = { kind: "device", id: request.deviceId };
    const versions = { model: request.model, firmwareVersion: request.firmwareVersion, agentVersion: request.agentVersion };

    const state = await db.transaction(async (tx): Promise<EnrollmentState> => {
      const consumeToken = async (): Promise<string> => {
        const hash = sha256Hex(request.enrollmentToken ?? "");
        // Atomic: the WHERE re-checks uses and expiry under the row lock the UPDATE takes.
        const [used] = await tx
          .update(enrollmentTokens)
          .set({ uses: sql`${enrollmentTokens.uses} + 1`, lastUsedAt: at })
          // HW-TOKEN-1: a revoked token enrolls nothing.
          .where(and(eq(enrollmentTokens.tokenHash, hash), lt(enrollmentTokens.uses, enrollmentTokens.maxUses), gt(enrollmentTokens.expiresAt, at), isNull(enrollmentTokens.revokedAt)))
          .returning({ id: enrollmentTokens.id });
        if (used) return used.id;
        const [known] = await tx.select().from(enrollmentTokens).where(eq(enrollmentTokens.tokenHash, hash));
        if (!known) throw new VerificationError("enrollment token not recognised");
        if (known.revokedAt !== null) throw new ConflictError(`enrollment token ${known.id} was revoked at ${known.revokedAt.toISOString()}`);
        if (known.expiresAt <= at) throw new ConflictError(`enrollment token ${known.id} expired at ${known.expiresAt.toISOString()}`);
        throw new ConflictError(`enrollment token ${known.id} is used up (${known.uses}/${known.maxUses})`);
      };

      const existing = await lockDevice(tx, request.deviceId);
      if (existing) {
        if (existing.publicKey !== request.publicKey) {
          throw new VerificationError(`device ${request.deviceId} is enrolled with a different key`);
        }
        const from = existing.enrollment as EnrollmentState;
        // Re-posting is idempotent; rejected and revoked stay so whatever the device sends.
        if (from === "rejected" || from === "revoked") return from;
        let to: EnrollmentState = from;
        if (from === "pending" && request.enrollmentToken) {
          const tokenId = await consumeToken();
          to = transition("enrollment", from, "enroll-with-token");
          await recordTransitions(tx, [{ deviceId: existing.id, machine: "enrollment", from, to, reason: `enrollment token ${tokenId}`, actor }], at);
        }
        // A pre-authorized device fills in its versions on arrival.
        await tx
          .update(devices)
          .set({ enrollment: to, firmwareVersion: versions.firmwareVersion, agentVersion: versions.agentVersion, updatedAt: at })
          .where(eq(devices.id, existing.id));
        return to;
      }

      let to: EnrollmentState;
      let reason: string;
      if (request.enrollmentToken) {
        const tokenId = await consumeToken();
        to = transition("enrollment", NEW, "enroll-with-token");
        reason = `enrollment token ${tokenId}`;
      } else {
        const maxPending = ctx.options.maxPendingDevices ?? DEFAULT_MAX_PENDING_DEVICES;
        const [{ pending } = { pending: 0 }] = await tx
          .select({ pending: sql<number>`count(*)::int` })
          .from(devices)
          .where(eq(devices.enrollment, "pending"));
        if (pending >= maxPending) {
          throw new CapacityError(`${pending} devices already await an operator (cap ${maxPending}); accept or reject some, or enroll with a token`);
        }
        to = transition("enrollment", NEW, "enroll");
        reason = "enrollment request without token; awaiting an operator";
      }
      const inserted = await tx
        .insert(devices)
        .values({ id: request.deviceId, publicKey: request.publicKey, ...versions, enrollment: to, createdAt: at, updatedAt: at })
        .onConflictDoNothing()
        .returning({ id: devices.id });
      if (inserted.length === 0) {
        // A concurrent request from the same device won the insert; this one must not count twice.
        throw new ConflictError(`device ${request.deviceId} is being enrolled concurrently; retry`);
      }
      await recordTransitions(tx, [{ deviceId: request.deviceId, machine: "enrollment", from: NEW, to, reason, actor }], at);
      return to;
    });

    const response: EnrollmentResponse = { deviceId: request.deviceId, enrollment: state, commandPublicKey: ctx.commandPublicKey };
    if (ctx.options.publicMqttUrl) response.mqttUrl = ctx.options.publicMqttUrl;
    return response;
  }

  return {
    enroll,
    listEnrollmentTokens: () => listTokens(db, enrollmentTokens, ctx.now, toEnrollmentTokenView),

    async revokeEnrollmentToken(actor, id, reason) {
      const at = new Date(ctx.now());
      const row = await revokeTokenOnce(db, enrollmentTokens, "enrollment token", id, actor, at, (token) => ({ action: "enrollment-token.revoke", detail: { label: token.label, uses: token.uses, reason } }));
      return toEnrollmentTokenView(row, at.getTime());
    },

    async createEnrollmentToken(actor, input): Promise<EnrollmentTokenCreated> {
      if (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0) throw new ValidationError(`ttlMs must be a positive integer, got ${input.ttlMs}`, "ttlMs");
      if (!Number.isInteger(input.maxUses) || input.maxUses < 1) throw new ValidationError(`maxUses must be a positive integer, got ${input.maxUses}`, "maxUses");
      const now = ctx.now();
      const at = new Date(now);
      const token = newSecret("hwe_");
      const id = newId("enr");
      const expiresAt = new Date(now + input.ttlMs);
      await db.transaction(async (tx) => {
        await tx.insert(enrollmentTokens).values({
          id,
          tokenHash: sha256Hex(token),
          label: input.label ?? null,
          expiresAt,
          maxUses: input.maxUses,
          createdBy: actor,
          createdAt: at,
        });
        await recordAudit(tx, [{ actor, action: "enrollment-token.create", target: id, detail: { expiresAt: expiresAt.toISOString(), maxUses: input.maxUses, label: input.label ?? null } }], at);
      });
      return { id, token, expiresAt: expiresAt.toISOString(), maxUses: input.maxUses };
    },

    acceptDevice: (actor, deviceId, reason) => changeEnrollment(actor, deviceId, "accept", reason),
    rejectDevice: (actor, deviceId, reason) => changeEnrollment(actor, deviceId, "reject", reason),
    revokeDevice: (actor, deviceId, reason) => changeEnrollment(actor, deviceId, "revoke", reason),

    async preauthorizeDevice(actor, input) {
      let key: Uint8Array;
      try {
        key = fromBase64Url(input.publicKey);
      } catch {
        key = new Uint8Array();
      }
      if (key.length !== 32) throw new ValidationError("publicKey must be a base64url Ed25519 public key (32 bytes)", "publicKey");
      if (typeof input.model !== "string" || input.model.length === 0) throw new ValidationError("model is required", "model");
      const deviceId = deviceIdFromPublicKey(key);
      const at = new Date(ctx.now());
      const row = await db.transaction(async (tx) => {
        const to = transition("enrollment", NEW, "preauthorize");
        const [inserted] = await tx
          .insert(devices)
          .values({ id: deviceId, publicKey: toBase64Url(key), model: input.model, enrollment: to, createdAt: at, updatedAt: at })
          .onConflictDoNothing()
          .returning();
        if (!inserted) throw new ConflictError(`device ${deviceId} already exists`);
        await recordTransitions(tx, [{ deviceId, machine: "enrollment", from: NEW, to, reason: "pre-authorized by an operator", actor }], at);
        return inserted;
      });
      return toDeviceView(row);
    },
  };
}
