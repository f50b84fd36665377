/**
 * Pool hijack guards (ARCHITECTURE "Real attacks": rewritten pool URLs in the config, or addpool/switchpool
 * over 4028). Both the config file and the live `pools` answer are compared with the signed policy
 * (HW-GUARD-1): a pool URL not in `pools.allowedUrls`, or a worker name matching none of the anchored
 * `pools.workerPatterns`, is a configuration contraindication naming the exact difference.
 */
import type { MinerPool } from "../miner-api/index.js";
import type { GuardPolicy } from "../policy/index.js";
import { finding, type Finding } from "./findings.js";

export interface ConfigPool {
  url: string;
  user: string;
  pass: string;
}

/** A bmminer/cgminer JSON config file (`/config/bmminer.conf`, `/config/cgminer.conf`). */
export type MinerConfigFile =
  | { path: string; ok: true; raw: Record<string, unknown>; pools: ConfigPool[]; apiAllow?: string; apiListen: boolean; apiNetwork: boolean }
  | { path: string; ok: false; error: string };

export function parseMinerConfig(path: string, text: string): MinerConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { path, ok: false, error: `not valid JSON: ${(error as Error).message.slice(0, 200)}` };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { path, ok: false, error: "not a JSON object" };
  const obj = raw as Record<string, unknown>;
  const poolsRaw = Array.isArray(obj["pools"]) ? (obj["pools"] as unknown[]) : [];
  const str = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
  const pools = poolsRaw
    .filter((p): p is Record<string, unknown> => typeof p === "object" && p !== null)
    .map((p) => ({ url: str(p["url"]), user: str(p["user"]), pass: str(p["pass"]) }));
  const truthy = (v: unknown) => v === true || v === "true" || v === 1;
  return {
    path,
    ok: true,
    raw: obj,
    pools,
    ...(typeof obj["api-allow"] === "string" ? { apiAllow: obj["api-allow"] } : {}),
    apiListen: truthy(obj["api-listen"]),
    apiNetwork: truthy(obj["api-network"]),
  };
}

/** Scheme and host are case-insensitive; a trailing slash means nothing to a stratum client. */
export function normalizePoolUrl(url: string): string {
  return url.trim().toLowerCase().replace(/\/+$/, "");
}

export class PoolMatcher {
  private readonly urls: Set<string>;
  private readonly workers: RegExp[];

  constructor(readonly policy: GuardPolicy) {
    this.urls = new Set(policy.pools.allowedUrls.map(normalizePoolUrl));
    // Anchored: "farm\\..*" must match the whole worker name, not a substring of "evil.farm.x".
    this.workers = policy.pools.workerPatterns.map((p) => new RegExp(`^(?:${p})$`));
  }

  urlAllowed(url: string): boolean {
    return this.urls.has(normalizePoolUrl(url));
  }

  /** No patterns means the policy does not constrain worker names. */
  workerAllowed(user: string): boolean {
    return this.workers.length === 0 || this.workers.some((re) => re.test(user));
  }

  allowed(pool: { url: string; user: string }): boolean {
    return this.urlAllowed(pool.url) && this.workerAllowed(pool.user);
  }
}

function poolDifference(pool: { url: string; user: string }, m: PoolMatcher): { expected: unknown; what: string } | null {
  if (!m.urlAllowed(pool.url)) return { expected: { allowedUrls: m.policy.pools.allowedUrls }, what: `pool URL ${pool.url} is not approved` };
  if (!m.workerAllowed(pool.user)) return { expected: { workerPatterns: m.policy.pools.workerPatterns }, what: `worker ${pool.user} on ${pool.url} matches no approved worker pattern` };
  return null;
}

/** HW-GUARD-1 on the config files. An unreadable config is a warning: we cannot vouch for it. */
export function poolConfigGuard(configs: readonly MinerConfigFile[], policy: GuardPolicy): Finding[] {
  const m = new PoolMatcher(policy);
  const out: Finding[] = [];
  for (const config of configs) {
    if (!config.ok) {
      out.push(finding({ guard: "pool-config", claim: "configuration", tier: "warning", subject: config.path, expected: "a JSON miner config", seen: "unparseable", message: `${config.path}: ${config.error}` }));
      continue;
    }
    config.pools.forEach((pool, i) => {
      const diff = poolDifference(pool, m);
      if (!diff) return;
      out.push(
        finding({
          guard: "pool-config",
          claim: "configuration",
          tier: "contraindicated",
          subject: `${config.path}#pools[${i}]`,
          expected: diff.expected,
          seen: { url: pool.url, user: pool.user },
          message: `${config.path} pools[${i}]: ${diff.what}`,
        }),
      );
    });
  }
  return out;
}

/** HW-GUARD-1 on the live `pools` answer: any listed pool that is not approved (the active one says so). */
export function poolLiveGuard(pools: readonly MinerPool[], policy: GuardPolicy): Finding[] {
  const m = new PoolMatcher(policy);
  const out: Finding[] = [];
  for (const pool of pools) {
    const diff = poolDifference(pool, m);
    if (!diff) continue;
    out.push(
      finding({
        guard: "pool-live",
        claim: "configuration",
        tier: "contraindicated",
        subject: pool.url,
        expected: diff.expected,
        seen: { url: pool.url, user: pool.user, active: pool.active },
        message: `live pool ${pool.index}${pool.active ? " (ACTIVE: hashing for it now)" : ""}: ${diff.what}`,
      }),
    );
  }
  return out;
}
