/**
 * Network facts for the connection and listening-port guards: the kernel's socket tables (/proc/net/tcp and
 * tcp6), IP normalisation, endpoint parsing and a bounded, cached DNS resolver.
 *
 * /proc/net/tcp prints addresses as hex in the kernel's (little-endian on every board we target) byte order:
 * IPv4 `0100007F:0FA0` is 127.0.0.1:4000; IPv6 is four 32-bit words, each byte-reversed. States: 01
 * ESTABLISHED, 02 SYN_SENT, 0A LISTEN (include/net/tcp_states.h).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { ipFamily, normalizeIp } from "../../../shared/net/index.js";

export { ipv6Groups, normalizeIp } from "../../../shared/net/index.js";

export type SocketState = "LISTEN" | "ESTABLISHED" | "SYN_SENT" | "OTHER";

export interface SocketEntry {
  family: 4 | 6;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  state: SocketState;
}

const LINE = /^\s*\d+:\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{2})\b/;

function hexBytesReversed(hex: string): number[] {
  const bytes: number[] = [];
  for (let i = hex.length - 2; i >= 0; i -= 2) bytes.push(parseInt(hex.slice(i, i + 2), 16));
  return bytes;
}

function decodeAddress(hex: string): string {
  if (hex.length === 8) {
    // Little-endian: the lowest byte of the word is the first octet.
    const word = parseInt(hex, 16);
    return `${word & 0xff}.${(word >>> 8) & 0xff}.${(word >>> 16) & 0xff}.${word >>> 24}`;
  }
  const groups: number[] = [];
  for (let w = 0; w < 4; w++) {
    const b = hexBytesReversed(hex.slice(w * 8, w * 8 + 8));
    groups.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
  }
  return normalizeIp(groups.map((g) => g.toString(16)).join(":"));
}

/** Parses /proc/net/tcp or tcp6 text; lines that do not look like a socket are skipped (never throws). */
export function parseProcNetTcp(text: string, maxEntries = 65_536): SocketEntry[] {
  const entries: SocketEntry[] = [];
  for (const line of text.split("\n")) {
    if (entries.length >= maxEntries) break;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, local, localPort, remote, remotePort, state] = m as unknown as [string, string, string, string, string, string];
    if (local.length !== remote.length) continue;
    const code = state.toUpperCase();
    entries.push({
      family: local.length === 8 ? 4 : 6,
      localIp: decodeAddress(local),
      localPort: parseInt(localPort, 16),
      remoteIp: decodeAddress(remote),
      remotePort: parseInt(remotePort, 16),
      state: code === "0A" ? "LISTEN" : code === "01" ? "ESTABLISHED" : code === "02" ? "SYN_SENT" : "OTHER",
    });
  }
  return entries;
}

export function isLoopback(ip: string): boolean {
  const n = normalizeIp(ip);
  return n.startsWith("127.") || n === "0:0:0:0:0:0:0:1";
}

export function isUnspecified(ip: string): boolean {
  const n = normalizeIp(ip);
  return n === "0.0.0.0" || n === "0:0:0:0:0:0:0:0";
}

/** `host`, `host:port`, `[v6]:port`, a bare IPv6, or a URL (stratum+tcp://pool:3333) -> host and optional port. */
export function parseEndpoint(text: string): { host: string; port?: number } | null {
  const t = text.trim();
  if (!t) return null;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) {
    try {
      const url = new URL(t);
      const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
      const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol];
      return host ? { host, ...(port ? { port } : {}) } : null;
    } catch {
      return null;
    }
  }
  if (ipFamily(t) === 6 && !t.startsWith("[")) return { host: t.toLowerCase() };
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(t);
  // Lowercased like every other form (found by fuzzing, HW-FUZZ-1): "[FE80::1]" and "fe80::1" are one host.
  if (bracket) return { host: bracket[1]!.toLowerCase(), ...(bracket[2] ? { port: Number(bracket[2]) } : {}) };
  const hostPort = /^([^:/\s]+)(?::(\d{1,5}))?$/.exec(t);
  if (!hostPort) return null;
  return { host: hostPort[1]!.toLowerCase(), ...(hostPort[2] ? { port: Number(hostPort[2]) } : {}) };
}

const DEFAULT_PORTS: Record<string, number | undefined> = { "http:": 80, "https:": 443, "mqtt:": 1883, "mqtts:": 8883 };

export type LookupAll = (host: string) => Promise<string[]>;

const systemLookup: LookupAll = async (host) => (await dnsLookup(host, { all: true })).map((a) => a.address);

export interface ResolverOptions {
  lookup?: LookupAll;
  timeoutMs?: number;
  /** How long an answer is reused. */
  ttlMs?: number;
  /** How long a failure is remembered before asking again (a dead resolver must not stall every cycle). */
  negativeTtlMs?: number;
  now?: () => number;
  maxEntries?: number;
}

/** Resolves host names to normalised IPs with a timeout and a cache; IP literals pass straight through. */
export class HostResolver {
  private readonly cache = new Map<string, { ips: string[]; until: number }>();
  private readonly lookup: LookupAll;
  private readonly timeoutMs: number;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(opts: ResolverOptions = {}) {
    this.lookup = opts.lookup ?? systemLookup;
    this.timeoutMs = opts.timeoutMs ?? 2_000;
    this.ttlMs = opts.ttlMs ?? 300_000;
    this.negativeTtlMs = opts.negativeTtlMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? 1024;
  }

  async resolve(host: string): Promise<string[]> {
    const bare = host.replace(/^\[|\]$/g, "");
    if (ipFamily(bare) !== 0) return [normalizeIp(bare)];
    const key = bare.toLowerCase();
    const hit = this.cache.get(key);
    const now = this.now();
    if (hit && hit.until > now) return hit.ips;
    let ips: string[] = [];
    let ok = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const answer = await Promise.race([
        this.lookup(key),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("dns timeout")), this.timeoutMs))),
      ]);
      ips = [...new Set(answer.map(normalizeIp))].sort();
      ok = true;
    } catch {
      ips = hit?.ips ?? []; // keep the last good answer through a resolver outage
    } finally {
      clearTimeout(timer);
    }
    if (this.cache.size >= this.maxEntries && !this.cache.has(key)) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { ips, until: now + (ok ? this.ttlMs : this.negativeTtlMs) });
    return ips;
  }
}
