/**
 * Pool URLs, one definition for the control plane (policy validation, control-plane/src/policy/schemas.ts) and
 * the agent (pool guards, agent/src/guards/pools.ts): HW-POLICY-1 and HW-GUARD-1 judge the same thing.
 *
 * Two readings of a pool URL:
 *   - `readMinerPoolUrl`: where the MINER connects for a URL it was given (config file, `addpool`, `pools`
 *     answer), following cgminer's own code, so the guard judges what the miner does rather than what the text
 *     looks like. Never throws: an URL the miner cannot use reads as `port: null` and is approved by no rule.
 *   - `parsePoolRule`: an operator's policy entry, strict (`stratum+tcp://host:3333`, `...:3333#xnsub`,
 *     `...:*` for any port on that host); a problem is returned as a sentence naming it.
 *
 * cgminer rules followed (cgminer.c `setup_url`/`detect_stratum`, util.c `get_proxy`/`extract_sockaddr`; the
 * NiceHash tail as bmminer/sgminer `check_extranonce_option` read it):
 *   1. A proxy prefix `socks5:proxy:1080|url` (also http:, http0:, socks4:, socks4a:, socks5h:) sends the pool
 *      connection through that proxy (get_proxy).
 *   2. Everything from the first `#` is cut off; exactly `#xnsub` turns on mining.extranonce.subscribe.
 *   3. `stratum+tcp://` is recognised case-insensitively (strncasecmp); a URL with no `scheme://` gets
 *      `stratum+tcp://` prepended (setup_url, cgminer >= 3.x stratum-only builds).
 *   4. The host is the text after `//` up to the first `:` (after `]` for `[IPv6]`); the port is at most the next
 *      5 characters, cut at `/` (snprintf(port, 6, ...)); without a `:` the port is "80" (extract_sockaddr).
 *      A path means nothing to a stratum V1 miner; for stratum V2 it is the pool's authority key and counts.
 *   5. Host names are compared case-insensitively and without a final root dot (DNS: RFC 4343, RFC 1034 3.1).
 */
import { ipFamily } from "../net/index.js";

/** Schemes a policy may approve: Stratum V1 over TCP or TLS, Stratum V2 (`stratum2+tcp://host:port/<key>`). */
export const POOL_URL_SCHEMES = ["stratum+tcp", "stratum+ssl", "stratum2+tcp", "stratum2+ssl"] as const;
export type PoolUrlScheme = (typeof POOL_URL_SCHEMES)[number];

/** `stratum+tcp://host:*` in a policy: any port on that host (pools that move miners with client.reconnect). */
export const ANY_PORT = "*";

/** The NiceHash tail: subscribe to extranonce changes (mining.extranonce.subscribe). */
export const XNSUB_TAIL = "#xnsub";

/** Proxy prefixes cgminer's get_proxy knows (util.c `proxynames`). */
const PROXY_PREFIXES = ["http:", "http0:", "socks4:", "socks5:", "socks4a:", "socks5h:"] as const;

/** Scheme spellings that name the same transport. */
const SCHEME_ALIASES: Record<string, string> = { "stratum+tls": "stratum+ssl", "stratum2+tls": "stratum2+ssl" };

/** Where a miner connects for one pool URL (see the module comment for the cgminer rules). */
export interface MinerPoolTarget {
  /** Lowercase scheme; `stratum+tcp` when the URL had none. */
  scheme: string;
  /** Lowercase host without brackets or a final dot, as the miner resolves it ("" when there is none). */
  host: string;
  /** TCP port 1-65535, or null when the miner cannot use what the URL says (the pool is unusable). */
  port: number | null;
  /** Path after host:port without trailing slashes (stratum V2 authority key); "" when none. */
  path: string;
  /** The URL ended in exactly `#xnsub`. */
  xnsub: boolean;
  /** `host:port` of the proxy the connection goes through, when the URL has a proxy prefix. */
  proxy?: string;
}

const PORT_CHARS = 5; // snprintf(port, 6, "%.*s", ...) in extract_sockaddr

function normalizeHost(host: string): string {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return bare.toLowerCase().replace(/\.$/, "");
}

function numericPort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65_535 ? port : null;
}

/**
 * Reads a pool URL the way cgminer does (rules 1-5 above). Never throws.
 * Example: `pool.example.net:3333` -> `{scheme: "stratum+tcp", host: "pool.example.net", port: 3333, ...}`.
 */
export function readMinerPoolUrl(raw: string): MinerPoolTarget {
  let url = raw;
  let proxy: string | undefined;
  for (const prefix of PROXY_PREFIXES) {
    const bar = url.indexOf("|");
    if (url.startsWith(prefix) && bar >= 0) {
      proxy = url.slice(prefix.length, bar);
      url = url.slice(bar + 1);
      break;
    }
  }
  const hash = url.indexOf("#");
  const xnsub = hash >= 0 && url.slice(hash) === XNSUB_TAIL;
  if (hash >= 0) url = url.slice(0, hash);

  let scheme = "stratum+tcp";
  let rest = url;
  const schemed = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (schemed) {
    scheme = schemed[1]!.toLowerCase();
    rest = url.slice(schemed[0].length);
  }
  scheme = SCHEME_ALIASES[scheme] ?? scheme;

  let hostText: string;
  let portText: string | null;
  let afterPort = "";
  const v6 = /^\[[^\]]*\]/.exec(rest);
  const colon = v6 ? (rest[v6[0].length] === ":" ? v6[0].length : -1) : rest.indexOf(":");
  if (colon >= 0) {
    hostText = rest.slice(0, colon);
    const tail = rest.slice(colon + 1);
    const cut = tail.slice(0, PORT_CHARS);
    const slash = cut.indexOf("/");
    portText = slash >= 0 ? cut.slice(0, slash) : cut;
    const pathStart = tail.indexOf("/");
    // Characters past the 5 the miner reads, before any path, are ignored by cgminer ("3333x" -> "3333x" is
    // not a port; "333333" -> "33333"): the port is what the miner would hand to getaddrinfo.
    afterPort = pathStart >= 0 ? tail.slice(pathStart) : "";
  } else {
    hostText = v6 ? v6[0] : rest;
    portText = "80";
  }
  const port = portText === null || (colon >= 0 && portText.length === 0) ? null : numericPort(portText);
  const host = normalizeHost(hostText);
  const path = scheme.startsWith("stratum2") ? afterPort.replace(/\/+$/, "") : "";
  const validHost = host !== "" && !/[\s/@?#]/.test(host);
  return { scheme, host, port: validHost ? port : null, path, xnsub, ...(proxy !== undefined ? { proxy } : {}) };
}

/** One approved pool of a policy, parsed. */
export interface PoolRule {
  /** The policy entry as written. */
  source: string;
  scheme: PoolUrlScheme;
  host: string;
  /** A port, or ANY_PORT: any port on this host. */
  port: number | typeof ANY_PORT;
  path: string;
  xnsub: boolean;
}

const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const POLICY_URL = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[^\]]*\]|[^:/?#@]*)(?::([^/?#]*))?(\/[^?#]*)?(\?[^#]*)?(#.*)?$/;

/**
 * Parses a policy pool URL (HW-POLICY-1): `scheme://host:port[/path][#xnsub]` or `scheme://host:*` (any port).
 * Returns the rule or a problem sentence (the HTTP layer answers 400 naming the field with it).
 */
export function parsePoolRule(value: string): { ok: true; rule: PoolRule } | { ok: false; problem: string } {
  const example = "stratum+tcp://pool.example.com:3333";
  const bad = (problem: string) => ({ ok: false as const, problem });
  if (/@/.test(value.split("#")[0]!.split("/").slice(0, 3).join("/"))) return bad("must not carry a user or password");
  const m = POLICY_URL.exec(value);
  if (!m) return bad(`must be a URL such as ${example}`);
  const [, schemeText, hostText, portText, pathText, query, fragment] = m;
  const scheme = SCHEME_ALIASES[schemeText!.toLowerCase()] ?? schemeText!.toLowerCase();
  if (!(POOL_URL_SCHEMES as readonly string[]).includes(scheme)) return bad(`scheme ${schemeText}: is not one of ${POOL_URL_SCHEMES.join(", ")}`);
  const host = hostText!;
  const hostOk = host.startsWith("[") ? host.endsWith("]") && ipFamily(host) === 6 : ipFamily(host) === 4 || HOSTNAME.test(host);
  if (!host || !hostOk) return bad(`must name a host (got ${JSON.stringify(host)})`);
  if (portText === undefined || portText === "") return bad(`must name a port, or ${ANY_PORT} for any port on this host (stratum has no default port)`);
  let port: number | typeof ANY_PORT;
  if (portText === ANY_PORT) port = ANY_PORT;
  else {
    const n = numericPort(portText);
    if (n === null) return bad(`port ${JSON.stringify(portText)} must be 1-65535 or ${ANY_PORT}`);
    port = n;
  }
  if (query !== undefined) return bad("must not carry a query");
  if (fragment !== undefined && fragment !== XNSUB_TAIL) return bad(`must not carry a fragment other than ${XNSUB_TAIL}`);
  const path = scheme.startsWith("stratum2") ? (pathText ?? "").replace(/\/+$/, "") : "";
  return { ok: true, rule: { source: value, scheme: scheme as PoolUrlScheme, host: normalizeHost(host), port, path, xnsub: fragment === XNSUB_TAIL } };
}

/**
 * True when the miner, given `target`, connects where `rule` approves: same scheme, host and port (any port for
 * `:*`), same authority key path for stratum V2, and no proxy in between (a proxy sees and can redirect the
 * shares). The `#xnsub` flag changes how the miner talks to the pool, not which pool: it is not compared.
 */
export function poolRuleMatches(rule: PoolRule, target: MinerPoolTarget): boolean {
  if (target.proxy !== undefined || target.port === null) return false;
  if (rule.scheme !== target.scheme || rule.host !== target.host) return false;
  if (rule.port !== ANY_PORT && rule.port !== target.port) return false;
  return !rule.scheme.startsWith("stratum2") || rule.path === target.path;
}

/** A policy's `allowedUrls` as rules; entries that do not parse approve nothing (the plane refuses them anyway). */
export class PoolAllowList {
  readonly rules: PoolRule[];

  constructor(allowedUrls: readonly string[]) {
    this.rules = allowedUrls.flatMap((url) => {
      const parsed = parsePoolRule(url.trim());
      return parsed.ok ? [parsed.rule] : [];
    });
  }

  /** The rule approving this miner URL, or undefined. */
  match(minerUrl: string): PoolRule | undefined {
    const target = readMinerPoolUrl(minerUrl);
    return this.rules.find((rule) => poolRuleMatches(rule, target));
  }

  allows(minerUrl: string): boolean {
    return this.match(minerUrl) !== undefined;
  }
}

/** Destination of a rule for the connection guard: host, and the port unless the rule allows any. */
export function poolRuleEndpoint(rule: PoolRule): { host: string; port?: number } {
  return { host: rule.host, ...(rule.port !== ANY_PORT ? { port: rule.port } : {}) };
}
