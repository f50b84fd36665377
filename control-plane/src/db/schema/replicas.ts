/**
 * Tables that let several plane replicas share one PostgreSQL (control-plane/src/replicas, docs/scale.md
 * "Replicas"): what is created once for all of them (`plane_secrets`) and who runs the fleet-wide timers
 * (`leases`). A single plane on PGlite writes neither.
 */
import { bigint, jsonb, pgTable, text } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";

/**
 * HW-HA-1/HW-HA-2: one row per thing made once for every replica (the command-signing key, the TUF online keys,
 * the TLS CA, where the bootstrap admin token was written). The first replica to insert a name wins
 * (`INSERT ... ON CONFLICT DO NOTHING`); every other one reads that row.
 */
export const planeSecrets = pgTable("plane_secrets", {
  name: text("name").primaryKey(),
  /** `none`: `value` is the text itself; `aes-256-gcm`: `value` is `iv.ciphertext.tag` (base64url), AAD = name. */
  encryption: text("encryption").notNull(),
  value: text("value").notNull(),
  /** The replica that wrote it: `{host, pid, dataDir}`. */
  createdBy: jsonb("created_by").notNull(),
  createdAt: ts("created_at").notNull().defaultNow(),
});

/**
 * HW-HA-3: a named lease held by one replica until `expires_at` (the database's clock), renewed while it lives.
 * `term` grows by one at every change of holder, so logs and metrics tell successive leaders apart.
 */
export const leases = pgTable("leases", {
  name: text("name").primaryKey(),
  holder: text("holder").notNull(),
  term: bigint("term", { mode: "number" }).notNull(),
  acquiredAt: ts("acquired_at").notNull(),
  expiresAt: ts("expires_at").notNull(),
});
