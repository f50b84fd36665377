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

/** `data` of the kinds a trust-machine transition raises (control-plane/src/trust): the stored transition. */
const transitionData = z.strictObject({
  machine: z.enum(["enrollment", "appraisal", "containment"]),
  /** The state before and after (STATE_MACHINES.md). */
  from: z.string(),
  to: z.string(),
  /** Why: the appraisal summary, the command, the operator's reason. */
  reason: z.string(),
});

/**
 * The typed `data` of each kind: what the writers must put there (checked by the compiler through
 * PlaneEventRecord) and what the stream's and webhooks' payload documentation shows (the OpenAPI `PlaneEvent`).
 */
export const PLANE_EVENT_DATA = {
  "appraisal.changed": transitionData,
  "device.quarantined": transitionData,
  "device.released": transitionData,
  /** The device's signed event: its outbox id, severity, device clock (ms) and the guard's detail. */
  "guard.alert": z.strictObject({ eventId: z.string(), severity: z.enum(["info", "warning", "critical"]), ts: z.number().int(), detail: z.record(z.string(), z.unknown()) }),
  /** `group`: the index of the group whose failures reached the error threshold. */
  "rollout.halted": z.strictObject({ rolloutId: z.string(), targetName: z.string(), group: z.number().int().nonnegative(), reason: z.string() }),
  /** The two peers (address:port), and how many takeovers the device had within `windowMs` (HW-AUTH-2). */
  "session.takeover": z.strictObject({ previousPeer: z.string(), newPeer: z.string(), takeoversInWindow: z.number().int().positive(), windowMs: z.number().int().positive() }),
  "device.stale": transitionData,
  /**
   * control-plane/src/alerts `FarmFinding` as a finding (HW-ALERT-2): which alert, its tier, a summary, what a clean
   * miner shows (`expected`) and what was seen (`evidence`), the finding's guard and claim, and the thresholds it
   * was judged by (the device's `farm-alerts` policy, HW-ALERT-3).
   */
  "farm.alert": z.object({
    alert: z.string(),
    tier: z.enum(["warning", "contraindicated"]),
    summary: z.string(),
    expected: z.record(z.string(), z.unknown()),
    evidence: z.record(z.string(), z.unknown()),
    guard: z.literal("farm-alert"),
    claim: z.literal("runtime-opaque"),
    thresholds: z.record(z.string(), z.number()).optional(),
  }),
} as const satisfies Record<PlaneEventKind, z.ZodType>;

export type PlaneEventData<K extends PlaneEventKind = PlaneEventKind> = z.infer<(typeof PLANE_EVENT_DATA)[K]>;

/** One event to write (recordPlaneEvents): its kind decides the shape of `data`. */
export type PlaneEventRecord = { [K in PlaneEventKind]: { kind: K; deviceId: string | null; data: PlaneEventData<K> } }[PlaneEventKind];

/** One event as sent on the stream (`data:` line, JSON) and as a webhook body (Standard Webhooks `type`/`timestamp`/`data`). */
export type PlaneEvent = {
  [K in PlaneEventKind]: {
    /**
     * The stream position (the SSE `id`): global, taken when the event's transaction commits, so it increases in
     * commit order across every plane sharing the database (HW-SSE-2). Webhook bodies carry the row id as `eventId`.
     */
    id: number;
    kind: K;
    deviceId: string | null;
    /** ISO 8601. */
    at: string;
    data: PlaneEventData<K>;
  };
}[PlaneEventKind];
