/**
 * Findings (shared findingSchema) as the guards build them, and their identity: a finding is reported once
 * (one guard-alert event, one evidence) until it changes (HW-GUARD-2). Identity is guard, subject, tier,
 * expected and seen; the message is prose and may vary without making a finding "new".
 */
import { canonicalize, MAX_JSON_DEPTH, type Finding } from "../../../shared/index.js";

export type { Finding };

export type GuardName = "pool-config" | "pool-live" | "api-exposure" | "connection" | "listening-port" | "indicator" | "miner-api" | "miner-stop" | "pool-restore";

/** Longest string kept in a finding's `expected`/`seen` (characters); longer ones end in "...". */
export const FINDING_STRING_MAX = 512;

/**
 * Bounds what board content can put into a finding (HW-MSG-1, found by fuzzing under HW-FUZZ-1): a 200 KB host
 * name in /etc/hosts or a pool URL in a config file would otherwise make one finding, and so every evidence
 * message, larger than the 256 KiB payload cap, and the plane would never again accept this device's evidence.
 * Strings are cut to FINDING_STRING_MAX; values nested deeper than MAX_JSON_DEPTH become "(nested too deep)".
 */
function clipped(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return value.length > FINDING_STRING_MAX ? `${value.slice(0, FINDING_STRING_MAX - 3)}...` : value;
  if (value === null || typeof value !== "object") return value;
  if (depth >= MAX_JSON_DEPTH - 1) return "(nested too deep)";
  if (Array.isArray(value)) return value.map((v) => clipped(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clipped(v, depth + 1)]));
}

export function finding(f: { guard: GuardName; claim: Finding["claim"]; tier: Finding["tier"]; subject: string; expected?: unknown; seen?: unknown; message: string }): Finding {
  return {
    guard: f.guard,
    claim: f.claim,
    tier: f.tier,
    subject: f.subject.slice(0, 1024),
    ...(f.expected !== undefined ? { expected: clipped(f.expected) } : {}),
    ...(f.seen !== undefined ? { seen: clipped(f.seen) } : {}),
    message: f.message.slice(0, 1024),
  };
}

export function findingKey(f: Finding): string {
  return canonicalize({ g: f.guard, s: f.subject, t: f.tier, e: f.expected ?? null, v: f.seen ?? null });
}

/** Sorted and de-duplicated by identity, so the same board state always yields the same evidence. */
export function normalizeFindings(list: readonly Finding[]): Finding[] {
  const byKey = new Map<string, Finding>();
  for (const f of list) if (!byKey.has(findingKey(f))) byKey.set(findingKey(f), f);
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, f]) => f);
}
