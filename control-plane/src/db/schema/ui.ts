/**
 * Tables of the operator dashboard (control-plane/src/ui).
 *
 * `ui_sessions`: a signed-in browser (HW-UI-1). Only the sha256 of the session id is stored (the id itself lives in
 * the HttpOnly cookie), with the API token it was opened with: a session is valid only while that token is active
 * (not revoked, not expired), so revoking the token signs its browsers out on their next request.
 *
 * `telemetry_samples`: heartbeat telemetry over time for the device page's charts, at most one row per device per
 * sample interval (control-plane/src/service/heartbeats.ts), pruned after the retention.
 */
import { doublePrecision, index, jsonb, pgTable, primaryKey, text } from "drizzle-orm/pg-core";
import { ts } from "./columns.js";

export const uiSessions = pgTable(
  "ui_sessions",
  {
    /** sha256 hex of the session id (32 random bytes, base64url, in the cookie only). */
    idHash: text("id_hash").primaryKey(),
    /** The API token (`api_...` id) the session was opened with; its role is the session's role. */
    tokenId: text("token_id").notNull(),
    /** The CSRF token bound to this session (HW-UI-2): 32 random bytes, base64url. */
    csrfToken: text("csrf_token").notNull(),
    createdAt: ts("created_at").notNull(),
    expiresAt: ts("expires_at").notNull(),
    /** Set by sign-out. */
    revokedAt: ts("revoked_at"),
  },
  (t) => [index("ui_sessions_token_idx").on(t.tokenId), index("ui_sessions_expires_idx").on(t.expiresAt)],
);

export const telemetrySamples = pgTable(
  "telemetry_samples",
  {
    deviceId: text("device_id").notNull(),
    at: ts("at").notNull(),
    hashrateGhs: doublePrecision("hashrate_ghs"),
    /** Board temperatures, degrees Celsius. */
    temperaturesC: jsonb("temperatures_c"),
    /** Fan speeds, RPM. */
    fanRpm: jsonb("fan_rpm"),
    activePool: text("active_pool"),
  },
  (t) => [primaryKey({ columns: [t.deviceId, t.at] }), index("telemetry_samples_at_idx").on(t.at)],
);
