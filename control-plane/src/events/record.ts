/**
 * Writes operator events inside the caller's transaction: the `plane_events` row (the stream's durable id) and,
 * for every enabled webhook endpoint subscribed to the kind, a pending `webhook_deliveries` row (the outbox).
 * Rules HW-DB-1 (same transaction as the state change) and HW-HOOK-2 (outbox: a committed change has its
 * deliveries committed with it, so a plane restart loses none).
 */
import { randomBytes } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import { afterCommit, planeEvents, webhookDeliveries, webhookEndpoints, type Database } from "../db/index.js";
import type { PlaneEventData, PlaneEventRecord } from "./kinds.js";

export type { PlaneEventRecord } from "./kinds.js";

/** A Standard Webhooks message id (`msg_` + 18 random bytes, hex). */
export function newMessageId(): string {
  return `msg_${randomBytes(18).toString("hex")}`;
}

const CHUNK = 500;

const committedListeners = new WeakMap<Database, Set<() => void>>();

/**
 * Calls `listener` after each commit (in this process) of a transaction that recorded plane events on `db` (the
 * database `openDatabase` returned). Events written by other processes are not signalled: readers keep a slow
 * poll for them (HW-SSE-2). Returns the unsubscribe function.
 */
export function onPlaneEventsCommitted(db: Database, listener: () => void): () => void {
  if (typeof db !== "object" || db === null) return () => undefined; // no database (a plane started without one): nothing commits
  let listeners = committedListeners.get(db);
  if (!listeners) committedListeners.set(db, (listeners = new Set()));
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Inserts the events and their outbox rows in `tx`; returns the new event row ids in order. The events' stream
 * positions are taken when `tx` commits (HW-SSE-2), and this process's listeners are signalled then.
 */
export async function recordPlaneEvents(tx: Database, records: PlaneEventRecord[], at: Date): Promise<number[]> {
  if (records.length === 0) return [];
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
  afterCommit(tx, (root) => {
    for (const listener of committedListeners.get(root) ?? []) listener();
  });
  return ids;
}

/** The operator events a batch of trust-machine transitions means (see PLANE_EVENT_KINDS). */
export function planeEventsForTransitions(
  records: readonly { deviceId: string; machine: string; from: string; to: string; reason: string }[],
): PlaneEventRecord[] {
  const out: PlaneEventRecord[] = [];
  for (const r of records) {
    const { machine } = r;
    if (machine !== "appraisal" && machine !== "containment") continue;
    const data: PlaneEventData<"appraisal.changed"> = { machine, from: r.from, to: r.to, reason: r.reason };
    if (r.machine === "appraisal") out.push({ kind: r.to === "stale" ? "device.stale" : "appraisal.changed", deviceId: r.deviceId, data });
    else if (r.machine === "containment" && r.to === "quarantined") out.push({ kind: "device.quarantined", deviceId: r.deviceId, data });
    else if (r.machine === "containment" && r.from === "release_requested" && r.to === "none") out.push({ kind: "device.released", deviceId: r.deviceId, data });
  }
  return out;
}
