/**
 * The control plane's one PostgreSQL-dialect schema (PGlite by default, PostgreSQL with DATABASE_URL).
 * Migrations are generated from this folder (./index.ts) with drizzle-kit into control-plane/drizzle/ and committed.
 * Timestamps are `timestamptz`; JSON columns hold the signed messages and results verbatim.
 */
import { bigint, boolean, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";

export const devices = pgTable(
  "devices",
  {
    id: text("id").primaryKey(),
    publicKey: text("public_key").notNull(),
    model: text("model").notNull(),
    firmwareVersion: text("firmware_version").notNull().default(""),
    agentVersion: text("agent_version").notNull().default(""),
    bootId: text("boot_id"),
    enrollment: text("enrollment").notNull(),
    appraisal: text("appraisal").notNull().default("unknown"),
    containment: text("containment").notNull().default("none"),
    connected: boolean("connected").notNull().default(false),
    lastSeenAt: ts("last_seen_at"),
    /** Highest accepted evidence seq; -1 before the first. Evidence with seq <= this is a replay. */
    lastEvidenceSeq: bigint("last_evidence_seq", { mode: "number" }).notNull().default(-1),
    /**
     * HW-EVD-2: the evidence sequence the device is on; raised when a fresh challenge answer re-bases the
     * sequence after the agent lost its state (stored evidence is unique per device, epoch and seq).
     */
    evidenceEpoch: integer("evidence_epoch").notNull().default(0),
    /** HW-EVD-2: the device's own ts of the challenge answer that began the epoch; older evidence is a replay. */
    evidenceEpochStartedTs: ts("evidence_epoch_started_ts"),
    /** HW-EVD-2: set (plane time) while a sequence reset holds the verdict at unknown until a challenge answer. */
    sequenceResetAt: ts("sequence_reset_at"),
    lastAppraisal: jsonb("last_appraisal"),
    telemetry: jsonb("telemetry"),
    /**
     * HW-ALERT-2: the farm-alert findings (control-plane/src/alerts) active now, as `Finding`s of guard
     * `farm-alert`; folded into `last_appraisal` and into every later appraisal until telemetry clears them.
     */
    farmFindings: jsonb("farm_findings").notNull().default([]),
    /** The seq the next command to this device gets (strictly increasing per device, HW-CMD-1). */
    nextCommandSeq: integer("next_command_seq").notNull().default(1),
    createdAt: ts("created_at").notNull().defaultNow(),
    updatedAt: ts("updated_at").notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("devices_public_key_idx").on(t.publicKey),
    index("devices_enrollment_idx").on(t.enrollment),
    index("devices_appraisal_idx").on(t.appraisal),
    index("devices_containment_idx").on(t.containment),
    index("devices_model_idx").on(t.model, t.firmwareVersion),
    index("devices_last_seen_idx").on(t.lastSeenAt),
    // The device listing's order (API and dashboard pages through 10,000 devices without sorting them all).
    index("devices_created_idx").on(t.createdAt, t.id),
  ],
);

export const apiTokens = pgTable(
  "api_tokens",
  {
    id: text("id").primaryKey(),
    /** sha256 hex of the token; the token itself is shown once and never stored. */
    tokenHash: text("token_hash").notNull(),
    role: text("role").notNull(),
    label: text("label").notNull(),
    createdBy: jsonb("created_by").notNull(),
    createdAt: ts("created_at").notNull().defaultNow(),
    /** HW-TOKEN-1: null = never expires; a token at or past it is refused like an unknown one. */
    expiresAt: ts("expires_at"),
    /** HW-TOKEN-1: set once by a revoke; a revoked token is refused on its next request. */
    revokedAt: ts("revoked_at"),
    revokedBy: jsonb("revoked_by"),
    /** Last authenticated request (written at most once a minute per token). */
    lastUsedAt: ts("last_used_at"),
  },
  (t) => [uniqueIndex("api_tokens_hash_idx").on(t.tokenHash), index("api_tokens_role_idx").on(t.role)],
);

export const enrollmentTokens = pgTable(
  "enrollment_tokens",
  {
    id: text("id").primaryKey(),
    tokenHash: text("token_hash").notNull(),
    label: text("label"),
    expiresAt: ts("expires_at").notNull(),
    maxUses: integer("max_uses").notNull(),
    uses: integer("uses").notNull().default(0),
    createdBy: jsonb("created_by").notNull(),
    createdAt: ts("created_at").notNull().defaultNow(),
    /** HW-TOKEN-1: a revoked enrollment token enrolls nothing more. */
    revokedAt: ts("revoked_at"),
    revokedBy: jsonb("revoked_by"),
    /** Last enrollment that used it. */
    lastUsedAt: ts("last_used_at"),
  },
  (t) => [uniqueIndex("enrollment_tokens_hash_idx").on(t.tokenHash)],
);

export const referenceValueSets = pgTable(
  "reference_value_sets",
  {
    id: text("id").primaryKey(),
    model: text("model").notNull(),
    firmwareVersion: text("firmware_version").notNull(),
    status: text("status").notNull(),
    source: text("source").notNull(),
    capturedFrom: text("captured_from"),
    measurements: jsonb("measurements").notNull(),
    createdAt: ts("created_at").notNull().defaultNow(),
    approvedAt: ts("approved_at"),
    approvedBy: text("approved_by"),
  },
  (t) => [index("reference_value_sets_lookup_idx").on(t.model, t.firmwareVersion, t.status)],
);

export const challenges = pgTable(
  "challenges",
  {
    nonce: text("nonce").primaryKey(),
    deviceId: text("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    issuedAt: ts("issued_at").notNull(),
    expiresAt: ts("expires_at").notNull(),
    usedAt: ts("used_at"),
  },
  (t) => [index("challenges_device_idx").on(t.deviceId), index("challenges_expires_idx").on(t.expiresAt)],
);

/**
 * Nonces of MQTT connect tokens already used (HW-AUTH-1). Kept in the database, not only in broker memory, so a
 * captured token cannot be replayed after a plane restart or on another replica; rows go once the token expired.
 */
export const connectTokenNonces = pgTable(
  "connect_token_nonces",
  {
    nonce: text("nonce").primaryKey(),
    deviceId: text("device_id").notNull(),
    expiresAt: ts("expires_at").notNull(),
  },
  (t) => [index("connect_token_nonces_expires_idx").on(t.expiresAt)],
);

export const commands = pgTable(
  "commands",
  {
    deviceId: text("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    seq: integer("seq").notNull(),
    action: text("action").notNull(),
    params: jsonb("params").notNull(),
    /** The exact signed command as published; re-published byte-for-byte on retry. */
    payload: jsonb("payload").notNull(),
    status: text("status").notNull(),
    issuedAt: ts("issued_at").notNull(),
    expiresAt: ts("expires_at").notNull(),
    ackedAt: ts("acked_at"),
    reason: text("reason"),
    ack: jsonb("ack"),
    issuedBy: jsonb("issued_by").notNull(),
    /**
     * When the command was last handed to the broker by the issuing path or a retry claim (HW-HA-4): a retry
     * claims a command with one UPDATE ... RETURNING on this column, so two replicas never both re-publish it.
     */
    publishedAt: ts("published_at"),
  },
  (t) => [
    primaryKey({ name: "commands_device_seq_pk", columns: [t.deviceId, t.seq] }),
    index("commands_status_expires_idx").on(t.status, t.expiresAt),
  ],
);

export const transitions = pgTable(
  "transitions",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    deviceId: text("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    machine: text("machine").notNull(),
    fromState: text("from_state").notNull(),
    toState: text("to_state").notNull(),
    reason: text("reason").notNull(),
    actor: jsonb("actor").notNull(),
    evidence: jsonb("evidence"),
    at: ts("at").notNull(),
  },
  (t) => [index("transitions_device_idx").on(t.deviceId, t.id)],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    at: ts("at").notNull(),
    actor: jsonb("actor").notNull(),
    action: text("action").notNull(),
    target: text("target"),
    detail: jsonb("detail"),
  },
  (t) => [index("audit_log_target_idx").on(t.target), index("audit_log_action_idx").on(t.action)],
);

export const deviceEvents = pgTable(
  "device_events",
  {
    deviceId: text("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    /** The agent's outbox id: a redelivered event is stored once. */
    id: text("id").notNull(),
    kind: text("kind").notNull(),
    severity: text("severity").notNull(),
    ts: ts("ts").notNull(),
    detail: jsonb("detail").notNull(),
    receivedAt: ts("received_at").notNull(),
  },
  (t) => [
    primaryKey({ name: "device_events_device_id_pk", columns: [t.deviceId, t.id] }),
    index("device_events_kind_idx").on(t.kind, t.receivedAt),
  ],
);

export const evidence = pgTable(
  "evidence",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    deviceId: text("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    seq: bigint("seq", { mode: "number" }).notNull(),
    /** The device's evidence epoch (devices.evidence_epoch) this seq belongs to (HW-EVD-2). */
    epoch: integer("epoch").notNull().default(0),
    nonce: text("nonce"),
    reason: text("reason").notNull(),
    ts: ts("ts").notNull(),
    receivedAt: ts("received_at").notNull(),
    /** The signed evidence verbatim (re-verifiable later). */
    payload: jsonb("payload").notNull(),
    result: jsonb("result").notNull(),
  },
  (t) => [uniqueIndex("evidence_device_epoch_seq_idx").on(t.deviceId, t.epoch, t.seq)],
);
