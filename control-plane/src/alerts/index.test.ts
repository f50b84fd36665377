/**
 * Farm alerts (HW-ALERT-1): each attack as it shows in telemetry raises one finding with its evidence; a healthy
 * miner's telemetry (noise, a single dip, an operator's one pool change) raises none.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Heartbeat } from "../../../shared/protocol/index.js";
import { openDatabase, planeEvents, type OpenedDatabase } from "../db/index.js";
import type { DeviceSideService } from "../service/types.js";
import { DEFAULT_FARM_ALERT_THRESHOLDS, FarmAlertAnalyzer, withFarmAlerts } from "./index.js";

const SECOND = 1_000;
type Telemetry = NonNullable<Heartbeat["telemetry"]>;
const healthy = (i: number): Telemetry => ({
  hashrateGhs: 95_000 + ((i * 37) % 7) * 300, // +-1% noise
  temperaturesC: [62 + (i % 3), 64, 63],
  fanRpm: [5400, 5460, 5520, 5580],
  activePool: "stratum+tcp://pool.example.net:3333",
});

/** Feeds samples 5 s apart; returns every finding raised, in order. */
function feed(analyzer: FarmAlertAnalyzer, samples: Telemetry[], device = "hw-a", startMs = 0) {
  return samples.flatMap((t, i) => analyzer.observe(device, startMs + i * 5 * SECOND, t));
}

describe("farm alerts from telemetry", () => {
  it("a healthy miner raises nothing, whatever its noise", () => {
    expect(feed(new FarmAlertAnalyzer(), Array.from({ length: 300 }, (_, i) => healthy(i)))).toEqual([]);
  });

  it("alive but hashing at 0 (remote kill switch): one contraindicated finding, raised again only after it cleared", () => {
    const analyzer = new FarmAlertAnalyzer();
    const killed = (i: number) => ({ ...healthy(i), hashrateGhs: 0 });
    const samples = [...Array.from({ length: 20 }, (_, i) => healthy(i)), ...Array.from({ length: 10 }, (_, i) => killed(i)), ...Array.from({ length: 5 }, (_, i) => healthy(i)), ...Array.from({ length: 3 }, (_, i) => killed(i))];
    const findings = feed(analyzer, samples).filter((f) => f.alert === "zero-hashrate");
    expect(findings).toHaveLength(2);
    expect(findings[0]).toMatchObject({ tier: "contraindicated", evidence: { hashrateGhs: 0, samples: DEFAULT_FARM_ALERT_THRESHOLDS.zeroHashrateSamples } });
    // Two zero samples are not enough (a restart reports 0 for a moment).
    expect(feed(new FarmAlertAnalyzer(), [healthy(0), { ...healthy(1), hashrateGhs: 0 }, { ...healthy(2), hashrateGhs: 0 }, healthy(3)])).toEqual([]);
  });

  it("fans stopped, and fans stopped while temperatures climb (cooling disabled), with the fans as evidence", () => {
    const stopped = feed(new FarmAlertAnalyzer(), [healthy(0), healthy(1), { ...healthy(2), fanRpm: [0, 5460, 5520, 5580] }, { ...healthy(3), fanRpm: [0, 5460, 5520, 5580] }]);
    expect(stopped).toEqual([expect.objectContaining({ alert: "fans-stopped", tier: "contraindicated", evidence: expect.objectContaining({ fans: [{ index: 0, rpm: 0 }], temperatureClimbing: false }) })]);

    const heating = [healthy(0), ...[70, 78, 86].map((c) => ({ ...healthy(1), fanRpm: [0, 0, 0, 0], temperaturesC: [c, 60] }))];
    const analyzer = new FarmAlertAnalyzer({ fanStoppedSamples: 3 });
    const [finding] = feed(analyzer, heating);
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
    const analyzer = new FarmAlertAnalyzer({ windowSamples: 10 });
    feed(analyzer, Array.from({ length: 10 }, (_, i) => ({ ...healthy(i), hashrateGhs: 0 })), "hw-b");
    expect(feed(analyzer, Array.from({ length: 500 }, (_, i) => healthy(i)), "hw-a")).toEqual([]);
  });

  it("refuses a bad threshold, naming it", () => {
    expect(() => new FarmAlertAnalyzer({ hashrateDropRatio: 1.5 })).toThrow(/hashrateDropRatio/);
    expect(() => new FarmAlertAnalyzer({ windowSamples: 3 })).toThrow(/windowSamples/);
  });
});

describe("farm alerts on the plane (withFarmAlerts)", () => {
  let opened: OpenedDatabase;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "hw-alerts-"));
    opened = await openDatabase({ dataDir: dir });
  });
  afterAll(async () => {
    await opened?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes one farm.alert event (stream and webhooks) per finding that starts, after the device side took the heartbeat", async () => {
    const taken: string[] = [];
    const inner = { onHeartbeat: async (h: Heartbeat) => void taken.push(h.deviceId) } as unknown as DeviceSideService;
    let clock = Date.UTC(2025, 5, 1);
    const deviceSide = withFarmAlerts(inner, { db: opened.db, analyzer: new FarmAlertAnalyzer(), logger: pino({ level: "silent" }), now: () => clock });
    const deviceId = "hw-0123456789abcdef01234567";
    for (let seq = 1; seq <= 6; seq++) {
      clock += 5 * SECOND;
      // The inner device side is a stub here (signature checks are HW-LIVE-1's tests): a placeholder session and sig.
      const session = { connectNonce: "conn-test", publicKey: "", lastHeartbeatSeq: -1 };
      await deviceSide.onHeartbeat({ v: 1, type: "heartbeat", deviceId, connectNonce: session.connectNonce, seq, ts: clock, uptimeMs: seq * 5000, containment: "none", outboxDepth: 0, telemetry: { ...healthy(seq), hashrateGhs: seq <= 2 ? 95_000 : 0 }, sig: "unchecked" }, session);
    }
    expect(taken).toHaveLength(6);
    const rows = await opened.db.select().from(planeEvents);
    expect(rows.map((r) => [r.kind, r.deviceId, (r.data as { alert: string }).alert])).toEqual([["farm.alert", deviceId, "zero-hashrate"]]);
  });
});
