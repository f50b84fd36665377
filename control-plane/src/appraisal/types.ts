/**
 * The attestation result and its vocabulary (IETF RATS AR4SI tiers and claims), produced by `appraise`
 * (./index.ts) and stored as `devices.last_appraisal` / `evidence.result`.
 */
import type { Finding, ReleaseMeasurement } from "../../../shared/protocol/index.js";
import type { ContainmentState } from "../trust/types.js";

/** IETF RATS AR4SI trustworthiness tiers. */
export type Tier = "none" | "affirming" | "warning" | "contraindicated";
export type Claim = "instance-identity" | "configuration" | "executables" | "file-system";

/** One reference measurement: the wire definition (shared/protocol/release.ts `referenceMeasurementSchema`). */
export type ReferenceMeasurement = ReleaseMeasurement;

/** One file that differs from the reference values (HW-APPRAISE-1): the path, and expected/seen digest and size. */
export interface Difference {
  path: string;
  claim: Exclude<Claim, "instance-identity">;
  kind: "changed" | "missing" | "unexpected";
  expected: { sha256: string; size: number } | null;
  seen: { sha256: string; size: number } | null;
}

/**
 * A guard finding folded into the vector: AR4SI's runtime-opaque claim appears only when a finding names it
 * (network connections, listening ports, the miner API), since the file measurements say nothing about it.
 */
export type GuardClaim = Finding["claim"];

/** An EAR-style attestation result. */
export interface AttestationResult {
  status: Tier;
  trustworthiness: Record<Claim, Tier> & { "runtime-opaque"?: Tier };
  differences: Difference[];
  /** The guard findings of the evidence (pool, exposure, connections, indicators), sorted; empty when clean. */
  findings: Finding[];
  referenceId: string | null;
  evidenceSeq: number;
  appraisedAt: string;
  /** Why, in words, e.g. "no approved reference values for S19 1.2.0". */
  summary: string;
  /**
   * HW-APPRAISE-3: set when the evidence was appraised under containment and did not observe everything:
   * which inputs were not observed (and why), and the previous verdict's findings held because of it.
   */
  underContainment?: { containment: ContainmentState; notObserved: { observation: string; reason?: string }[]; held: Finding[] };
  /**
   * HW-ALERT-2: set while farm-alert findings (guard `farm-alert`, from telemetry) are folded in: the status,
   * vector and summary without them, so clearing one restores exactly what the evidence said.
   */
  farmAlerts?: { base: Pick<AttestationResult, "status" | "trustworthiness" | "summary"> };
}
