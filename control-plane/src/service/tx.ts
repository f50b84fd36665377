/**
 * Transaction helpers every service module writes through. Rule HW-DB-1: a state change, its transition row and
 * its audit row are written by the same transaction `tx`; rows are locked in id order so concurrent bulk calls
 * cannot deadlock.
 */
import { asc, desc, eq, inArray } from "drizzle-orm";
import { apiTokens, auditLog, type Database, devices, enrollmentTokens, transitions } from "../db/index.js";
import { NotFoundError } from "../errors.js";
import { planeEventsForTransitions, recordPlaneEvents } from "../events/record.js";
import type { MachineName } from "../trust/index.js";
import type { Actor } from "./types.js";

/** Any transaction (or the database). PgTransaction extends PgDatabase, so both fit. */
export type Tx = Database;

/** A `devices` row as drizzle reads it. */
export type DeviceRow = typeof devices.$inferSelect;

/** One state-machine transition of a device, as recordTransitions writes it. */
export interface TransitionRecord {
  deviceId: string;
  machine: MachineName;
  from: string;
  to: string;
  reason: string;
  actor: Actor;
  evidence?: unknown;
}

const INSERT_CHUNK = 500;

/** `items` in consecutive slices of at most `size` (statements stay below the parameter limit). */
export function chunks<T>(items: T[], size = INSERT_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Writes transition rows and one audit row per transition (action `<machine>.<to>`), batched, and the operator
 * events they mean (stream + webhook outbox, control-plane/src/events). HW-DB-1, HW-HOOK-2
 */
export async function recordTransitions(tx: Tx, records: TransitionRecord[], at: Date): Promise<void> {
  if (records.length === 0) return;
  for (const part of chunks(records)) {
    await tx.insert(transitions).values(
      part.map((r) => ({
        deviceId: r.deviceId,
        machine: r.machine,
        fromState: r.from,
        toState: r.to,
        reason: r.reason,
        actor: r.actor,
        evidence: r.evidence ?? null,
        at,
      })),
    );
    await tx.insert(auditLog).values(
      part.map((r) => ({
        at,
        actor: r.actor,
        action: `${r.machine}.${r.to}`,
        target: r.deviceId,
        detail: { from: r.from, to: r.to, reason: r.reason },
      })),
    );
  }
  await recordPlaneEvents(tx, planeEventsForTransitions(records), at);
}

/** One audit row (who did what to which target), as recordAudit writes it. */
export interface AuditRecord {
  actor: Actor;
  action: string;
  target: string | null;
  detail?: unknown;
}

/** Writes audit rows, batched, at `at` (HW-DB-1: in the transaction of the change they describe). */
export async function recordAudit(tx: Tx, records: AuditRecord[], at: Date): Promise<void> {
  for (const part of chunks(records)) {
    await tx.insert(auditLog).values(part.map((r) => ({ at, actor: r.actor, action: r.action, target: r.target, detail: r.detail ?? null })));
  }
}

/** Locks the rows (ordered by id, so concurrent bulk calls cannot deadlock) for the rest of the transaction. */
export async function lockDevices(tx: Tx, ids: string[]): Promise<DeviceRow[]> {
  if (ids.length === 0) return [];
  const rows: DeviceRow[] = [];
  for (const part of chunks([...ids].sort(), 5000)) {
    rows.push(...(await tx.select().from(devices).where(inArray(devices.id, part)).orderBy(devices.id).for("update")));
  }
  return rows;
}

/** Locks and returns one device row for the rest of the transaction; undefined when there is none. */
export async function lockDevice(tx: Tx, id: string): Promise<DeviceRow | undefined> {
  const [row] = await tx.select().from(devices).where(eq(devices.id, id)).for("update");
  return row;
}

/** The token tables an operator revokes: API tokens and enrollment tokens (same id and revocation columns). */
export type RevocableTokenTable = typeof apiTokens | typeof enrollmentTokens;

/** Every token of `table`, newest first (ties by id), as `view(row, nowMs)` sees it at `nowMs`. */
export async function listTokens<T extends RevocableTokenTable, V>(db: Database, table: T, nowMs: () => number, view: (row: T["$inferSelect"], nowMs: number) => V): Promise<V[]> {
  const tokens = table as RevocableTokenTable;
  const rows = await db.select().from(tokens).orderBy(desc(tokens.createdAt), asc(tokens.id));
  const now = nowMs();
  return rows.map((row) => view(row as T["$inferSelect"], now));
}

/**
 * Revokes token `id` of `table` once, in one transaction with its audit row (HW-DB-1): the row is locked, a token
 * already revoked is returned as it is (no second audit entry), else `revokedAt`/`revokedBy` are set and the audit
 * entry `audit(row)` (action and detail, from the row before the change) is written. Returns the row now stored.
 * Throws NotFoundError(`what`, id) for an unknown id.
 */
export async function revokeTokenOnce<T extends RevocableTokenTable>(
  db: Database,
  table: T,
  what: string,
  id: string,
  actor: Actor,
  at: Date,
  audit: (row: T["$inferSelect"]) => { action: string; detail: Record<string, unknown> },
): Promise<T["$inferSelect"]> {
  const tokens = table as RevocableTokenTable;
  return db.transaction(async (tx) => {
    const [row] = await tx.select().from(tokens).where(eq(tokens.id, id)).for("update");
    if (!row) throw new NotFoundError(what, id);
    if (row.revokedAt !== null) return row as T["$inferSelect"];
    const [revoked] = await tx.update(tokens).set({ revokedAt: at, revokedBy: actor }).where(eq(tokens.id, id)).returning();
    await recordAudit(tx, [{ actor, target: id, ...audit(row as T["$inferSelect"]) }], at);
    return revoked as T["$inferSelect"];
  });
}
