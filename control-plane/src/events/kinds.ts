/**
 * The operator event kinds: what the live stream (`GET /api/v1/events/stream`) and webhooks carry. One list,
 * used by the HTTP validators, the webhook registration and the writers (`recordPlaneEvents`).
 */
import { z } from "zod";

export const PLANE_EVENT_KINDS = [
  /** A device's appraisal changed (any `appraisal` transition other than into `stale`). */
  "appraisal.changed",
  /** A device reached containment `quarantined` (on its signed ack, HW-TRUST-3). */
  "device.quarantined",
  /** A device left `quarantined` for `none` (on its signed ack). */
  "device.released",
  /** A device sent a signed `guard-alert` event (HW-GUARD-2). */
  "guard.alert",
  /** A rollout stopped by itself at its error threshold (HW-RO-1). */
  "rollout.halted",
  /** A second MQTT connection took over a device's session (written by the broker once it detects it). */
  "session.takeover",
  /** The staleness timer moved a device to appraisal `stale` (HW-TRUST-2). */
  "device.stale",
  /** A farm alert from telemetry (HW-ALERT-1). */
  "farm.alert",
] as const;

export type PlaneEventKind = (typeof PLANE_EVENT_KINDS)[number];

export const planeEventKindSchema = z.enum(PLANE_EVENT_KINDS);

/** One event as sent on the stream (`data:` line, JSON) and as a webhook body (Standard Webhooks `type`/`timestamp`/`data`). */
export interface PlaneEvent {
  /**
   * The stream position (the SSE `id`): global, taken when the event's transaction commits, so it increases in
   * commit order across every plane sharing the database (HW-SSE-2). Webhook bodies carry the row id as `eventId`.
   */
  id: number;
  kind: PlaneEventKind;
  deviceId: string | null;
  /** ISO 8601. */
  at: string;
  data: Record<string, unknown>;
}
