/**
 * Tables of the TUF repository (control-plane/src/tuf) and of rollouts (control-plane/src/rollouts).
 * Metadata is kept as the exact bytes served: snapshot and timestamp pin lengths and hashes of those bytes, and
 * jsonb would reorder keys.
 */
import { index, integer, jsonb, pgTable, primaryKey, text } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";

/** Every published version of every top-level role (root history included). */
export const tufMetadata = pgTable(
  "tuf_metadata",
  {
    role: text("role").notNull(),
    version: integer("version").notNull(),
    /** The signed JSON document, byte for byte as served. */
    body: text("body").notNull(),
    expiresAt: ts("expires_at").notNull(),
    createdAt: ts("created_at").notNull(),
  },
  (t) => [primaryKey({ name: "tuf_metadata_role_version_pk", columns: [t.role, t.version] })],
);

/** Images uploaded under <dataDir>/tuf/targets/<sha256> (content-addressed). */
export const tufImages = pgTable("tuf_images", {
  sha256: text("sha256").primaryKey(),
  length: integer("length").notNull(),
  uploadedAt: ts("uploaded_at").notNull(),
});

export const rollouts = pgTable(
  "rollouts",
  {
    id: text("id").primaryKey(),
    targetName: text("target_name").notNull(),
    version: text("version").notNull(),
    selector: jsonb("selector").notNull(),
    /** The group plan as asked: [{ size } | { percent }]. */
    groups: jsonb("groups").notNull(),
    successThreshold: integer("success_threshold").notNull(),
    errorThreshold: integer("error_threshold").notNull(),
    state: text("state").notNull(),
    currentGroup: integer("current_group").notNull().default(0),
    reason: text("reason"),
    createdBy: jsonb("created_by").notNull(),
    createdAt: ts("created_at").notNull(),
    updatedAt: ts("updated_at").notNull(),
  },
  (t) => [index("rollouts_state_idx").on(t.state)],
);

export const rolloutDevices = pgTable(
  "rollout_devices",
  {
    rolloutId: text("rollout_id")
      .notNull()
      .references(() => rollouts.id, { onDelete: "cascade" }),
    deviceId: text("device_id").notNull(),
    groupIndex: integer("group_index").notNull(),
    /** waiting | issued | downloading | verifying | installing | health-check | succeeded | failed | cancelled */
    status: text("status").notNull(),
    commandSeq: integer("command_seq"),
    phase: text("phase"),
    reason: text("reason"),
    updatedAt: ts("updated_at").notNull(),
  },
  (t) => [
    primaryKey({ name: "rollout_devices_pk", columns: [t.rolloutId, t.deviceId] }),
    index("rollout_devices_group_idx").on(t.rolloutId, t.groupIndex),
  ],
);
