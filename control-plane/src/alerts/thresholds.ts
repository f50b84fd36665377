/**
 * Farm-alert thresholds (HW-ALERT-3): the body of a `farm-alerts` policy (control-plane/src/policy, per fleet,
 * model or device group like the other kinds) and the built-in defaults where none applies. Counts are heartbeats
 * (the agent's `heartbeatIntervalMs`, default 10 s, sets how long a count lasts); every field has a default, so a
 * policy names only what it changes. Pure zod: the policy validators and the analyzer share this one definition.
 */
import { z } from "zod";

export const farmAlertThresholdFields = {
  /** Heartbeats kept per device: the hashrate average and the pool-switch history look this far back. */
  windowSamples: z.number().int().min(10).max(1_000).default(120),
  /**
   * Zero-hashrate grace: heartbeats in a row at 0 GH/s (alive, not hashing) before it is an alert. Default 18: three
   * minutes at the default 10 s heartbeat, longer than an Antminer takes to hash again after a restart.
   */
  zeroHashrateSamples: z.number().int().min(1).max(1_000).default(18),
  /** Fan floor: a fan at or below this many rpm is stopped. */
  fanStoppedRpm: z.number().min(0).max(10_000).default(300),
  /** Heartbeats in a row with a stopped fan before it is an alert. */
  fanStoppedSamples: z.number().int().min(1).max(1_000).default(3),
  /** Temperature climb: the hottest sensor rising this many degrees C over those heartbeats means cooling is off. */
  temperatureRiseC: z.number().min(0).max(100).default(5),
  /** Hashrate drop: below (1 - this) of the device's own average over the window. */
  hashrateDropRatio: z.number().gt(0).lt(1).default(0.3),
  /** Heartbeats with a hashrate needed before the average counts. */
  minSamplesForAverage: z.number().int().min(2).max(1_000).default(10),
  /** Pool switching: at least this many switches of the active pool within the window ... */
  minPoolSwitches: z.number().int().min(4).max(1_000).default(6),
  /** ... whose periods (away and back) vary by at most this coefficient of variation (0 = a metronome). */
  maxIntervalVariation: z.number().min(0).max(1).default(0.15),
};

/** What needs the window: a count larger than the window could never be reached. */
const WITHIN_WINDOW = ["zeroHashrateSamples", "fanStoppedSamples", "minSamplesForAverage", "minPoolSwitches"] as const;

/**
 * The thresholds object (all fields, defaults filled in). A count that does not fit the window is refused naming
 * the field. Throws (parse) a ZodError whose first issue's path names the field.
 */
export const farmAlertThresholdsSchema = z.strictObject(farmAlertThresholdFields).superRefine(countsFitTheWindow);

/** The cross-field check of the thresholds, for schemas that add fields (a policy's scope). */
export function countsFitTheWindow(t: { windowSamples: number } & Record<(typeof WITHIN_WINDOW)[number], number>, ctx: z.RefinementCtx): void {
  for (const field of WITHIN_WINDOW) {
    if (t[field] > t.windowSamples) ctx.addIssue({ code: "custom", path: [field], message: `must be at most windowSamples (${t.windowSamples})` });
  }
}

export type FarmAlertThresholds = z.infer<typeof farmAlertThresholdsSchema>;

/** The built-in thresholds: what applies to a device no `farm-alerts` policy covers. */
export const DEFAULT_FARM_ALERT_THRESHOLDS: FarmAlertThresholds = Object.freeze(farmAlertThresholdsSchema.parse({}));

