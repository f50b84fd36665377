/**
 * The farm-alert analyzer (HW-ALERT-1): the seeds' attacks as they show in what a miner reports. It keeps a
 * bounded window of heartbeat telemetry per device and says when a condition starts (with its evidence) and when
 * it clears; the same condition is not raised again until it has cleared. In memory and synchronous: it runs on
 * the heartbeat ingest path and never touches the database (control-plane/src/alerts/index.ts writes).
 *
 * - `zero-hashrate` (contraindicated): alive (heartbeats arrive) but hashing at 0 GH/s for `zeroHashrateSamples`
 *   heartbeats in a row: a remote kill switch. Clears with a hashrate above 0.
 * - `fans-stopped` (contraindicated): a fan at or below `fanStoppedRpm` for `fanStoppedSamples` heartbeats; the
 *   evidence says whether the hottest temperature climbed by `temperatureRiseC` meanwhile (cooling disabled).
 *   Clears when every fan turns above the floor.
 * - `hashrate-drop` (warning): the hashrate below `(1 - hashrateDropRatio)` of the device's own average over the
 *   window (once it holds `minSamplesForAverage` samples). Clears back at or above that line.
 * - `pool-switching` (contraindicated): `minPoolSwitches` or more switches of the active pool within the window
 *   whose periods (from one switch to the next-but-one: away and back) are regular (coefficient of variation <=
 *   `maxIntervalVariation`): a time-sliced hidden dev fee. Clears when a full window shows no such pattern.
 *
 * A check that cannot decide (no such telemetry, too few samples, e.g. after a plane restart) neither raises nor
 * clears: not seen is not clean. Telemetry sent while the device is quarantined is not judged: the stop is meant.
 */
import type { Heartbeat } from "../../../shared/protocol/index.js";
import { DEFAULT_FARM_ALERT_THRESHOLDS, type FarmAlertThresholds } from "./thresholds.js";

export const FARM_ALERT_KINDS = ["zero-hashrate", "fans-stopped", "hashrate-drop", "pool-switching"] as const;
export type FarmAlertKind = (typeof FARM_ALERT_KINDS)[number];

/** One alert as the analyzer raises it. */
export interface FarmFinding {
  alert: FarmAlertKind;
  tier: "warning" | "contraindicated";
  summary: string;
  /** What a clean miner shows, in the thresholds' terms (the finding's `expected`). */
  expected: Record<string, unknown>;
  /** What was seen (the finding's `seen`): values, sample counts, times in ms since the epoch. */
  evidence: Record<string, unknown>;
}

/** What one heartbeat changed for its device: alerts that start now, and alerts that cleared now. */
export interface FarmAlertChange {
  started: FarmFinding[];
  cleared: FarmAlertKind[];
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
  /** Times (ms) the active pool changed within the window, newest last. */
  poolSwitches: number[];
  active: Set<FarmAlertKind>;
}

/** A check's answer: an alert, clean ("clear"), or cannot tell yet (null: neither raises nor clears). */
type Verdict = FarmFinding | "clear" | null;

/** Upper bound on devices tracked; the least recently seen are forgotten beyond it (memory: ~window x 100 B each). */
const MAX_DEVICES = 100_000;
const NO_CHANGE: FarmAlertChange = Object.freeze({ started: [], cleared: [] }) as FarmAlertChange;

export class FarmAlertAnalyzer {
  readonly #windows = new Map<string, DeviceWindow>();

  /**
   * Marks `kinds` as already active for a device (what the database holds after a plane restart), so they are
   * not raised again, and are cleared when its telemetry shows them gone.
   */
  seed(deviceId: string, kinds: Iterable<FarmAlertKind>): void {
    this.#window(deviceId).active = new Set(kinds);
  }

  /** The alerts active for a device now. */
  active(deviceId: string): FarmAlertKind[] {
    return [...(this.#windows.get(deviceId)?.active ?? [])];
  }

  /**
   * Adds one accepted heartbeat's telemetry (`atMs`: the plane's clock) judged by `t` (already validated, e.g. the
   * device's `farm-alerts` policy); returns what started and what cleared with it (both empty most of the time).
   * A quarantined device's telemetry is not judged (the miner is stopped on purpose) and changes nothing.
   */
  observe(deviceId: string, atMs: number, telemetry: Telemetry | undefined, t: FarmAlertThresholds = DEFAULT_FARM_ALERT_THRESHOLDS, containment: Heartbeat["containment"] = "none"): FarmAlertChange {
    if (!telemetry || containment !== "none") return NO_CHANGE;
    const window = this.#window(deviceId);
    const sample: Sample = {
      atMs,
      ...(telemetry.hashrateGhs === undefined ? {} : { hashrateGhs: telemetry.hashrateGhs }),
      ...(telemetry.temperaturesC && telemetry.temperaturesC.length > 0 ? { maxTempC: Math.max(...telemetry.temperaturesC) } : {}),
      ...(telemetry.fanRpm && telemetry.fanRpm.length > 0 ? { fanRpm: telemetry.fanRpm } : {}),
      ...(telemetry.activePool === undefined ? {} : { activePool: telemetry.activePool }),
    };
    let previousPool: string | undefined;
    for (let i = window.samples.length - 1; i >= 0 && previousPool === undefined; i--) previousPool = window.samples[i]!.activePool;
    if (sample.activePool !== undefined && previousPool !== undefined && sample.activePool !== previousPool) window.poolSwitches.push(atMs);
    window.samples.push(sample);
    while (window.samples.length > t.windowSamples) window.samples.shift();
    const oldest = window.samples[0]!.atMs;
    while (window.poolSwitches.length > 0 && window.poolSwitches[0]! < oldest) window.poolSwitches.shift();

    const started: FarmFinding[] = [];
    const cleared: FarmAlertKind[] = [];
    const verdicts: [FarmAlertKind, Verdict][] = [
      ["zero-hashrate", this.#zeroHashrate(window, t)],
      ["fans-stopped", this.#fansStopped(window, t)],
      ["hashrate-drop", this.#hashrateDrop(window, t)],
      ["pool-switching", this.#poolSwitching(window, t)],
    ];
    for (const [kind, verdict] of verdicts) {
      if (verdict === null) continue;
      if (verdict === "clear") {
        if (window.active.delete(kind)) cleared.push(kind);
      } else if (!window.active.has(kind)) {
        window.active.add(kind);
        started.push(verdict);
      }
    }
    return started.length === 0 && cleared.length === 0 ? NO_CHANGE : { started, cleared };
  }

  #window(deviceId: string): DeviceWindow {
    let window = this.#windows.get(deviceId);
    if (window) this.#windows.delete(deviceId);
    window ??= { samples: [], poolSwitches: [], active: new Set() };
    this.#windows.set(deviceId, window); // most recently seen last
    if (this.#windows.size > MAX_DEVICES) this.#windows.delete(this.#windows.keys().next().value as string);
    return window;
  }

  #zeroHashrate(w: DeviceWindow, t: FarmAlertThresholds): Verdict {
    const n = t.zeroHashrateSamples;
    const latest = w.samples.at(-1)!.hashrateGhs;
    if (latest === undefined) return null;
    if (latest > 0) return "clear";
    const last = w.samples.slice(-n);
    if (last.length < n || !last.every((s) => s.hashrateGhs === 0)) return null;
    return {
      alert: "zero-hashrate",
      tier: "contraindicated",
      summary: `alive but hashing at 0 GH/s for ${n} heartbeats in a row (remote kill switch?)`,
      expected: { hashrateGhs: "> 0", zeroHashrateSamples: n },
      evidence: { hashrateGhs: 0, samples: n, sinceMs: last[0]!.atMs },
    };
  }

  #fansStopped(w: DeviceWindow, t: FarmAlertThresholds): Verdict {
    const { fanStoppedSamples: n, fanStoppedRpm, temperatureRiseC } = t;
    const stoppedFans = (s: Sample) => (s.fanRpm ?? []).map((rpm, index) => ({ index, rpm })).filter((f) => f.rpm <= fanStoppedRpm);
    const latest = w.samples.at(-1)!;
    if (latest.fanRpm === undefined) return null;
    if (stoppedFans(latest).length === 0) return "clear";
    const last = w.samples.slice(-n);
    if (last.length < n || !last.every((s) => stoppedFans(s).length > 0)) return null;
    const temps = last.map((s) => s.maxTempC).filter((c): c is number => c !== undefined);
    const rise = temps.length >= 2 ? temps.at(-1)! - temps[0]! : 0;
    const climbing = rise >= temperatureRiseC;
    return {
      alert: "fans-stopped",
      tier: "contraindicated",
      summary: climbing
        ? `fans stopped while the temperature climbed ${rise.toFixed(1)} C (cooling disabled?)`
        : `fans at or below ${fanStoppedRpm} rpm for ${n} heartbeats`,
      expected: { fanRpm: `> ${fanStoppedRpm}`, fanStoppedSamples: n, temperatureRiseC },
      evidence: { fans: stoppedFans(latest), samples: n, temperatureRiseC: rise, temperatureClimbing: climbing, maxTempC: temps.at(-1) ?? null, sinceMs: last[0]!.atMs },
    };
  }

  #hashrateDrop(w: DeviceWindow, t: FarmAlertThresholds): Verdict {
    const { minSamplesForAverage, hashrateDropRatio } = t;
    const currentRate = w.samples.at(-1)!.hashrateGhs;
    if (currentRate === undefined || currentRate === 0) return null; // 0 is zero-hashrate's to judge
    const rates = w.samples.map((s) => s.hashrateGhs).filter((r): r is number => r !== undefined);
    if (rates.length < minSamplesForAverage) return null;
    const average = rates.slice(0, -1).reduce((a, b) => a + b, 0) / (rates.length - 1);
    if (average <= 0) return null;
    const floor = (1 - hashrateDropRatio) * average;
    if (currentRate >= floor) return "clear";
    return {
      alert: "hashrate-drop",
      tier: "warning",
      summary: `hashrate ${currentRate.toFixed(1)} GH/s is ${Math.round((1 - currentRate / average) * 100)}% below the device's own average ${average.toFixed(1)} GH/s`,
      expected: { hashrateGhs: `>= ${floor.toFixed(1)}`, hashrateDropRatio },
      evidence: { hashrateGhs: currentRate, averageGhs: average, samples: rates.length, dropRatio: hashrateDropRatio },
    };
  }

  #poolSwitching(w: DeviceWindow, t: FarmAlertThresholds): Verdict {
    const { minPoolSwitches, maxIntervalVariation, windowSamples } = t;
    const switches = w.poolSwitches;
    const undecided = w.samples.length < windowSamples ? null : "clear"; // a full window without the pattern is clean
    if (switches.length < minPoolSwitches) return undecided;
    const recent = switches.slice(-minPoolSwitches);
    // A time slice is a switch away and one back: the period is every other switch (A->B->A), so compare those.
    const intervals = recent.slice(2).map((at, i) => at - recent[i]!);
    const mean = intervals.reduce((a, b) => a + b, 0) / intervals.length;
    if (mean <= 0) return undecided;
    const sd = Math.sqrt(intervals.reduce((a, b) => a + (b - mean) ** 2, 0) / intervals.length);
    if (sd / mean > maxIntervalVariation) return undecided;
    const pools = [...new Set(w.samples.map((s) => s.activePool).filter((p): p is string => p !== undefined))];
    return {
      alert: "pool-switching",
      tier: "contraindicated",
      summary: `active pool switched ${recent.length} times, away and back every ~${Math.round(mean / 1000)} s (time-sliced hidden dev fee?)`,
      expected: { poolSwitches: `< ${minPoolSwitches} regular switches per ${windowSamples} heartbeats`, maxIntervalVariation },
      evidence: { switches: recent.length, periodsMs: intervals, meanPeriodMs: mean, variation: sd / mean, pools },
    };
  }
}
