/**
 * Writes operator events inside the caller's transaction: the `plane_events` row (the stream's durable id) and,
 * for every enabled webhook endpoint subscribed to the kind, a pending `webhook_deliveries` row (the outbox).
 * Rules HW-DB-1 (same transaction as the state change) and HW-HOOK-2 (outbox: a committed change has its
 * deliveries committed with it, so a plane restart loses none).
 */
import { randomBytes } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import { planeEvents, webhookDeliveries, webhookEndpoints, type Database } from "../db/index.js";
import type { PlaneEventKind } from "./kinds.js";

export interface PlaneEventRecord {
  kind: PlaneEventKind;
  deviceId: string | null;
  data: Record<string, unknown>;
}

/** A Standard Webhooks message id (`msg_` + 18 random bytes, hex). */
export function newMessageId(): string {
  return `msg_${randomBytes(18).toString("hex")}`;
}

const CHUNK = 500;

/** Transaction-scoped advisory lock key that orders writers of `plane_events` (any constant; "HWEV"). */
export const PLANE_EVENTS_LOCK_KEY = 0x4857_4556;

/**
 * Inserts the events and their outbox rows in `tx`; returns the new event ids in order.
 *
 * HW-SSE-1 / HW-FAULT-1: the stream reads committed rows above the last id it sent, so ids must become visible
 * in id order. On PostgreSQL two transactions could take ids 10 and 11 and commit 11 first: the stream sent 11,
 * moved past 10, and event 10 was never streamed (seen in test/faults/postgres-restart with ten pooled
 * connections). Writers therefore take one transaction-scoped advisory lock before their ids are drawn and keep
 * it to commit, so ids are drawn and committed one writer at a time. Callers write events last in their
 * transaction (after their row locks) to keep that window short. PGlite has one connection: no change there.
 */
export async function recordPlaneEvents(tx: Database, records: PlaneEventRecord[], at: Date): Promise<number[]> {
  if (records.length === 0) return [];
  await tx.execute(sql`select pg_advisory_xact_lock(${PLANE_EVENTS_LOCK_KEY})`);
  const ids: number[] = [];
  const kinds = [...new Set(records.map((r) => r.kind))];
  const endpointsByKind = new Map<string, string[]>();
  for (const kind of kinds) {
    const rows = await tx
      .select({ id: webhookEndpoints.id })
      .from(webhookEndpoints)
      .where(and(eq(webhookEndpoints.enabled, true), sql`${webhookEndpoints.kinds} @> ${JSON.stringify([kind])}::jsonb`));
    endpointsByKind.set(kind, rows.map((r) => r.id));
  }
  for (let i = 0; i < records.length; i += CHUNK) {
    const part = records.slice(i, i + CHUNK);
    const inserted = await tx
      .insert(planeEvents)
      .values(part.map((r) => ({ kind: r.kind, deviceId: r.deviceId, at, data: r.data })))
      .returning({ id: planeEvents.id, kind: planeEvents.kind });
    const deliveries = inserted.flatMap((event) =>
      (endpointsByKind.get(event.kind) ?? []).map((endpointId) => ({
        id: newMessageId(),
        endpointId,
        eventId: event.id,
        kind: event.kind,
        status: "pending",
        nextAttemptAt: at,
        createdAt: at,
      })),
    );
    for (let j = 0; j < deliveries.length; j += CHUNK) await tx.insert(webhookDeliveries).values(deliveries.slice(j, j + CHUNK));
    ids.push(...inserted.map((r) => r.id));
  }
  return ids;
}

/** The operator events a batch of trust-machine transitions means (see PLANE_EVENT_KINDS). */
export function planeEventsForTransitions(
  records: readonly { deviceId: string; machine: string; from: string; to: string; reason: string }[],
): PlaneEventRecord[] {
  const out: PlaneEventRecord[] = [];
  for (const r of records) {
    const data = { machine: r.machine, from: r.from, to: r.to, reason: r.reason };
    if (r.machine === "appraisal") out.push({ kind: r.to === "stale" ? "device.stale" : "appraisal.changed", deviceId: r.deviceId, data });
    else if (r.machine === "containment" && r.to === "quarantined") out.push({ kind: "device.quarantined", deviceId: r.deviceId, data });
    else if (r.machine === "containment" && r.from === "release_requested" && r.to === "none") out.push({ kind: "device.released", deviceId: r.deviceId, data });
  }
  return out;
}
