/**
 * Read-only operator queries: devices (filtered, paged), one device, its transitions, commands and events, and
 * the audit log. Lists are capped at MAX_LIST rows per call.
 */
import { and, asc, desc, eq, ilike, or, type SQL, sql } from "drizzle-orm";
import { auditLog, commands, deviceEvents, devices, transitions } from "../db/index.js";
import { NotFoundError } from "../errors.js";
import { toCommandView } from "./commands/index.js";
import { iso, type ServiceContext } from "./context.js";
import type { DeviceRow } from "./tx.js";
import type { Actor, AttestationResult, AuditEntry, ControlPlaneService, DeviceFilter, DeviceTelemetry, DeviceView, EventView, TransitionView } from "./types.js";

const MAX_LIST = 10_000;

/** `limit` as a whole number in 1..MAX_LIST (10,000). */
export function clampLimit(limit: number): number {
  return Math.max(1, Math.min(MAX_LIST, Math.floor(limit) || 1));
}

/** The API view of a `devices` row. */
export function toDeviceView(row: DeviceRow): DeviceView {
  return {
    deviceId: row.id,
    publicKey: row.publicKey,
    model: row.model,
    firmwareVersion: row.firmwareVersion,
    agentVersion: row.agentVersion,
    enrollment: row.enrollment as DeviceView["enrollment"],
    appraisal: row.appraisal as DeviceView["appraisal"],
    containment: row.containment as DeviceView["containment"],
    connected: row.connected,
    lastSeenAt: iso(row.lastSeenAt),
    lastAppraisal: (row.lastAppraisal as AttestationResult | null) ?? null,
    telemetry: (row.telemetry as DeviceTelemetry | null) ?? null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

/** The read-only queries of ControlPlaneService. getDevice, history, listCommands, listEvents: NotFoundError for an unknown device. */
export function createQueries(
  ctx: ServiceContext,
): Pick<ControlPlaneService, "listDevices" | "getDevice" | "history" | "listCommands" | "listEvents" | "listAudit"> {
  const { db } = ctx;

  async function getDeviceRow(deviceId: string): Promise<DeviceRow> {
    const [row] = await db.select().from(devices).where(eq(devices.id, deviceId));
    if (!row) throw new NotFoundError("device", deviceId);
    return row;
  }

  return {
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

    async listAudit(limit, offset): Promise<AuditEntry[]> {
      const rows = await db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(clampLimit(limit)).offset(Math.max(0, Math.floor(offset) || 0));
      return rows.map((row) => ({ id: String(row.id), at: row.at.toISOString(), actor: row.actor as Actor, action: row.action, target: row.target, detail: row.detail }));
    },
  };
}
