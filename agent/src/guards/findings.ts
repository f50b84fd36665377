/**
 * Findings (shared findingSchema) as the guards build them, and their identity: a finding is reported once
 * (one guard-alert event, one evidence) until it changes (HW-GUARD-2). Identity is guard, subject, tier,
 * expected and seen; the message is prose and may vary without making a finding "new".
 */
import { canonicalize, type Finding } from "../../../shared/index.js";

export type { Finding };

export type GuardName = "pool-config" | "pool-live" | "api-exposure" | "connection" | "listening-port" | "indicator" | "miner-api" | "miner-stop" | "pool-restore";

export function finding(f: { guard: GuardName; claim: Finding["claim"]; tier: Finding["tier"]; subject: string; expected?: unknown; seen?: unknown; message: string }): Finding {
  return {
    guard: f.guard,
    claim: f.claim,
    tier: f.tier,
    subject: f.subject.slice(0, 1024),
    ...(f.expected !== undefined ? { expected: f.expected } : {}),
    ...(f.seen !== undefined ? { seen: f.seen } : {}),
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
