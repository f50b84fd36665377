/**
 * Tables of the guard policy (control-plane/src/policy): pool policies, network allowlists and malware
 * indicator sets, each scoped to the whole fleet, a model, or an explicit group of devices; and per device the
 * policy version delivered (as a signed `set-policy` command) and the version the device acknowledged.
 */
import { bigint, index, integer, jsonb, pgSequence, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";
import { devices } from "./core.js";

/**
 * Policy versions: every change and every delivery takes the next value, so the version a device sees only ever
 * grows (the agent refuses a version <= the one it stores, HW-POLICY-2), whichever policy row it comes from.
 */
export const policyVersionSeq = pgSequence("policy_version_seq", { startWith: 1 });

export const policies = pgTable(
  "policies",
  {
    id: text("id").primaryKey(),
    /** "pools" | "network" | "indicators". */
    kind: text("kind").notNull(),
    /** "default", "model:<model>" or "devices:<sha256 of the sorted ids>": one policy per kind and scope. */
    scopeKey: text("scope_key").notNull(),
    /** { model } or { deviceIds } or {} (default), as given. */
    scope: jsonb("scope").notNull(),
    /** The kind's body: { allowedUrls, workerPatterns } | { allowedHosts } | { indicators }. */
    body: jsonb("body").notNull(),
    version: bigint("version", { mode: "number" }).notNull(),
    createdAt: ts("created_at").notNull(),
    updatedAt: ts("updated_at").notNull(),
    updatedBy: jsonb("updated_by").notNull(),
  },
  (t) => [uniqueIndex("policies_kind_scope_idx").on(t.kind, t.scopeKey)],
);

export const devicePolicies = pgTable(
  "device_policies",
  {
    deviceId: text("device_id")
      .primaryKey()
      .references(() => devices.id, { onDelete: "cascade" }),
    /** Version and content hash of the last set-policy command issued to the device. */
    deliveredVersion: bigint("delivered_version", { mode: "number" }).notNull(),
    deliveredHash: text("delivered_hash").notNull(),
    deliveredSeq: integer("delivered_seq").notNull(),
    deliveredAt: ts("delivered_at").notNull(),
    /** Highest version the device acknowledged as applied (from its signed ack); null before the first. */
    ackedVersion: bigint("acked_version", { mode: "number" }),
    ackedAt: ts("acked_at"),
    /** The device's reason when it acked a set-policy as failed; cleared by the next success. */
    lastFailure: text("last_failure"),
  },
  (t) => [index("device_policies_acked_idx").on(t.ackedVersion)],
);
