/**
 * Reference values: the known-good measurements per model and firmware version that evidence is appraised against.
 * Registered (approved at once), captured from a device's latest evidence (proposed), approved; one approved set
 * per model + firmware version.
 */
import { and, desc, eq, type SQL } from "drizzle-orm";
import { ValidationError } from "../../../shared/errors/index.js";
import { firstRepeatedPath, MAX_MEASUREMENTS, parseMeasurement } from "../../../shared/protocol/index.js";
import { evidence, referenceValueSets } from "../db/index.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { iso, newId, type ServiceContext } from "./context.js";
import { lockDevice, recordAudit, type Tx } from "./tx.js";
import type { Actor, ControlPlaneService, ReferenceMeasurement, ReferenceValueSet } from "./types.js";

type ReferenceRow = typeof referenceValueSets.$inferSelect;

/** The API view of a `reference_value_sets` row. */
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

/** The reference-value methods of ControlPlaneService (ValidationError, NotFoundError, ConflictError as documented there). */
export function createReferenceValues(
  ctx: ServiceContext,
): Pick<ControlPlaneService, "registerReferenceValues" | "captureReferenceValues" | "approveReferenceValues" | "listReferenceValues"> {
  const { db } = ctx;
  return {
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
  };
}
