/**
 * Which policy applies to a device, per kind: rule HW-POLICY-3, the most specific scope wins — a device group
 * naming the device, else the device's model, else the fleet default, else the built-in default. Indicators
 * that allow the reference values get the device's approved reference digests (HW-GUARD-8). Pure functions
 * over the (small) set of policy rows, so a bulk change resolves 10,000 devices without a query each.
 */
import { canonicalize } from "../../../shared/canonical/index.js";
import { sha256Hex } from "../../../shared/crypto/index.js";
import { DEFAULT_FARM_ALERT_THRESHOLDS, type FarmAlertThresholds } from "../alerts/thresholds.js";
import { BUILT_IN_INDICATORS, BUILT_IN_NETWORK } from "./defaults.js";
import type { Indicator, NetworkPolicyBody, PolicyBodies, PolicyKind, PolicyScope, PoolPolicyBody } from "./schemas.js";
import { MAX_ALLOWED_SHA256, POLICY_KINDS } from "./schemas.js";

/** A stored policy as resolution needs it. */
export interface PolicyRecord<K extends PolicyKind = PolicyKind> {
  id: string;
  kind: K;
  scope: PolicyScope;
  body: PolicyBodies[K];
  version: number;
}

export type ScopeLevel = "devices" | "model" | "default" | "built-in";

export interface PolicySource {
  level: ScopeLevel;
  /** null for the built-in default. */
  policyId: string | null;
  version: number | null;
}

/** The policy content a device gets (without the delivery version). */
export interface PolicyContent {
  /** null: no pool policy applies, so the device is sent no policy at all (HW-POLICY-3). */
  pools: PoolPolicyBody | null;
  network: NetworkPolicyBody;
  indicators: Indicator[];
}

export interface EffectivePolicy {
  /** What the device is sent (the hash covers this only). */
  content: PolicyContent;
  /** HW-ALERT-3: the farm-alert thresholds the plane judges this device's telemetry with (never sent). */
  farmAlerts: FarmAlertThresholds;
  sources: Record<PolicyKind, PolicySource>;
  /** sha256 of the canonical content: a delivery is due when it differs from the delivered one. */
  hash: string;
  /** A pool policy applies: only then is the policy sent (the agent flags every pool outside allowedUrls). */
  deliverable: boolean;
}

interface KindIndex {
  byDevice: Map<string, PolicyRecord>;
  byModel: Map<string, PolicyRecord>;
  fleet: PolicyRecord | null;
}

export type PolicyIndex = Record<PolicyKind, KindIndex>;

/**
 * HW-ALERT-3 with HW-POLICY-3: the farm-alert thresholds of a device from an index (device group > model > fleet
 * > built-in defaults). `model` may be unknown (null): then a model-scoped policy cannot apply.
 */
export function farmAlertThresholdsFor(index: PolicyIndex, device: { id: string; model: string | null }): FarmAlertThresholds {
  // A scope's model is never empty (policyScopeSchema), so "" matches no model policy.
  const { record } = pick(index["farm-alerts"], { id: device.id, model: device.model ?? "" });
  return record ? (record.body as FarmAlertThresholds) : DEFAULT_FARM_ALERT_THRESHOLDS;
}

export function scopeLevel(scope: PolicyScope): Exclude<ScopeLevel, "built-in"> {
  if (scope.deviceIds !== undefined) return "devices";
  if (scope.model !== undefined) return "model";
  return "default";
}

/** One row per kind and scope key. Device groups key on their sorted member list. */
export function scopeKey(scope: PolicyScope): string {
  if (scope.deviceIds !== undefined) return `devices:${sha256Hex([...new Set(scope.deviceIds)].sort().join(","))}`;
  if (scope.model !== undefined) return `model:${scope.model}`;
  return "default";
}

/** The scope as stored: device ids de-duplicated and sorted, so equal groups look equal. */
export function normalizeScope(scope: PolicyScope): PolicyScope {
  if (scope.deviceIds !== undefined) return { deviceIds: [...new Set(scope.deviceIds)].sort() };
  if (scope.model !== undefined) return { model: scope.model };
  return {};
}

export function buildPolicyIndex(records: Iterable<PolicyRecord>): PolicyIndex {
  const index = Object.fromEntries(
    POLICY_KINDS.map((kind) => [kind, { byDevice: new Map(), byModel: new Map(), fleet: null } satisfies KindIndex]),
  ) as PolicyIndex;
  for (const record of records) {
    const slot = index[record.kind];
    if (!slot) continue;
    const level = scopeLevel(record.scope);
    if (level === "devices") for (const id of record.scope.deviceIds ?? []) slot.byDevice.set(id, record);
    else if (level === "model") slot.byModel.set(record.scope.model ?? "", record);
    else slot.fleet = record;
  }
  return index;
}

function pick(slot: KindIndex, device: { id: string; model: string }): { record: PolicyRecord | null; level: ScopeLevel } {
  // HW-POLICY-3: device group > model > fleet default > built-in.
  const byDevice = slot.byDevice.get(device.id);
  if (byDevice) return { record: byDevice, level: "devices" };
  const byModel = slot.byModel.get(device.model);
  if (byModel) return { record: byModel, level: "model" };
  if (slot.fleet) return { record: slot.fleet, level: "default" };
  return { record: null, level: "built-in" };
}

/** The executable digests of the device's approved reference values (its model + firmware version), or null. */
export type ReferenceDigests = readonly string[] | null;

/**
 * HW-GUARD-8: an unexpected-executable indicator with `allowReferenceValues` gets the device's approved
 * reference digests added to `allowedSha256` (sorted, de-duplicated). Without approved reference values, or
 * with more digests than one policy can carry, it is left out: the agent would flag every executable.
 */
export function withReferenceDigests(indicators: readonly Indicator[], reference: ReferenceDigests): Indicator[] {
  const out: Indicator[] = [];
  for (const indicator of indicators) {
    if (indicator.kind !== "unexpected-executable" || !indicator.allowReferenceValues) {
      out.push(indicator);
      continue;
    }
    if (!reference) continue;
    const allowed = [...new Set([...(indicator.allowedSha256 ?? []), ...reference])].sort();
    if (allowed.length > MAX_ALLOWED_SHA256) continue;
    out.push({ ...indicator, allowedSha256: allowed });
  }
  return out;
}

/** The sha256 values of a reference value set's measurements (files only; "missing" entries have none). */
export function referenceDigests(measurements: unknown): string[] {
  if (!Array.isArray(measurements)) return [];
  const out = new Set<string>();
  for (const m of measurements as { sha256?: unknown }[]) if (typeof m?.sha256 === "string" && /^[0-9a-f]{64}$/.test(m.sha256)) out.add(m.sha256);
  return [...out].sort();
}

export function resolvePolicy(index: PolicyIndex, device: { id: string; model: string }, reference: ReferenceDigests = null): EffectivePolicy {
  const pools = pick(index.pools, device);
  const network = pick(index.network, device);
  const indicators = pick(index.indicators, device);
  const farmAlerts = pick(index["farm-alerts"], device);
  const content: PolicyContent = {
    pools: pools.record ? (pools.record.body as PoolPolicyBody) : null,
    network: network.record ? (network.record.body as NetworkPolicyBody) : BUILT_IN_NETWORK,
    indicators: withReferenceDigests(indicators.record ? (indicators.record.body as PolicyBodies["indicators"]).indicators : [...BUILT_IN_INDICATORS], reference),
  };
  const source = ({ record, level }: { record: PolicyRecord | null; level: ScopeLevel }): PolicySource => ({
    level,
    policyId: record?.id ?? null,
    version: record?.version ?? null,
  });
  return {
    content,
    farmAlerts: farmAlerts.record ? (farmAlerts.record.body as FarmAlertThresholds) : DEFAULT_FARM_ALERT_THRESHOLDS,
    sources: { pools: source(pools), network: source(network), indicators: source(indicators), "farm-alerts": source(farmAlerts) },
    hash: sha256Hex(canonicalize(content)),
    deliverable: content.pools !== null,
  };
}

/** Which of two scopes' device groups overlap: the first shared device id, or null. */
export function firstSharedDevice(a: PolicyScope, b: PolicyScope): string | null {
  if (!a.deviceIds || !b.deviceIds) return null;
  const members = new Set(a.deviceIds);
  return b.deviceIds.find((id) => members.has(id)) ?? null;
}
