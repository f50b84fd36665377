/**
 * Farm alerts from heartbeat telemetry (HW-ALERT-1): the seeds' attacks as they show in what a miner reports.
 * The plane keeps a bounded window of samples per device (`windowSamples`, at most 10,000 devices' worth of
 * memory each window) and raises a finding, with its evidence, when a condition starts; the same condition is
 * not raised again until it has cleared.
 *
 * - `zero-hashrate` (contraindicated): alive (heartbeats arrive) but hashing at 0 GH/s for `zeroHashrateSamples`
 *   samples in a row: a remote kill switch.
 * - `fans-stopped` (contraindicated): a fan at or below `fanStoppedRpm` for `fanStoppedSamples` samples; the
 *   evidence says whether the hottest temperature climbed by `temperatureRiseC` meanwhile (cooling disabled).
 * - `hashrate-drop` (warning): the hashrate below `(1 - hashrateDropRatio)` of the device's own average over the
 *   window (once it holds `minSamplesForAverage` samples).
 * - `pool-switching` (contraindicated): `minPoolSwitches` or more switches of the active pool whose periods (from
 *   one switch to the next-but-one: away and back) are regular (coefficient of variation <= `maxIntervalVariation`):
 *   a time-sliced hidden dev fee.
 */
import type { Logger } from "pino";
import { z } from "zod";
import type { Heartbeat } from "../../../shared/protocol/index.js";
import type { Database } from "../db/index.js";
import { recordPlaneEvents } from "../events/index.js";
import { recordAudit } from "../service/context.js";
import type { DeviceSideService } from "../service/types.js";

export const farmAlertThresholdsSchema = z.strictObject({
  windowSamples: z.number().int().min(10).max(1_000).default(120),
  zeroHashrateSamples: z.number().int().min(1).max(1_000).default(3),
  fanStoppedRpm: z.number().min(0).max(10_000).default(300),
  fanStoppedSamples: z.number().int().min(1).max(1_000).default(2),
  temperatureRiseC: z.number().min(0).max(100).default(5),
  hashrateDropRatio: z.number().gt(0).lt(1).default(0.3),
  minSamplesForAverage: z.number().int().min(2).max(1_000).default(10),
  minPoolSwitches: z.number().int().min(4).max(1_000).default(6),
  maxIntervalVariation: z.number().min(0).max(1).default(0.15),
});
export type FarmAlertThresholds = z.infer<typeof farmAlertThresholdsSchema>;
export const DEFAULT_FARM_ALERT_THRESHOLDS: FarmAlertThresholds = farmAlertThresholdsSchema.parse({});

export type FarmAlertKind = "zero-hashrate" | "fans-stopped" | "hashrate-drop" | "pool-switching";

export interface FarmFinding {
  alert: FarmAlertKind;
  tier: "warning" | "contraindicated";
  summary: string;
  /** What was seen, with the thresholds it was judged against. */
  evidence: Record<string, unknown>;
}

type Telemetry = NonNullable<Heartbeat["telemetry"]>;

interface Sample {
  atMs: number;
  hashrateGhs?: number;
  maxTempC?: number;
  fanRpm?: number[];
  activePool?: string;
}

interface DeviceWindow {
  samples: Sample[];
  /** Times (ms) the active pool changed, newest last, bounded like the samples. */
  poolSwitches: number[];
  active: Set<FarmAlertKind>;
}

/** Upper bound on devices tracked; the least recently seen are forgotten beyond it. */
const MAX_DEVICES = 100_000;

export class FarmAlertAnalyzer {
  readonly #windows = new Map<string, DeviceWindow>();
  readonly thresholds: FarmAlertThresholds;

  /** Throws a ZodError naming the bad threshold. */
  constructor(thresholds: Partial<FarmAlertThresholds> = {}) {
    this.thresholds = farmAlertThresholdsSchema.parse(thresholds);
  }

  /** Adds one heartbeat's telemetry; returns the findings that START with it (empty most of the time). */
  observe(deviceId: string, atMs: number, telemetry: Telemetry | undefined): FarmFinding[] {
    if (!telemetry) return [];
    const t = this.thresholds;
    let window = this.#windows.get(deviceId);
    if (window) this.#windows.delete(deviceId);
    window ??= { samples: [], poolSwitches: [], active: new Set() };
    this.#windows.set(deviceId, window); // most recently seen last
    if (this.#windows.size > MAX_DEVICES) this.#windows.delete(this.#windows.keys().next().value as string);

    const sample: Sample = {
      atMs,
      ...(telemetry.hashrateGhs === undefined ? {} : { hashrateGhs: telemetry.hashrateGhs }),
      ...(telemetry.temperaturesC && telemetry.temperaturesC.length > 0 ? { maxTempC: Math.max(...telemetry.temperaturesC) } : {}),
      ...(telemetry.fanRpm ? { fanRpm: telemetry.fanRpm } : {}),
      ...(telemetry.activePool === undefined ? {} : { activePool: telemetry.activePool }),
    };
    const previousPool = [...window.samples].reverse().find((s) => s.activePool !== undefined)?.activePool;
    if (sample.activePool !== undefined && previousPool !== undefined && sample.activePool !== previousPool) {
      window.poolSwitches.push(atMs);
      if (window.poolSwitches.length > t.windowSamples) window.poolSwitches.shift();
    }
    window.samples.push(sample);
    if (window.samples.length > t.windowSamples) window.samples.shift();

    const current = new Map<FarmAlertKind, FarmFinding>();
    for (const finding of [this.#zeroHashrate(window), this.#fansStopped(window), this.#hashrateDrop(window), this.#poolSwitching(window)]) {
      if (finding) current.set(finding.alert, finding);
    }
    const started = [...current.values()].filter((f) => !window.active.has(f.alert));
    window.active = new Set(current.keys());
    return started;
  }

  #zeroHashrate(w: DeviceWindow): FarmFinding | null {
    const n = this.thresholds.zeroHashrateSamples;
    const last = w.samples.slice(-n);
    if (last.length < n || !last.every((s) => s.hashrateGhs === 0)) return null;
    return {
      alert: "zero-hashrate",
      tier: "contraindicated",
      summary: `alive but hashing at 0 GH/s for ${n} heartbeats in a row (remote kill switch?)`,
      evidence: { hashrateGhs: 0, samples: n, sinceMs: last[0]!.atMs },
    };
  }

  #fansStopped(w: DeviceWindow): FarmFinding | null {
    const { fanStoppedSamples: n, fanStoppedRpm, temperatureRiseC } = this.thresholds;
    const last = w.samples.slice(-n);
    if (last.length < n) return null;
    const stoppedFans = (s: Sample) => (s.fanRpm ?? []).map((rpm, index) => ({ index, rpm })).filter((f) => f.rpm <= fanStoppedRpm);
    if (!last.every((s) => stoppedFans(s).length > 0)) return null;
    const temps = last.map((s) => s.maxTempC).filter((c): c is number => c !== undefined);
    const rise = temps.length >= 2 ? temps.at(-1)! - temps[0]! : 0;
    const climbing = rise >= temperatureRiseC;
    return {
      alert: "fans-stopped",
      tier: "contraindicated",
      summary: climbing
        ? `fans stopped while the temperature climbed ${rise.toFixed(1)} C (cooling disabled?)`
        : `fans at or below ${fanStoppedRpm} rpm for ${n} heartbeats`,
      evidence: { fans: stoppedFans(last.at(-1)!), samples: n, temperatureRiseC: rise, temperatureClimbing: climbing, maxTempC: temps.at(-1) ?? null },
    };
  }

  #hashrateDrop(w: DeviceWindow): FarmFinding | null {
    const { minSamplesForAverage, hashrateDropRatio } = this.thresholds;
    const rates = w.samples.map((s) => s.hashrateGhs).filter((r): r is number => r !== undefined);
    const currentRate = rates.at(-1);
    if (rates.length < minSamplesForAverage || currentRate === undefined || currentRate === 0) return null; // 0 is zero-hashrate
    const average = rates.slice(0, -1).reduce((a, b) => a + b, 0) / (rates.length - 1);
    if (average <= 0 || currentRate >= (1 - hashrateDropRatio) * average) return null;
    return {
      alert: "hashrate-drop",
      tier: "warning",
      summary: `hashrate ${currentRate.toFixed(1)} GH/s is ${Math.round((1 - currentRate / average) * 100)}% below the device's own average ${average.toFixed(1)} GH/s`,
      evidence: { hashrateGhs: currentRate, averageGhs: average, samples: rates.length, dropRatio: hashrateDropRatio },
    };
  }

  #poolSwitching(w: DeviceWindow): FarmFinding | null {
    const { minPoolSwitches, maxIntervalVariation } = this.thresholds;
    const switches = w.poolSwitches;
    if (switches.length < minPoolSwitches) return null;
    const recent = switches.slice(-minPoolSwitches);
    // A time slice is a switch away and one back: the period is every other switch (A->B->A), so compare those.
    const intervals = recent.slice(2).map((at, i) => at - recent[i]!);
    const mean = intervals.reduce((a, b) => a + b, 0) / intervals.length;
    if (mean <= 0) return null;
    const sd = Math.sqrt(intervals.reduce((a, b) => a + (b - mean) ** 2, 0) / intervals.length);
    if (sd / mean > maxIntervalVariation) return null;
    const pools = [...new Set(w.samples.map((s) => s.activePool).filter((p): p is string => p !== undefined))];
    return {
      alert: "pool-switching",
      tier: "contraindicated",
      summary: `active pool switched ${recent.length} times every ~${Math.round(mean / 1000)} s (time-sliced hidden dev fee?)`,
      evidence: { switches: recent.length, periodsMs: intervals, meanPeriodMs: mean, variation: sd / mean, pools },
    };
  }
}

/**
 * The heartbeat hook: after the device side took a heartbeat (it refuses what it does not accept, and then this
 * sees nothing), the telemetry goes through the analyzer; each finding that starts is written as a `farm.alert`
 * event (stream + webhook outbox) with an audit row, in one transaction (HW-DB-1, HW-ALERT-1). A failure to write
 * is logged and never fails the heartbeat.
 */
export function withFarmAlerts(
  deviceSide: DeviceSideService,
  deps: { db: Database; analyzer: FarmAlertAnalyzer; logger: Logger; now?: () => number },
): DeviceSideService {
  const now = deps.now ?? Date.now;
  return {
    ...deviceSide,
    async onHeartbeat(heartbeat, session) {
      await deviceSide.onHeartbeat(heartbeat, session); // HW-LIVE-1: refused (and nothing analysed) unless signed
      const atMs = now();
      const findings = deps.analyzer.observe(heartbeat.deviceId, atMs, heartbeat.telemetry);
      if (findings.length === 0) return;
      const at = new Date(atMs);
      await deps.db
        .transaction(async (tx) => {
          await recordPlaneEvents(tx, findings.map((f) => ({ kind: "farm.alert" as const, deviceId: heartbeat.deviceId, data: { ...f } })), at);
          await recordAudit(tx, findings.map((f) => ({ actor: { kind: "system", id: "farm-alerts" }, action: `farm-alert.${f.alert}`, target: heartbeat.deviceId, detail: f })), at);
        })
        .catch((error: unknown) => deps.logger.error({ err: error, deviceId: heartbeat.deviceId }, "recording a farm alert failed"));
    },
  };
}
