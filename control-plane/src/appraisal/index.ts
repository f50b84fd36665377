/**
 * Appraisal of evidence against reference values, yielding an EAR-style attestation result with an IETF RATS
 * AR4SI trustworthiness vector (draft-ietf-rats-ar4si): instance-identity, configuration, executables, file-system,
 * each none/affirming/warning/contraindicated; the status is the worst claim.
 *
 * The caller verifies the evidence signature with the enrolled device key BEFORE calling `appraise`; that is what
 * makes instance-identity affirming here. Rule HW-APPRAISE-1: every difference is listed with the exact path and
 * the expected and seen digest and size; any difference makes its claim contraindicated.
 *
 * Rule HW-APPRAISE-2: guard findings carried in the (signed) evidence fold into the same vector: each finding's
 * claim takes the worst of its measured tier and the finding's tier, so a contraindicated finding (a hijacked
 * pool, an unknown outbound connection) makes the whole result contraindicated, with or without reference values.
 *
 * Rule HW-APPRAISE-3 (appraisal under containment: not seen is not clean): while a device is in
 * containment (quarantine requested, quarantined, release requested), evidence that did not observe an input
 * (`evidence.observations`, shared/protocol; absent = not observed) cannot clear what that input found before:
 * every finding of the previous verdict whose observation is not observed now (or whose guard is unknown) is
 * held into the new result, so a live-pool hijack stays contraindicated while the stopped miner is silent. And
 * such evidence never reads as `trusted`: an affirming result with anything unobserved becomes a
 * `runtime-opaque` warning. With every input observed the evidence is appraised as usual.
 *
 * Rule HW-ALERT-2 (farm alerts): findings the plane raises from the device's signed telemetry (guard `farm-alert`,
 * control-plane/src/alerts) fold into the same vector as guard findings do, on the `runtime-opaque` claim (what the
 * miner does while it runs, which no file measurement shows), and stay folded into every later appraisal until
 * telemetry clears them (`withFarmFindings`). The vector without them is kept (`farmAlerts.base`), so a cleared
 * alert is taken out exactly.
 */
import { canonicalize } from "../../../shared/canonical/index.js";
import { OBSERVATIONS, observationForGuard, type Evidence, type Finding, type Measurement, type ObservationName } from "../../../shared/protocol/index.js";
import type { ContainmentState } from "../trust/types.js";
import type { AttestationResult, Claim, Difference, ReferenceMeasurement, Tier } from "./types.js";

export type { AttestationResult, Claim, Difference, GuardClaim, ReferenceMeasurement, Tier } from "./types.js";

export type MeasuredClaim = Exclude<Claim, "instance-identity">;

/** What appraisal needs from a reference value set (a ReferenceValueSet satisfies it). */
export interface ReferenceValues {
  id: string;
  model: string;
  firmwareVersion: string;
  measurements: ReferenceMeasurement[];
}

const TIER_RANK: Record<Tier, number> = { none: 0, affirming: 1, warning: 2, contraindicated: 3 };
const MEASURED_CLAIMS: readonly MeasuredClaim[] = ["configuration", "executables", "file-system"];

export function worstTier(tiers: Iterable<Tier>): Tier {
  let worst: Tier = "none";
  for (const tier of tiers) if (TIER_RANK[tier] > TIER_RANK[worst]) worst = tier;
  return worst;
}

/**
 * The claim a path belongs to when its reference entry names none. Miner layout: cgminer/bmminer config in
 * `/config/*.conf`; binaries, firmware images and partitions are executables; everything else is file-system.
 */
export function claimForPath(path: string, kind?: Measurement["kind"]): MeasuredClaim {
  if (path.includes("/config/") || path.startsWith("/config") || path.endsWith(".conf")) return "configuration";
  if (
    kind === "block" ||
    path === "@agent" ||
    path.startsWith("/dev/") ||
    path.includes("/firmware") ||
    /(^|\/)(usr\/)?s?bin\//.test(path)
  ) {
    return "executables";
  }
  return "file-system";
}

/** What appraisal needs to know about the device beyond its evidence (HW-APPRAISE-3). */
export interface AppraisalContext {
  /** The device's containment state when the evidence arrived. */
  containment: ContainmentState;
  /** The device's previous attestation result (its findings may be held), null before the first. */
  previous: AttestationResult | null;
  /** HW-ALERT-2: the device's active farm-alert findings, folded into the result. */
  farmFindings?: readonly Finding[];
}

/** The `guard` of findings the plane raises from telemetry (control-plane/src/alerts). */
export const FARM_ALERT_GUARD = "farm-alert";

const NO_EVIDENCE_VECTOR: AttestationResult["trustworthiness"] = { "instance-identity": "none", configuration: "none", executables: "none", "file-system": "none" };

/**
 * HW-ALERT-2: `result` with exactly `farm` as its farm-alert findings (guard `farm-alert`): any earlier ones are
 * taken out (from the vector kept in `farmAlerts.base`), the new ones folded in (claim -> worst tier), the other
 * findings and the differences untouched. Without a result (no evidence appraised yet) the base is an all-`none`
 * vector, so the status is the worst farm finding's tier. Pure; `now` stamps only a result made from nothing.
 */
export function withFarmFindings(result: AttestationResult | null, farm: readonly Finding[], now: number): AttestationResult {
  const start: AttestationResult = result ?? {
    status: "none",
    trustworthiness: NO_EVIDENCE_VECTOR,
    differences: [],
    findings: [],
    referenceId: null,
    evidenceSeq: -1,
    appraisedAt: new Date(now).toISOString(),
    summary: "no evidence appraised yet",
  };
  const base = start.farmAlerts?.base ?? { status: start.status, trustworthiness: start.trustworthiness, summary: start.summary };
  const others = (start.findings ?? []).filter((f) => f.guard !== FARM_ALERT_GUARD);
  const { farmAlerts: _previous, ...rest } = start;
  if (farm.length === 0) return { ...rest, ...base, findings: others };
  const sorted = sortFindings(farm);
  const trustworthiness = { ...base.trustworthiness };
  for (const finding of sorted) trustworthiness[finding.claim] = worstTier([trustworthiness[finding.claim] ?? "none", finding.tier]);
  const listed = sorted.map((f) => `${f.subject} ${f.tier}`).join("; ");
  return {
    ...rest,
    status: worstTier(Object.values(trustworthiness)),
    trustworthiness,
    findings: sortFindings([...others, ...sorted]),
    summary: `${base.summary}; ${sorted.length} farm alert(s) from telemetry: ${listed}`,
    farmAlerts: { base },
  };
}

/**
 * Appraises signed, already verified evidence. Without `context` (or with containment `none`) the result
 * depends on the evidence and reference values only; under containment HW-APPRAISE-3 applies (see above).
 * Pure: never throws for well-formed evidence, `now` (ms since the epoch) only stamps `appraisedAt`.
 */
export function appraise(evidence: Evidence, reference: ReferenceValues | null, now: number, context?: AppraisalContext): AttestationResult {
  const result = appraiseEvidence(evidence, reference, now, context);
  // HW-ALERT-2: the device's active farm alerts stay folded in, whatever the evidence says.
  return context?.farmFindings && context.farmFindings.length > 0 ? withFarmFindings(result, context.farmFindings, now) : result;
}

function appraiseEvidence(evidence: Evidence, reference: ReferenceValues | null, now: number, context?: AppraisalContext): AttestationResult {
  const measured = appraiseMeasurements(evidence, reference, now);
  const findings = evidence.findings ?? [];
  if (!context || context.containment === "none") return foldFindings(measured, findings);
  const notObserved = unobserved(evidence);
  if (notObserved.length === 0) return foldFindings(measured, findings);
  // HW-APPRAISE-3: what the previous verdict found through an input this evidence could not see stays found.
  const blind = new Set(notObserved.map((o) => o.observation));
  const present = new Set(findings.map(findingIdentity));
  const held = (context.previous?.findings ?? []).filter((f) => {
    if (f.guard === FARM_ALERT_GUARD) return false; // carried by the device's farm findings (HW-ALERT-2), not held
    const observation = observationForGuard(f.guard);
    return (observation === null || blind.has(observation)) && !present.has(findingIdentity(f));
  });
  const folded = foldFindings(measured, [...findings, ...held]);
  const what = notObserved.map((o) => (o.reason ? `${o.observation} (${o.reason})` : o.observation)).join(", ");
  let { status, trustworthiness } = folded;
  if (status === "affirming") {
    // HW-APPRAISE-3: what could not be seen is never clean.
    trustworthiness = { ...trustworthiness, "runtime-opaque": "warning" };
    status = "warning";
  }
  const heldText = held.length > 0 ? `; held ${held.length} finding(s) of the previous verdict` : "";
  return {
    ...folded,
    status,
    trustworthiness,
    underContainment: { containment: context.containment, notObserved, held: sortFindings(held) },
    summary: `${folded.summary}; under containment (${context.containment}) not observed: ${what}${heldText}`,
  };
}

/** The observations this evidence did not make (absent ones included), in protocol order. */
export function unobserved(evidence: Pick<Evidence, "observations">): { observation: ObservationName; reason?: string }[] {
  return OBSERVATIONS.flatMap((observation) => {
    const o = evidence.observations?.[observation];
    if (o?.observed) return [];
    return [{ observation, ...(o?.reason ? { reason: o.reason } : { reason: "not reported" }) }];
  });
}

function findingIdentity(f: Finding): string {
  return canonicalize({ g: f.guard, s: f.subject, t: f.tier, e: f.expected ?? null, v: f.seen ?? null });
}

/** Findings in a stable order (guard, subject, claim), so results and their comparison do not depend on the agent's order. */
export function sortFindings(findings: readonly Finding[]): Finding[] {
  const key = (finding: Finding) => `${finding.guard}\u0000${finding.subject}\u0000${finding.claim}\u0000${finding.tier}`;
  return [...findings].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * What makes two contraindicated verdicts "the same" for the auto-quarantine policy: the differences and the
 * contraindicated findings (without their free-text message). A warning finding coming or going is not a new
 * reason to quarantine a device an operator has released.
 */
export function verdictKey(result: Pick<AttestationResult, "differences"> & { findings?: Finding[] } | null): string {
  const findings = sortFindings((result?.findings ?? []).filter((finding) => finding.tier === "contraindicated")).map(
    ({ guard, claim, tier, subject, expected, seen }) => ({ guard, claim, tier, subject, expected: expected ?? null, seen: seen ?? null }),
  );
  // Canonical form: jsonb does not keep key order, so plain JSON.stringify would differ for equal verdicts.
  return canonicalize({ differences: result?.differences ?? null, findings });
}

function foldFindings(result: AttestationResult, findings: readonly Finding[]): AttestationResult {
  if (findings.length === 0) return result;
  const sorted = sortFindings(findings);
  const trustworthiness = { ...result.trustworthiness };
  for (const finding of sorted) {
    // HW-APPRAISE-2: claim -> worst tier of what was measured and what the guards saw.
    trustworthiness[finding.claim] = worstTier([trustworthiness[finding.claim] ?? "none", finding.tier]);
  }
  const status = worstTier(Object.values(trustworthiness));
  const guards = [...new Set(sorted.map((finding) => finding.guard))].join(", ");
  const first = sorted.slice(0, 3).map((finding) => `${finding.guard} ${finding.tier}: ${finding.subject}`).join("; ");
  const more = sorted.length > 3 ? `; and ${sorted.length - 3} more` : "";
  const summary = `${result.summary}; ${sorted.length} guard finding(s) (${guards}): ${first}${more}`;
  return { ...result, status, trustworthiness, findings: sorted, summary };
}

function appraiseMeasurements(evidence: Evidence, reference: ReferenceValues | null, now: number): AttestationResult {
  const base = { evidenceSeq: evidence.seq, appraisedAt: new Date(now).toISOString(), findings: [] as Finding[] };
  const label = `${evidence.model} ${evidence.firmwareVersion}`;

  if (!reference || reference.model !== evidence.model || reference.firmwareVersion !== evidence.firmwareVersion) {
    // Without approved reference values nothing can be affirmed or contradicted: a warning, not a verdict.
    return {
      ...base,
      status: "warning",
      trustworthiness: { "instance-identity": "affirming", configuration: "none", executables: "none", "file-system": "none" },
      differences: [],
      referenceId: null,
      summary: `no approved reference values for ${label}`,
    };
  }

  const seen = new Map<string, Measurement>();
  for (const measurement of evidence.measurements) {
    if (measurement.kind !== "missing") seen.set(measurement.path, measurement);
  }
  const expectedPaths = new Set<string>();
  const differences: Difference[] = [];
  const mentioned = new Set<MeasuredClaim>();

  for (const expected of reference.measurements) {
    expectedPaths.add(expected.path);
    const actual = seen.get(expected.path);
    const claim = expected.claim ?? claimForPath(expected.path, actual?.kind);
    mentioned.add(claim);
    const want = { sha256: expected.sha256, size: expected.size };
    if (!actual) {
      differences.push({ path: expected.path, claim, kind: "missing", expected: want, seen: null });
    } else if (actual.sha256 !== expected.sha256 || actual.size !== expected.size) {
      differences.push({ path: expected.path, claim, kind: "changed", expected: want, seen: { sha256: actual.sha256, size: actual.size } });
    }
  }
  for (const actual of seen.values()) {
    if (expectedPaths.has(actual.path)) continue;
    const claim = claimForPath(actual.path, actual.kind);
    mentioned.add(claim);
    differences.push({ path: actual.path, claim, kind: "unexpected", expected: null, seen: { sha256: actual.sha256, size: actual.size } });
  }
  differences.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const trustworthiness: Record<Claim, Tier> = {
    "instance-identity": "affirming",
    configuration: "none",
    executables: "none",
    "file-system": "none",
  };
  for (const claim of MEASURED_CLAIMS) {
    if (differences.some((difference) => difference.claim === claim)) trustworthiness[claim] = "contraindicated";
    else if (mentioned.has(claim)) trustworthiness[claim] = "affirming";
  }
  const status = worstTier(Object.values(trustworthiness));
  return { ...base, status, trustworthiness, differences, referenceId: reference.id, summary: summarize(differences, reference.id, label) };
}

function summarize(differences: Difference[], referenceId: string, label: string): string {
  if (differences.length === 0) return `matches reference values ${referenceId} for ${label}`;
  const count = (kind: Difference["kind"]) => differences.filter((difference) => difference.kind === kind).length;
  const claims = [...new Set(differences.map((difference) => difference.claim))].join(", ");
  const first = differences.slice(0, 3).map((difference) => `${difference.kind} ${difference.path}`).join("; ");
  const more = differences.length > 3 ? `; and ${differences.length - 3} more` : "";
  return (
    `${differences.length} difference(s) from reference values ${referenceId} for ${label} ` +
    `(${count("changed")} changed, ${count("missing")} missing, ${count("unexpected")} unexpected; ${claims}): ${first}${more}`
  );
}
