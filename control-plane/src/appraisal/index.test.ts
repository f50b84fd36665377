import { describe, expect, it } from "vitest";
import type { Evidence, Finding } from "../../../shared/protocol/index.js";
import { appraise, claimForPath, type ReferenceValues, verdictKey } from "./index.js";

const A = "a".repeat(64);
const B = "b".repeat(64);
const C = "c".repeat(64);
const NOW = Date.UTC(2025, 0, 1);

function evidence(measurements: Evidence["measurements"], overrides: Partial<Evidence> = {}): Evidence {
  return {
    v: 1,
    type: "evidence",
    deviceId: "hw-000000000000000000000000",
    seq: 7,
    nonce: null,
    reason: "timer",
    ts: NOW,
    model: "S19",
    firmwareVersion: "1.2.0",
    agentVersion: "0.1.0",
    bootId: "boot-1",
    measurements,
    sig: "x".repeat(86),
    ...overrides,
  };
}

const reference: ReferenceValues = {
  id: "rv_1",
  model: "S19",
  firmwareVersion: "1.2.0",
  measurements: [
    { path: "/config/cgminer.conf", sha256: A, size: 10 },
    { path: "/usr/bin/cgminer", sha256: B, size: 20 },
    { path: "/etc/hosts", sha256: C, size: 30 },
    { path: "/opt/custom", sha256: C, size: 5, claim: "executables" },
  ],
};

const good: Evidence["measurements"] = [
  { path: "/config/cgminer.conf", kind: "file", sha256: A, size: 10 },
  { path: "/usr/bin/cgminer", kind: "file", sha256: B, size: 20 },
  { path: "/etc/hosts", kind: "file", sha256: C, size: 30 },
  { path: "/opt/custom", kind: "file", sha256: C, size: 5 },
];

describe("appraise", () => {
  it("affirms evidence that matches the reference values", () => {
    const result = appraise(evidence(good), reference, NOW);
    expect(result.status).toBe("affirming");
    expect(result.differences).toEqual([]);
    expect(result.trustworthiness).toEqual({
      "instance-identity": "affirming",
      configuration: "affirming",
      executables: "affirming",
      "file-system": "affirming",
    });
    expect(result.referenceId).toBe("rv_1");
    expect(result.evidenceSeq).toBe(7);
    expect(result.appraisedAt).toBe(new Date(NOW).toISOString());
  });

  it("lists changed, missing and unexpected paths with expected and seen digests", () => {
    const measurements: Evidence["measurements"] = [
      { path: "/config/cgminer.conf", kind: "file", sha256: B, size: 11 },
      { path: "/etc/hosts", kind: "file", sha256: C, size: 30 },
      { path: "/opt/custom", kind: "file", sha256: C, size: 5 },
      { path: "/usr/bin/cgminer", kind: "missing", sha256: "", size: 0 },
      { path: "/etc/ld.so.preload", kind: "file", sha256: A, size: 3 },
    ];
    const result = appraise(evidence(measurements), reference, NOW);
    expect(result.status).toBe("contraindicated");
    expect(result.differences).toEqual([
      { path: "/config/cgminer.conf", claim: "configuration", kind: "changed", expected: { sha256: A, size: 10 }, seen: { sha256: B, size: 11 } },
      { path: "/etc/ld.so.preload", claim: "file-system", kind: "unexpected", expected: null, seen: { sha256: A, size: 3 } },
      { path: "/usr/bin/cgminer", claim: "executables", kind: "missing", expected: { sha256: B, size: 20 }, seen: null },
    ]);
    expect(result.trustworthiness.configuration).toBe("contraindicated");
    expect(result.trustworthiness.executables).toBe("contraindicated");
    expect(result.trustworthiness["file-system"]).toBe("contraindicated");
    expect(result.summary).toContain("1 changed, 1 missing, 1 unexpected");
  });

  it("uses the reference entry's claim before the path heuristic", () => {
    const measurements = good.map((m) => (m.path === "/opt/custom" ? { ...m, sha256: A } : m));
    const result = appraise(evidence(measurements), reference, NOW);
    expect(result.differences.map((d) => [d.path, d.claim])).toEqual([["/opt/custom", "executables"]]);
    expect(result.trustworthiness["file-system"]).toBe("affirming");
    expect(result.trustworthiness.executables).toBe("contraindicated");
  });

  it("warns, and says so, without approved reference values", () => {
    const result = appraise(evidence(good), null, NOW);
    expect(result.status).toBe("warning");
    expect(result.referenceId).toBeNull();
    expect(result.summary).toBe("no approved reference values for S19 1.2.0");
    expect(result.trustworthiness["instance-identity"]).toBe("affirming");
  });

  it("does not appraise against reference values for another firmware version", () => {
    const result = appraise(evidence(good, { firmwareVersion: "1.3.0" }), reference, NOW);
    expect(result.status).toBe("warning");
    expect(result.summary).toBe("no approved reference values for S19 1.3.0");
  });

  const poolFinding = {
    guard: "pool-live",
    claim: "configuration" as const,
    tier: "contraindicated" as const,
    subject: "stratum+tcp://evil.example:3333",
    expected: ["stratum+tcp://pool.example:3333"],
    seen: "stratum+tcp://evil.example:3333",
    message: "active pool not allowed",
  };
  const exposure = { guard: "api-exposure", claim: "configuration" as const, tier: "warning" as const, subject: "api-allow", seen: "W:0/0", message: "wide" };
  const listener = { guard: "listening-port", claim: "runtime-opaque" as const, tier: "warning" as const, subject: "0.0.0.0:2222", message: "unexpected listener" };

  it("folds guard findings into the vector: claim -> worst tier, listed in a stable order", () => {
    const result = appraise(evidence(good, { findings: [poolFinding, exposure] }), reference, NOW);
    expect(result.status).toBe("contraindicated");
    expect(result.differences).toEqual([]);
    expect(result.trustworthiness).toEqual({
      "instance-identity": "affirming",
      configuration: "contraindicated",
      executables: "affirming",
      "file-system": "affirming",
    });
    expect(result.findings.map((f) => f.guard)).toEqual(["api-exposure", "pool-live"]);
    expect(result.summary).toContain("2 guard finding(s) (api-exposure, pool-live)");
  });

  it("adds runtime-opaque only when a finding names it; a warning finding leaves a clean device at warning", () => {
    const clean = appraise(evidence(good, { findings: [] }), reference, NOW);
    expect(clean.status).toBe("affirming");
    expect(clean.findings).toEqual([]);
    expect("runtime-opaque" in clean.trustworthiness).toBe(false);
    const result = appraise(evidence(good, { findings: [listener] }), reference, NOW);
    expect(result.status).toBe("warning");
    expect(result.trustworthiness["runtime-opaque"]).toBe("warning");
    expect(result.trustworthiness.configuration).toBe("affirming");
  });

  it("contraindicates on a finding even without reference values", () => {
    const result = appraise(evidence(good, { findings: [poolFinding] }), null, NOW);
    expect(result.status).toBe("contraindicated");
    expect(result.referenceId).toBeNull();
    expect(result.summary).toMatch(/^no approved reference values for S19 1.2.0; 1 guard finding/);
  });

  it("keys verdicts on differences and contraindicated findings, not on messages or warnings", () => {
    const a = appraise(evidence(good, { findings: [poolFinding] }), reference, NOW);
    const reworded = appraise(evidence(good, { findings: [exposure, { ...poolFinding, message: "other words" }] }), reference, NOW);
    const other = appraise(evidence(good, { findings: [{ ...poolFinding, seen: "stratum+tcp://other.example:1" }] }), reference, NOW);
    expect(verdictKey(a)).toBe(verdictKey(reworded));
    expect(verdictKey(a)).not.toBe(verdictKey(other));
    // A stored result from before findings existed compares equal to one without findings.
    const { findings: _omitted, ...old } = appraise(evidence(good), reference, NOW);
    expect(verdictKey(old)).toBe(verdictKey(appraise(evidence(good, { findings: [] }), reference, NOW)));
  });

  it("maps paths to claims", () => {
    expect(claimForPath("/config/cgminer.conf")).toBe("configuration");
    expect(claimForPath("/etc/network.conf")).toBe("configuration");
    expect(claimForPath("@agent")).toBe("executables");
    expect(claimForPath("/usr/bin/build")).toBe("executables");
    expect(claimForPath("/sbin/init")).toBe("executables");
    expect(claimForPath("/bin/sh")).toBe("executables");
    expect(claimForPath("/dev/mtd2")).toBe("executables");
    expect(claimForPath("/mnt/data/part", "block")).toBe("executables");
    expect(claimForPath("/boot/firmware.bin")).toBe("executables");
    expect(claimForPath("/etc/hosts")).toBe("file-system");
  });
});

describe("HW-APPRAISE-3: appraisal under containment", () => {
  const ALL_SEEN: Evidence["observations"] = { "miner-api": { observed: true }, sockets: { observed: true }, config: { observed: true }, indicators: { observed: true } };
  const MINER_STOPPED: Evidence["observations"] = { ...ALL_SEEN, "miner-api": { observed: false, reason: "miner stopped (quarantined); unreachable: connect ECONNREFUSED" } };
  const hijack: Finding = {
    guard: "pool-live",
    claim: "configuration",
    tier: "contraindicated",
    subject: "stratum+tcp://hijack.example.org:443",
    expected: { allowedUrls: ["stratum+tcp://pool.example.net:3333"] },
    seen: { url: "stratum+tcp://hijack.example.org:443", user: "thief.w1", active: true },
    message: "live pool not allowed",
  };
  const phoneHome: Finding = { guard: "connection", claim: "runtime-opaque", tier: "contraindicated", subject: "203.0.113.66:7000", message: "unknown outbound" };
  const quarantinedFor = (findings: Finding[]) => appraise(evidence(good, { findings, observations: ALL_SEEN }), reference, NOW);

  it("a live-pool finding is not cleared by evidence whose miner API was not observed, in every containment state", () => {
    const previous = quarantinedFor([hijack]);
    expect(previous.status).toBe("contraindicated");
    for (const containment of ["quarantine_requested", "quarantined", "release_requested"] as const) {
      const result = appraise(evidence(good, { observations: MINER_STOPPED }), reference, NOW, { containment, previous });
      expect(result.status).toBe("contraindicated");
      expect(result.findings).toEqual([hijack]);
      expect(result.underContainment).toEqual({ containment, notObserved: [{ observation: "miner-api", reason: MINER_STOPPED["miner-api"]!.reason }], held: [hijack] });
      expect(result.summary).toMatch(/under containment .* not observed: miner-api .*held 1 finding/);
      // Same verdict as the one that quarantined: auto-quarantine does not fire again.
      expect(verdictKey(result)).toBe(verdictKey(previous));
    }
  });

  it("held again and again while blind: the held finding carries through a chain of blind evidence", () => {
    let previous = quarantinedFor([hijack]);
    for (let i = 0; i < 3; i++) {
      previous = appraise(evidence(good, { observations: MINER_STOPPED }), reference, NOW, { containment: "quarantined", previous });
      expect(previous.status).toBe("contraindicated");
    }
  });

  it("a finding of an input that was observed clears; one of an unobserved input (sockets) is held", () => {
    const previous = quarantinedFor([hijack, phoneHome]);
    const socketsBlind = { ...ALL_SEEN, sockets: { observed: false, reason: "no /proc/net/tcp or /proc/net/tcp6" } };
    const result = appraise(evidence(good, { observations: socketsBlind }), reference, NOW, { containment: "quarantined", previous });
    expect(result.findings.map((f) => f.guard)).toEqual(["connection"]);
    expect(result.status).toBe("contraindicated");
  });

  it("evidence without observations (an older agent) observed nothing: every previous finding is held", () => {
    const previous = quarantinedFor([hijack, phoneHome, { guard: "future-guard", claim: "runtime-opaque", tier: "contraindicated", subject: "x", message: "y" }]);
    const result = appraise(evidence(good), reference, NOW, { containment: "quarantined", previous });
    expect(result.findings).toHaveLength(3);
    expect(result.underContainment?.notObserved.map((o) => o.observation)).toEqual(["miner-api", "sockets", "config", "indicators"]);
  });

  it("blind evidence never reads as trusted under containment (an operator quarantine of a clean device)", () => {
    const previous = quarantinedFor([]);
    expect(previous.status).toBe("affirming");
    const result = appraise(evidence(good, { observations: MINER_STOPPED }), reference, NOW, { containment: "quarantined", previous });
    expect(result.status).toBe("warning");
    expect(result.trustworthiness["runtime-opaque"]).toBe("warning");
    expect(result.underContainment?.held).toEqual([]);
  });

  it("evidence that observed everything is appraised as usual, under containment or not; outside containment nothing is held", () => {
    const previous = quarantinedFor([hijack]);
    expect(appraise(evidence(good, { observations: ALL_SEEN }), reference, NOW, { containment: "quarantined", previous }).status).toBe("affirming");
    const outside = appraise(evidence(good, { observations: MINER_STOPPED }), reference, NOW, { containment: "none", previous });
    expect(outside.status).toBe("affirming");
    expect(outside.underContainment).toBeUndefined();
  });

  it("a stop-failed finding from the agent is contraindicated and names the pool it still mines on", () => {
    const stop: Finding = { guard: "miner-stop", claim: "runtime-opaque", tier: "contraindicated", subject: "127.0.0.1:4028", expected: "miner stopped (quarantined)", seen: { activePool: hijack.subject }, message: "the stop failed" };
    const result = appraise(evidence(good, { findings: [hijack, stop], observations: ALL_SEEN }), reference, NOW, { containment: "quarantined", previous: quarantinedFor([hijack]) });
    expect(result.status).toBe("contraindicated");
    expect(result.trustworthiness["runtime-opaque"]).toBe("contraindicated");
    expect(result.findings.map((f) => f.guard)).toEqual(["miner-stop", "pool-live"]);
  });
});
