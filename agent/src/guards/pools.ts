/**
 * Pool hijack guards (rewritten pool URLs in the config, or addpool/switchpool
 * over 4028). Both the config file and the live `pools` answer are compared with the signed policy
 * (HW-GUARD-1): a pool URL not in `pools.allowedUrls`, or a worker name matching none of the anchored
 * `pools.workerPatterns`, is a configuration contraindication naming the exact difference.
 */
import { PoolAllowList } from "../../../shared/pools/index.js";
import { jsonDepthWithin } from "../../../shared/protocol/index.js";
import type { MinerPool } from "../miner-api/index.js";
import type { GuardPolicy } from "../policy/index.js";
import { finding, type Finding } from "./findings.js";

export interface ConfigPool {
  url: string;
  user: string;
  pass: string;
}

/** A bmminer/cgminer JSON config file (`/config/bmminer.conf`, `/config/cgminer.conf`), read as the miner reads it. */
export type MinerConfigFile =
  | {
      path: string;
      ok: true;
      raw: Record<string, unknown>;
      /** The pools in the miner's order (pool 0 first), whatever keys they came from. */
      pools: ConfigPool[];
      /** Where each pool's URL came from (`pools[0].url`, `url[1]`, `quota`), parallel to `pools`. */
      poolOrigins: string[];
      /** Every `api-allow` value the miner would see, joined with "," (absent when none). */
      apiAllow?: string;
      apiListen: boolean;
      apiNetwork: boolean;
      /** Forms the guard cannot judge (an `include`d file, a value of the wrong type): each one a sentence. */
      problems: string[];
    }
  | { path: string; ok: false; error: string };

/**
 * Keys of cgminer's opt_config_table that decide pools and API exposure, in the TABLE's order (parse_config walks
 * the table, not the file): `--pools` is the table's last entry, so top-level url/user/pass come first. Each of
 * these options also reads an array (every string element is applied, every object element is parsed as a
 * config of its own: that is how the `pools` array works) and a number (printed, cgminer >= 4.10).
 */
const CONFIG_KEYS = ["api-allow", "api-listen", "api-network", "pass", "quota", "url", "user", "userpass", "pools"] as const;
/** JSON_MAX_DEPTH in cgminer's load_config: nested configs deeper than this are not followed. */
const MAX_CONFIG_DEPTH = 10;
/** Keys that give the miner pools; enforcing mode replaces all of them by one clean `pools` array. */
export const POOL_CONFIG_KEYS = ["pools", "url", "user", "pass", "userpass", "quota", "include"] as const;

interface Collected {
  urls: { value: string; from: string }[];
  users: string[];
  passes: string[];
  apiAllow: string[];
  apiListen: boolean;
  apiNetwork: boolean;
  problems: string[];
}

/** cgminer's parse_config over one JSON object (recursion = the object elements of an array-valued option). */
function walkConfig(obj: Record<string, unknown>, where: string, depth: number, c: Collected): void {
  if (depth > MAX_CONFIG_DEPTH) {
    c.problems.push(`${where || "(root)"}: nested deeper than ${MAX_CONFIG_DEPTH} levels`);
    return;
  }
  const at = (key: string) => (where ? `${where}.${key}` : key);
  const apply = (key: (typeof CONFIG_KEYS)[number], value: string, from: string) => {
    switch (key) {
      case "api-allow":
        c.apiAllow.push(value);
        break;
      case "url":
        c.urls.push({ value, from });
        break;
      case "quota": {
        // set_quota: "N;URL"; the URL is a pool like --url's.
        const semi = value.indexOf(";");
        if (semi <= 0 || semi === value.length - 1) c.problems.push(`${from}: ${JSON.stringify(value.slice(0, 100))} is not quota;URL`);
        else c.urls.push({ value: value.slice(semi + 1), from });
        break;
      }
      case "user":
        c.users.push(value);
        break;
      case "pass":
        c.passes.push(value);
        break;
      case "userpass": {
        // set_userpass: "user:pass" fills the next user and the next pass.
        const colon = value.indexOf(":");
        c.users.push(colon >= 0 ? value.slice(0, colon) : value);
        c.passes.push(colon >= 0 ? value.slice(colon + 1) : "");
        break;
      }
      case "pools":
        c.problems.push(`${from}: a string where cgminer expects pool objects`);
        break;
      default:
        break;
    }
  };
  for (const key of CONFIG_KEYS) {
    const value = obj[key];
    if (value === undefined) continue;
    if (key === "api-listen" || key === "api-network") {
      // OPT_NOARG: only JSON true turns it on; "true"/1 are counted as on too (a fork may accept them).
      const on = value === true || value === "true" || value === 1;
      if (key === "api-listen") c.apiListen ||= on;
      else c.apiNetwork ||= on;
      continue;
    }
    if (typeof value === "string") apply(key, value, at(key));
    else if (typeof value === "number") apply(key, String(value), at(key));
    else if (Array.isArray(value)) {
      value.forEach((element, i) => {
        const from = `${at(key)}[${i}]`;
        if (typeof element === "string") apply(key, element, from);
        else if (typeof element === "number") apply(key, String(element), from);
        else if (typeof element === "object" && element !== null && !Array.isArray(element)) walkConfig(element as Record<string, unknown>, from, depth + 1, c);
        else c.problems.push(`${from}: a ${element === null ? "null" : Array.isArray(element) ? "nested array" : typeof element} the guard cannot read`);
      });
    } else c.problems.push(`${at(key)}: a ${value === null ? "null" : typeof value} where cgminer expects a string or an array`);
  }
  // JSON_INCLUDE_CONF: cgminer loads another config file from here; its pools are not read by the guard.
  if (obj["include"] !== undefined) c.problems.push(`${at("include")}: includes ${describeIncluded(obj["include"])}, which the guard does not read`);
}

/**
 * Reads a miner config the way cgminer's parse_config does (HW-GUARD-1, HW-GUARD-3): pools come from the
 * `pools` array AND the top-level (or nested) `url`/`user`/`pass`/`userpass`/`quota` keys, each a string or an
 * array; URLs, users and passes are paired by their order (set_url/set_user/set_pass keep separate counters).
 * Never throws: text that is not a JSON object is `{ok: false}`.
 */
/**
 * The `include` value for a problem sentence, never throwing: String() throws on an object whose `toString` is not
 * a function (`{"include":{"toString":""}}`, found by fuzzing, HW-FUZZ-1), which made parseMinerConfig throw.
 */
function describeIncluded(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value.slice(0, 200)) : Array.isArray(value) ? "a list" : value === null || typeof value !== "object" ? JSON.stringify(value) : "an object";
}

/** jansson's JSON_PARSER_MAX_DEPTH: deeper files are unreadable to cgminer/bmminer and to this guard. */
export const MAX_CONFIG_FILE_DEPTH = 2048;

export function parseMinerConfig(path: string, text: string): MinerConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { path, ok: false, error: `not valid JSON: ${(error as Error).message.slice(0, 200)}` };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { path, ok: false, error: "not a JSON object" };
  // HW-GUARD-1 / HW-GUARD-6 (found by fuzzing, HW-FUZZ-1): JSON.parse takes a file nested 50,000 deep, but writing
  // it back (enforcement restores pools by rewriting the file) overflows the stack, so a deep junk key would
  // shield a hijacked pool from restoration. cgminer's own parser (jansson) refuses more than 2048 levels too.
  if (!jsonDepthWithin(raw, MAX_CONFIG_FILE_DEPTH)) return { path, ok: false, error: `nested deeper than ${MAX_CONFIG_FILE_DEPTH} levels (cgminer cannot read it either)` };
  const obj = raw as Record<string, unknown>;
  const c: Collected = { urls: [], users: [], passes: [], apiAllow: [], apiListen: false, apiNetwork: false, problems: [] };
  walkConfig(obj, "", 0, c);
  const count = Math.max(c.urls.length, c.users.length, c.passes.length);
  const pools: ConfigPool[] = [];
  const poolOrigins: string[] = [];
  for (let i = 0; i < count; i++) {
    pools.push({ url: c.urls[i]?.value ?? "", user: c.users[i] ?? "", pass: c.passes[i] ?? "" });
    poolOrigins.push(c.urls[i]?.from ?? "(no url)");
  }
  return {
    path,
    ok: true,
    raw: obj,
    pools,
    poolOrigins,
    ...(c.apiAllow.length > 0 ? { apiAllow: c.apiAllow.join(",") } : {}),
    apiListen: c.apiListen,
    apiNetwork: c.apiNetwork,
    problems: c.problems,
  };
}

/** One matcher per policy object: a policy is immutable once applied (PolicyStore replaces it whole). */
const matchers = new WeakMap<GuardPolicy, PoolMatcher>();

/** Pool URLs judged as the miner reads them (shared/pools: scheme default, host case, #xnsub, any-port rules). */
export class PoolMatcher {
  /** The matcher of `policy`, built once per policy object (the guards judge pools several times per cycle). */
  static of(policy: GuardPolicy): PoolMatcher {
    let m = matchers.get(policy);
    if (!m) {
      m = new PoolMatcher(policy);
      matchers.set(policy, m);
    }
    return m;
  }


  readonly urls: PoolAllowList;
  private readonly workers: RegExp[];

  constructor(readonly policy: GuardPolicy) {
    this.urls = new PoolAllowList(policy.pools.allowedUrls);
    // Anchored: "farm\\..*" must match the whole worker name, not a substring of "evil.farm.x".
    this.workers = policy.pools.workerPatterns.map((p) => new RegExp(`^(?:${p})$`));
  }

  urlAllowed(url: string): boolean {
    return this.urls.allows(url);
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

/**
 * HW-GUARD-1 on the config files. An unreadable config, or a form the guard cannot judge (an included file, a
 * value of the wrong type), is a warning: we cannot vouch for it, and it never reads as clean.
 */
export function poolConfigGuard(configs: readonly MinerConfigFile[], policy: GuardPolicy): Finding[] {
  const m = PoolMatcher.of(policy);
  const out: Finding[] = [];
  for (const config of configs) {
    if (!config.ok) {
      out.push(finding({ guard: "pool-config", claim: "configuration", tier: "warning", subject: config.path, expected: "a JSON miner config", seen: "unparseable", message: `${config.path}: ${config.error}` }));
      continue;
    }
    if (config.problems.length > 0) {
      out.push(
        finding({
          guard: "pool-config",
          claim: "configuration",
          tier: "warning",
          subject: `${config.path}#unjudged`,
          expected: "only forms the guard reads",
          seen: config.problems.slice(0, 16),
          message: `${config.path}: cannot judge ${config.problems.slice(0, 3).join("; ")}`,
        }),
      );
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
          message: `${config.path} pool ${i} (${config.poolOrigins[i] ?? "?"}): ${diff.what}`,
        }),
      );
    });
  }
  return out;
}

/** HW-GUARD-1 on the live `pools` answer: any listed pool that is not approved (the active one says so). */
export function poolLiveGuard(pools: readonly MinerPool[], policy: GuardPolicy): Finding[] {
  const m = PoolMatcher.of(policy);
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
