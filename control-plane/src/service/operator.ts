/**
 * ControlPlaneService: the operator- and enrollment-facing half of the domain (what control-plane/src/http calls).
 * Every mutating method writes its audit row in the same transaction as the change (HW-DB-1).
 */
import { randomBytes } from "node:crypto";
import { and, asc, desc, eq, gt, ilike, isNull, lt, or, type SQL, sql } from "drizzle-orm";
import {
  deviceIdFromPublicKey,
  fromBase64Url,
  sha256Hex,
  toBase64Url,
  verifyBytesFast,
  verifySignedObject,
} from "../../../shared/crypto/index.js";
import { FreshnessError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import { firstRepeatedPath, MAX_MEASUREMENTS, parseMeasurement, type EnrollmentRequest, type EnrollmentResponse } from "../../../shared/protocol/index.js";
import { CapacityError, ConflictError, NotFoundError } from "../errors.js";

/** Devices that may wait in `pending` at once unless ServiceOptions.maxPendingDevices says otherwise. */
export const DEFAULT_MAX_PENDING_DEVICES = 10_000;
import {
  apiTokens,
  auditLog,
  challenges,
  commands,
  deviceEvents,
  devices,
  enrollmentTokens,
  evidence,
  referenceValueSets,
  transitions,
} from "../db/index.js";
import { NEW, transition, type EnrollmentEvent } from "../trust/index.js";
import { issueContainment, publishCommands, toCommandView, type ContainmentAction } from "./commands.js";
import {
  type DeviceRow,
  iso,
  lockDevice,
  lockDevices,
  MAX_CLOCK_DIFFERENCE_MS,
  newId,
  newSecret,
  recordAudit,
  recordTransitions,
  type ServiceContext,
  toDeviceView,
  type Tx,
} from "./context.js";
import type {
  Actor,
  ApiPrincipal,
  ApiTokenCreated,
  ApiTokenView,
  EnrollmentTokenView,
  AuditEntry,
  CommandView,
  ControlPlaneService,
  DeviceFilter,
  DeviceView,
  EnrollmentState,
  EnrollmentTokenCreated,
  EventView,
  ReferenceMeasurement,
  ReferenceValueSet,
  Role,
  TransitionView,
} from "./types.js";

const ROLES: readonly Role[] = ["viewer", "operator", "admin"];
const MAX_LIST = 10_000;

type ReferenceRow = typeof referenceValueSets.$inferSelect;

export function toReferenceView(row: ReferenceRow): ReferenceValueSet {
  return {
    id: row.id,
    model: row.model,
    firmwareVersion: row.firmwareVersion,
    status: row.status as ReferenceValueSet["status"],
    source: row.source as ReferenceValueSet["source"],
    capturedFrom: row.capturedFrom,
    measurements: row.measurements as ReferenceMeasurement[],
    createdAt: row.createdAt.toISOString(),
    approvedAt: iso(row.approvedAt),
    approvedBy: row.approvedBy,
  };
}

function clampLimit(limit: number): number {
  return Math.max(1, Math.min(MAX_LIST, Math.floor(limit) || 1));
}

/** Creates a one-time challenge for the device inside `tx` (HW-EVD-1: single-use, expiring). */
export async function insertChallenge(ctx: ServiceContext, tx: Tx, deviceId: string, now: number) {
  const nonce = toBase64Url(new Uint8Array(randomBytes(24)));
  const expiresAt = now + ctx.options.challengeTtlMs;
  await tx.insert(challenges).values({ nonce, deviceId, issuedAt: new Date(now), expiresAt: new Date(expiresAt) });
  return { v: 1 as const, type: "challenge" as const, deviceId, nonce, issuedAt: now, expiresAt };
}

export async function publishChallenge(ctx: ServiceContext, challenge: Awaited<ReturnType<typeof insertChallenge>>): Promise<void> {
  if (!ctx.publisher.isConnected(challenge.deviceId)) return;
  try {
    await ctx.publisher.publish(challenge.deviceId, "challenge", challenge);
  } catch (error) {
    ctx.logger.warn({ err: error, deviceId: challenge.deviceId }, "challenge publish failed");
  }
}

/**
 * The wire definition of a reference measurement (shared/protocol/release.ts `parseMeasurement`, the one the
 * release metadata uses) plus the plane's own checks: at most MAX_MEASUREMENTS, each path once.
 */
function validateMeasurements(measurements: ReferenceMeasurement[]): ReferenceMeasurement[] {
  if (!Array.isArray(measurements)) throw new ValidationError("measurements must be an array", "measurements");
  if (measurements.length > MAX_MEASUREMENTS) throw new ValidationError(`measurements: more than ${MAX_MEASUREMENTS}`, "measurements");
  const parsed = measurements.map((m, i) => parseMeasurement(m, `measurements.${i}`));
  const twice = firstRepeatedPath(parsed);
  if (twice) throw new ValidationError(`measurements[${twice.index}].path ${JSON.stringify(twice.path)} is listed twice`, `measurements.${twice.index}.path`);
  return parsed;
}

/** lastUsedAt is refreshed at most this often per token (one write a minute, not one per request). */
const LAST_USED_RESOLUTION_MS = 60_000;

function toApiTokenView(row: typeof apiTokens.$inferSelect, now: number): ApiTokenView {
  const status = row.revokedAt !== null ? "revoked" : row.expiresAt !== null && row.expiresAt.getTime() <= now ? "expired" : "active";
  return {
    id: row.id,
    role: row.role as Role,
    label: row.label,
    createdAt: row.createdAt.toISOString(),
    createdBy: row.createdBy as Actor,
    expiresAt: iso(row.expiresAt),
    lastUsedAt: iso(row.lastUsedAt),
    revokedAt: iso(row.revokedAt),
    status,
  };
}

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

export function createOperatorService(ctx: ServiceContext): ControlPlaneService & { createApiTokenRow: typeof createApiTokenRow } {
  const { db } = ctx;

  async function createApiTokenRow(tx: Tx, actor: Actor, role: Role, label: string, at: Date, expiresAt: Date | null = null): Promise<ApiTokenCreated> {
    const token = newSecret("hwa_");
    const id = newId("tok");
    await tx.insert(apiTokens).values({ id, tokenHash: sha256Hex(token), role, label, createdBy: actor, createdAt: at, expiresAt });
    await recordAudit(tx, [{ actor, action: "api-token.create", target: id, detail: { role, label, expiresAt: expiresAt?.toISOString() ?? null } }], at);
    return { id, token, role, label, expiresAt: expiresAt?.toISOString() ?? null };
  }

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

  async function containment(actor: Actor, deviceIds: string[], reason: string, action: ContainmentAction): Promise<CommandView[]> {
    const ids = [...new Set(deviceIds)];
    const now = ctx.now();
    const result = await db.transaction(async (tx) => {
      const rows = await lockDevices(tx, ids);
      if (rows.length !== ids.length) {
        const found = new Set(rows.map((row) => row.id));
        throw new NotFoundError("device", ids.find((id) => !found.has(id)) ?? "");
      }
      const notAccepted = rows.find((row) => row.enrollment !== "accepted");
      if (notAccepted) throw new ConflictError(`device ${notAccepted.id} is ${notAccepted.enrollment}, not accepted: no commands are sent to it`);
      const byId = new Map(rows.map((row) => [row.id, row]));
      return issueContainment(ctx, tx, ids.map((id) => byId.get(id) as DeviceRow), action, actor, reason, now);
    });
    await publishCommands(ctx, result.toPublish);
    return result.views;
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

  async function getDeviceRow(deviceId: string): Promise<DeviceRow> {
    const [row] = await db.select().from(devices).where(eq(devices.id, deviceId));
    if (!row) throw new NotFoundError("device", deviceId);
    return row;
  }

  async function approve(tx: Tx, set: ReferenceRow, actor: Actor, at: Date): Promise<ReferenceRow> {
    // One approved set per model + firmware version: approving supersedes the previous one.
    await tx
      .update(referenceValueSets)
      .set({ status: "superseded" })
      .where(
        and(
          eq(referenceValueSets.model, set.model),
          eq(referenceValueSets.firmwareVersion, set.firmwareVersion),
          eq(referenceValueSets.status, "approved"),
        ),
      );
    const [approved] = await tx
      .update(referenceValueSets)
      .set({ status: "approved", approvedAt: at, approvedBy: actor.id })
      .where(eq(referenceValueSets.id, set.id))
      .returning();
    await recordAudit(tx, [{ actor, action: "reference-values.approve", target: set.id, detail: { model: set.model, firmwareVersion: set.firmwareVersion } }], at);
    return approved as ReferenceRow;
  }

  return {
    createApiTokenRow,
    enroll,

    async authenticateApiToken(token) {
      if (typeof token !== "string" || !token.startsWith("hwa_")) return null;
      const [row] = await db.select().from(apiTokens).where(eq(apiTokens.tokenHash, sha256Hex(token)));
      if (!row) return null;
      const now = ctx.now();
      // HW-TOKEN-1: read on every request (HW-HTTP-1), so a revoke or an expiry bites on the very next one.
      if (row.revokedAt !== null) return null;
      if (row.expiresAt !== null && row.expiresAt.getTime() <= now) return null;
      if (row.lastUsedAt === null || now - row.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
        await db.update(apiTokens).set({ lastUsedAt: new Date(now) }).where(eq(apiTokens.id, row.id));
      }
      return { id: row.id, role: row.role as Role, label: row.label } satisfies ApiPrincipal;
    },

    async createApiToken(actor, input) {
      if (!ROLES.includes(input.role)) throw new ValidationError(`role ${JSON.stringify(input.role)} is not one of ${ROLES.join(", ")}`, "role");
      if (input.ttlMs !== undefined && (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0)) {
        throw new ValidationError(`ttlMs must be a positive integer, got ${input.ttlMs}`, "ttlMs");
      }
      const at = new Date(ctx.now());
      const expiresAt = input.ttlMs === undefined ? null : new Date(at.getTime() + input.ttlMs);
      return db.transaction((tx) => createApiTokenRow(tx, actor, input.role, input.label, at, expiresAt));
    },

    async listApiTokens() {
      const rows = await db.select().from(apiTokens).orderBy(desc(apiTokens.createdAt), asc(apiTokens.id));
      const now = ctx.now();
      return rows.map((row) => toApiTokenView(row, now));
    },

    async revokeApiToken(actor, id, reason) {
      const at = new Date(ctx.now());
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(apiTokens).where(eq(apiTokens.id, id)).for("update");
        if (!row) throw new NotFoundError("api token", id);
        if (row.revokedAt !== null) return toApiTokenView(row, at.getTime());
        const [revoked] = await tx.update(apiTokens).set({ revokedAt: at, revokedBy: actor }).where(eq(apiTokens.id, id)).returning();
        await recordAudit(tx, [{ actor, action: "api-token.revoke", target: id, detail: { role: row.role, label: row.label, reason } }], at);
        return toApiTokenView(revoked!, at.getTime());
      });
    },

    async listEnrollmentTokens() {
      const rows = await db.select().from(enrollmentTokens).orderBy(desc(enrollmentTokens.createdAt), asc(enrollmentTokens.id));
      const now = ctx.now();
      return rows.map((row) => toEnrollmentTokenView(row, now));
    },

    async revokeEnrollmentToken(actor, id, reason) {
      const at = new Date(ctx.now());
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(enrollmentTokens).where(eq(enrollmentTokens.id, id)).for("update");
        if (!row) throw new NotFoundError("enrollment token", id);
        if (row.revokedAt !== null) return toEnrollmentTokenView(row, at.getTime());
        const [revoked] = await tx.update(enrollmentTokens).set({ revokedAt: at, revokedBy: actor }).where(eq(enrollmentTokens.id, id)).returning();
        await recordAudit(tx, [{ actor, action: "enrollment-token.revoke", target: id, detail: { label: row.label, uses: row.uses, reason } }], at);
        return toEnrollmentTokenView(revoked!, at.getTime());
      });
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

    async listDevices(filter: DeviceFilter) {
      const conditions: SQL[] = [];
      if (filter.enrollment) conditions.push(eq(devices.enrollment, filter.enrollment));
      if (filter.appraisal) conditions.push(eq(devices.appraisal, filter.appraisal));
      if (filter.containment) conditions.push(eq(devices.containment, filter.containment));
      if (filter.model) conditions.push(eq(devices.model, filter.model));
      if (filter.search) {
        const pattern = `%${filter.search.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
        conditions.push(
          or(ilike(devices.id, pattern), ilike(devices.model, pattern), ilike(devices.firmwareVersion, pattern), sql`${devices.telemetry}->>'activePool' ilike ${pattern}`) as SQL,
        );
      }
      const rows = await db
        .select()
        .from(devices)
        .where(and(...conditions))
        .orderBy(asc(devices.createdAt), asc(devices.id))
        .limit(clampLimit(filter.limit))
        .offset(Math.max(0, Math.floor(filter.offset) || 0));
      return rows.map(toDeviceView);
    },

    async getDevice(deviceId) {
      return toDeviceView(await getDeviceRow(deviceId));
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

    async history(deviceId, limit): Promise<TransitionView[]> {
      await getDeviceRow(deviceId);
      const rows = await db.select().from(transitions).where(eq(transitions.deviceId, deviceId)).orderBy(desc(transitions.id)).limit(clampLimit(limit));
      return rows.map((row) => ({
        id: String(row.id),
        deviceId: row.deviceId,
        machine: row.machine as TransitionView["machine"],
        from: row.fromState,
        to: row.toState,
        reason: row.reason,
        actor: row.actor as Actor,
        evidence: row.evidence,
        at: row.at.toISOString(),
      }));
    },

    async listCommands(deviceId, limit) {
      await getDeviceRow(deviceId);
      const rows = await db.select().from(commands).where(eq(commands.deviceId, deviceId)).orderBy(desc(commands.seq)).limit(clampLimit(limit));
      return rows.map(toCommandView);
    },

    async listEvents(deviceId, limit): Promise<EventView[]> {
      await getDeviceRow(deviceId);
      const rows = await db
        .select()
        .from(deviceEvents)
        .where(eq(deviceEvents.deviceId, deviceId))
        .orderBy(desc(deviceEvents.receivedAt), desc(deviceEvents.ts))
        .limit(clampLimit(limit));
      return rows.map((row) => ({
        id: row.id,
        deviceId: row.deviceId,
        kind: row.kind,
        severity: row.severity as EventView["severity"],
        detail: row.detail as Record<string, unknown>,
        ts: row.ts.toISOString(),
        receivedAt: row.receivedAt.toISOString(),
      }));
    },

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

    quarantine: (actor, deviceIds, reason) => containment(actor, deviceIds, reason, "quarantine"),
    release: (actor, deviceIds, reason) => containment(actor, deviceIds, reason, "release"),

    async registerReferenceValues(actor, input) {
      if (typeof input.model !== "string" || input.model.length === 0) throw new ValidationError("model is required", "model");
      if (typeof input.firmwareVersion !== "string" || input.firmwareVersion.length === 0) {
        throw new ValidationError("firmwareVersion is required", "firmwareVersion");
      }
      const measurements = validateMeasurements(input.measurements);
      const at = new Date(ctx.now());
      const row = await db.transaction(async (tx) => {
        const [inserted] = await tx
          .insert(referenceValueSets)
          .values({
            id: newId("rv"),
            model: input.model,
            firmwareVersion: input.firmwareVersion,
            status: "proposed",
            source: input.source === "release" ? "release" : "registered",
            measurements,
            createdAt: at,
          })
          .returning();
        const set = inserted as ReferenceRow;
        await recordAudit(tx, [{ actor, action: "reference-values.register", target: set.id, detail: { model: set.model, firmwareVersion: set.firmwareVersion, count: measurements.length } }], at);
        // An operator registering values states them as known-good: they take effect at once.
        return approve(tx, set, actor, at);
      });
      return toReferenceView(row);
    },

    async captureReferenceValues(actor, deviceId) {
      const at = new Date(ctx.now());
      const row = await db.transaction(async (tx) => {
        const device = await lockDevice(tx, deviceId);
        if (!device) throw new NotFoundError("device", deviceId);
        const [latest] = await tx.select().from(evidence).where(eq(evidence.deviceId, deviceId)).orderBy(desc(evidence.id)).limit(1);
        if (!latest) throw new ConflictError(`device ${deviceId} has sent no accepted evidence to capture`);
        const payload = latest.payload as { model: string; firmwareVersion: string; measurements: Array<{ path: string; kind: string; sha256: string; size: number }> };
        const measurements = payload.measurements
          .filter((m) => m.kind !== "missing")
          .map((m) => ({ path: m.path, sha256: m.sha256, size: m.size }));
        const [inserted] = await tx
          .insert(referenceValueSets)
          .values({
            id: newId("rv"),
            model: payload.model,
            firmwareVersion: payload.firmwareVersion,
            status: "proposed",
            source: "captured",
            capturedFrom: deviceId,
            measurements,
            createdAt: at,
          })
          .returning();
        const set = inserted as ReferenceRow;
        await recordAudit(tx, [{ actor, action: "reference-values.capture", target: set.id, detail: { deviceId, evidenceSeq: latest.seq, count: measurements.length } }], at);
        return set;
      });
      return toReferenceView(row);
    },

    async approveReferenceValues(actor, id) {
      const at = new Date(ctx.now());
      const row = await db.transaction(async (tx) => {
        const [set] = await tx.select().from(referenceValueSets).where(eq(referenceValueSets.id, id)).for("update");
        if (!set) throw new NotFoundError("reference value set", id);
        if (set.status === "approved") return set;
        if (set.status !== "proposed") throw new ConflictError(`reference value set ${id} is ${set.status}; only a proposed set can be approved`);
        return approve(tx, set, actor, at);
      });
      return toReferenceView(row);
    },

    async listReferenceValues(filter) {
      const conditions: SQL[] = [];
      if (filter.model) conditions.push(eq(referenceValueSets.model, filter.model));
      if (filter.firmwareVersion) conditions.push(eq(referenceValueSets.firmwareVersion, filter.firmwareVersion));
      const rows = await db
        .select()
        .from(referenceValueSets)
        .where(and(...conditions))
        .orderBy(desc(referenceValueSets.createdAt), desc(referenceValueSets.id));
      return rows.map(toReferenceView);
    },

    async listAudit(limit, offset): Promise<AuditEntry[]> {
      const rows = await db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(clampLimit(limit)).offset(Math.max(0, Math.floor(offset) || 0));
      return rows.map((row) => ({ id: String(row.id), at: row.at.toISOString(), actor: row.actor as Actor, action: row.action, target: row.target, detail: row.detail }));
    },
  };
}
