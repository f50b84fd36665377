/**
 * Tables of the operator event feed (control-plane/src/events) and of webhooks (control-plane/src/webhooks).
 *
 * `plane_events` rows are written in the transaction of the state change they describe (HW-DB-1), and so are the
 * `webhook_deliveries` rows (the outbox, HW-HOOK-2). Each row gets its stream `position` when its transaction
 * commits (HW-SSE-2: a deferred constraint trigger takes `plane_event_position_seq` under an advisory lock held
 * to the commit, migration 0008), so positions grow in commit order: the live stream uses the position as the
 * SSE `id` and resumes from it (`Last-Event-ID`), and a reader walking positions never skips a row that
 * commits late, as an id cursor can on PostgreSQL (ids are taken at insert, not at commit).
 */
import { bigint, boolean, index, integer, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";

export const planeEvents = pgTable(
  "plane_events",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    /** One of PLANE_EVENT_KINDS (control-plane/src/events/kinds.ts). */
    kind: text("kind").notNull(),
    deviceId: text("device_id"),
    at: ts("at").notNull(),
    /** The event body as sent on the stream and in webhook deliveries. */
    data: jsonb("data").notNull(),
    /** HW-SSE-2: commit-ordered stream position (the SSE id); null only inside the writing transaction. */
    position: bigint("position", { mode: "number" }),
  },
  (t) => [
    index("plane_events_device_idx").on(t.deviceId, t.id),
    index("plane_events_kind_idx").on(t.kind, t.id),
    uniqueIndex("plane_events_position_idx").on(t.position),
  ],
);

export const webhookEndpoints = pgTable("webhook_endpoints", {
  id: text("id").primaryKey(),
  url: text("url").notNull(),
  /** The event kinds this endpoint receives (non-empty list of PLANE_EVENT_KINDS). */
  kinds: jsonb("kinds").notNull(),
  /** `whsec_<base64>`; shown once at registration, kept to sign deliveries. */
  secret: text("secret").notNull(),
  enabled: boolean("enabled").notNull().default(true),
  consecutiveFailures: integer("consecutive_failures").notNull().default(0),
  disabledReason: text("disabled_reason"),
  description: text("description").notNull().default(""),
  createdBy: jsonb("created_by").notNull(),
  createdAt: ts("created_at").notNull(),
});

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    /** The Standard Webhooks `webhook-id` (`msg_...`): the same on every retry, so receivers dedupe by it. */
    id: text("id").primaryKey(),
    endpointId: text("endpoint_id")
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    eventId: bigint("event_id", { mode: "number" }).notNull(),
    kind: text("kind").notNull(),
    /** "pending" | "delivered" | "failed" (gave up, or the endpoint was disabled). */
    status: text("status").notNull(),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: ts("next_attempt_at").notNull(),
    /** A claim: another plane leaves the row alone until then (HW-HOOK-2). */
    claimedUntil: ts("claimed_until"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    createdAt: ts("created_at").notNull(),
    deliveredAt: ts("delivered_at"),
  },
  (t) => [index("webhook_deliveries_due_idx").on(t.status, t.nextAttemptAt), index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.createdAt)],
);
