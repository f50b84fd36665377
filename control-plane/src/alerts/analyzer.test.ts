/**
 * Farm alerts (HW-ALERT-1): each attack as it shows in telemetry raises one finding with its evidence; a healthy
 * miner's telemetry (noise, a single dip, an operator's one pool change) raises none.
 */
import { describe, expect, it } from "vitest";
import type { Heartbeat } from "../../../shared/protocol/index.js";
import { FarmAlertAnalyzer, type FarmAlertKind } from "./analyzer.js";
import { DEFAULT_FARM_ALERT_THRESHOLDS, farmAlertThresholdsSchema, type FarmAlertThresholds } from "./thresholds.js";

const SECOND = 1_000;
type Telemetry = NonNullable<Heartbeat["telemetry"]>;
const healthy = (i: number): Telemetry => ({
  hashrateGhs: 95_000 + ((i * 37) % 7) * 300, // +-1% noise
  temperaturesC: [62 + (i % 3), 64, 63],
  fanRpm: [5400, 5460, 5520, 5580],
  activePool: "stratum+tcp://pool.example.net:3333",
});

const thresholds = (t: Partial<FarmAlertThresholds> = {}) => farmAlertThresholdsSchema.parse(t);

/** Feeds samples 5 s apart; returns every finding raised, in order (and records what cleared in `cleared`). */
function feed(analyzer: FarmAlertAnalyzer, samples: Telemetry[], device = "hw-a", startMs = 0, t = DEFAULT_FARM_ALERT_THRESHOLDS, cleared: FarmAlertKind[] = []) {
  return samples.flatMap((sample, i) => {
    const change = analyzer.observe(device, startMs + i * 5 * SECOND, sample, t);
    cleared.push(...change.cleared);
    return change.started;
  });
}

describe("farm alerts from telemetry", () => {
  it("a healthy miner raises nothing, whatever its noise", () => {
    expect(feed(new FarmAlertAnalyzer(), Array.from({ length: 300 }, (_, i) => healthy(i)))).toEqual([]);
  });

  it("alive but hashing at 0 (remote kill switch): one contraindicated finding, raised again only after it cleared", () => {
    const analyzer = new FarmAlertAnalyzer();
    const killed = (i: number) => ({ ...healthy(i), hashrateGhs: 0 });
    const grace = DEFAULT_FARM_ALERT_THRESHOLDS.zeroHashrateSamples;
    const samples = [...Array.from({ length: 20 }, (_, i) => healthy(i)), ...Array.from({ length: grace + 5 }, (_, i) => killed(i)), ...Array.from({ length: 5 }, (_, i) => healthy(i)), ...Array.from({ length: grace }, (_, i) => killed(i))];
    const cleared: FarmAlertKind[] = [];
    const findings = feed(analyzer, samples, "hw-a", 0, DEFAULT_FARM_ALERT_THRESHOLDS, cleared).filter((f) => f.alert === "zero-hashrate");
    expect(findings).toHaveLength(2);
    expect(cleared).toEqual(["zero-hashrate"]); // cleared once in between, active again at the end
    expect(findings[0]).toMatchObject({ tier: "contraindicated", evidence: { hashrateGhs: 0, samples: grace } });
    // A miner restarting reports 0 for a while: within the grace (3 minutes at 10 s heartbeats) that is no alert.
    const restart = [healthy(0), ...Array.from({ length: grace - 1 }, (_, i) => killed(i)), healthy(3)];
    expect(feed(new FarmAlertAnalyzer(), restart)).toEqual([]);
  });

  it("fans stopped, and fans stopped while temperatures climb (cooling disabled), with the fans as evidence", () => {
    const oneStopped = { ...healthy(2), fanRpm: [0, 5460, 5520, 5580] };
    const stopped = feed(new FarmAlertAnalyzer(), [healthy(0), healthy(1), oneStopped, oneStopped, oneStopped]);
    expect(stopped).toEqual([expect.objectContaining({ alert: "fans-stopped", tier: "contraindicated", evidence: expect.objectContaining({ fans: [{ index: 0, rpm: 0 }], temperatureClimbing: false }) })]);

    const heating = [healthy(0), ...[70, 78, 86].map((c) => ({ ...healthy(1), fanRpm: [0, 0, 0, 0], temperaturesC: [c, 60] }))];
    const [finding] = feed(new FarmAlertAnalyzer(), heating, "hw-a", 0, thresholds({ fanStoppedSamples: 3 }));
    expect(finding).toMatchObject({ alert: "fans-stopped", evidence: { temperatureClimbing: true, temperatureRiseC: 16, maxTempC: 86 } });
    expect(finding!.summary).toContain("climbed");
    // One slow fan reading is not a stopped fan.
    expect(feed(new FarmAlertAnalyzer(), [healthy(0), { ...healthy(1), fanRpm: [100, 5460, 5520, 5580] }, healthy(2)])).toEqual([]);
  });

  it("a hashrate drop against the device's own average is a warning; a small dip is not", () => {
    const base = Array.from({ length: 30 }, (_, i) => healthy(i));
    const [drop] = feed(new FarmAlertAnalyzer(), [...base, { ...healthy(30), hashrateGhs: 50_000 }]);
    expect(drop).toMatchObject({ alert: "hashrate-drop", tier: "warning", evidence: { hashrateGhs: 50_000 } });
    expect((drop!.evidence as { averageGhs: number }).averageGhs).toBeGreaterThan(94_000);
    expect(feed(new FarmAlertAnalyzer(), [...base, { ...healthy(30), hashrateGhs: 80_000 }])).toEqual([]);
    // Too little history for an average: nothing.
    expect(feed(new FarmAlertAnalyzer(), [healthy(0), healthy(1), { ...healthy(2), hashrateGhs: 10_000 }])).toEqual([]);
  });

  it("pool switches at regular intervals (time-sliced dev fee) are contraindicated; irregular ones and one change are not", () => {
    const POOL = "stratum+tcp://pool.example.net:3333";
    const FEE = "stratum+tcp://devfee.example.org:443";
    // Every 12th sample (60 s) the fee pool for 1 sample: regular.
    const sliced = Array.from({ length: 60 }, (_, i) => ({ ...healthy(i), activePool: i % 12 === 11 ? FEE : POOL }));
    const findings = feed(new FarmAlertAnalyzer(), sliced).filter((f) => f.alert === "pool-switching");
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ tier: "contraindicated", evidence: { pools: [POOL, FEE] } });

    const irregularAt = new Set([3, 4, 20, 22, 50, 51]);
    const irregular = Array.from({ length: 60 }, (_, i) => ({ ...healthy(i), activePool: irregularAt.has(i) ? FEE : POOL }));
    expect(feed(new FarmAlertAnalyzer(), irregular).filter((f) => f.alert === "pool-switching")).toEqual([]);
    const oneChange = Array.from({ length: 60 }, (_, i) => ({ ...healthy(i), activePool: i < 30 ? POOL : FEE }));
    expect(feed(new FarmAlertAnalyzer(), oneChange)).toEqual([]);
  });

  it("keeps each device's window apart and bounded", () => {
    const analyzer = new FarmAlertAnalyzer();
    const small = thresholds({ windowSamples: 10, zeroHashrateSamples: 3 });
    feed(analyzer, Array.from({ length: 10 }, (_, i) => ({ ...healthy(i), hashrateGhs: 0 })), "hw-b", 0, small);
    expect(feed(analyzer, Array.from({ length: 500 }, (_, i) => healthy(i)), "hw-a", 0, small)).toEqual([]);
    expect(analyzer.active("hw-b")).toEqual(["zero-hashrate"]);
  });

  it("thresholds change the outcome: a longer zero-hashrate grace, a lower fan floor", () => {
    const zeros = [healthy(0), ...Array.from({ length: 4 }, (_, i) => ({ ...healthy(i), hashrateGhs: 0 }))];
    expect(feed(new FarmAlertAnalyzer(), zeros, "hw-a", 0, thresholds({ zeroHashrateSamples: 4 })).map((f) => f.alert)).toEqual(["zero-hashrate"]);
    expect(feed(new FarmAlertAnalyzer(), zeros, "hw-a", 0, thresholds({ zeroHashrateSamples: 5 }))).toEqual([]);
    const slowFan = [healthy(0), ...Array.from({ length: 3 }, (_, i) => ({ ...healthy(i), fanRpm: [250, 5460, 5520, 5580] }))];
    expect(feed(new FarmAlertAnalyzer(), slowFan).map((f) => f.alert)).toEqual(["fans-stopped"]);
    expect(feed(new FarmAlertAnalyzer(), slowFan, "hw-a", 0, thresholds({ fanStoppedRpm: 100 }))).toEqual([]);
  });

  it("not seen is not clean: a seeded alert (plane restart) clears only on telemetry that shows it gone, and quarantined telemetry is not judged", () => {
    const analyzer = new FarmAlertAnalyzer();
    analyzer.seed("hw-a", ["fans-stopped", "zero-hashrate"]);
    // No fans and no hashrate reported: cannot tell, nothing clears.
    expect(analyzer.observe("hw-a", 0, { activePool: "stratum+tcp://pool.example.net:3333" })).toEqual({ started: [], cleared: [] });
    // Still at 0 while quarantined: not judged at all.
    expect(analyzer.observe("hw-a", 5_000, { ...healthy(1), hashrateGhs: 95_000 }, DEFAULT_FARM_ALERT_THRESHOLDS, "quarantined")).toEqual({ started: [], cleared: [] });
    expect(analyzer.observe("hw-a", 10_000, healthy(2)).cleared.sort()).toEqual(["fans-stopped", "zero-hashrate"]);
  });

  it("refuses a bad threshold, naming it (HW-ALERT-3)", () => {
    const problem = (input: unknown) => farmAlertThresholdsSchema.safeParse(input).error?.issues[0]?.path.join(".");
    expect(problem({ hashrateDropRatio: 1.5 })).toBe("hashrateDropRatio");
    expect(problem({ windowSamples: 3 })).toBe("windowSamples");
    expect(problem({ windowSamples: 20, minPoolSwitches: 30 })).toBe("minPoolSwitches"); // must fit the window
    expect(problem({ fanStoppedRpm: "300" })).toBe("fanStoppedRpm");
    expect(farmAlertThresholdsSchema.safeParse({ zeroHashrateSamples: 5 }).data).toEqual({ ...DEFAULT_FARM_ALERT_THRESHOLDS, zeroHashrateSamples: 5 });
  });
});
