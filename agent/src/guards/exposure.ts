/**
 * Miner API exposure (HW-GUARD-3): Antminer firmware ships `api-allow "A:0/0,W:*"`, so anyone on the LAN can
 * `addpool`/`switchpool` over 4028. Anything wider than localhost is a configuration warning; enforcing mode
 * narrows it to NARROW_API_ALLOW. `api-allow` is read in every form the miner accepts (a string, an array of
 * strings, inside a pool object: parseMinerConfig); cgminer keeps the last value it reads (opt_set_charp), the
 * guard judges every one so a fork that keeps another is covered too.
 */
import { finding, type Finding } from "./findings.js";
import { ipFamily, ipv6Groups } from "../../../shared/net/index.js";
import type { MinerConfigFile } from "./pools.js";

export const NARROW_API_ALLOW = "W:127.0.0.1";

/**
 * inet_aton's forms, as cgminer's api-allow parser (inet_addr) reads them: a.b.c.d, a.b.c, a.b, a, each part
 * decimal, octal (leading 0) or hex (0x). Returns the address as an unsigned 32-bit number, or null.
 */
function inetAton(text: string): number | null {
  const parts = text.split(".");
  if (parts.length < 1 || parts.length > 4) return null;
  const nums: number[] = [];
  for (const part of parts) {
    const n = /^0x[0-9a-f]+$/i.test(part) ? parseInt(part, 16) : /^0[0-7]*$/.test(part) ? parseInt(part, 8) : /^[1-9]\d*$/.test(part) ? Number(part) : NaN;
    if (!Number.isFinite(n)) return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * (4 - nums.length))) return null;
  return nums.reduce((acc, n, i) => acc + n * 2 ** (8 * (3 - i)), 0) + last;
}

/**
 * True when an api-allow entry (`[group:]address[/bits]`, cgminer api.c setup_ipaccess) admits loopback
 * addresses only: an IPv4 range inside 127.0.0.0/8 (W:127.0.0.1/8 included), ::1/128, or ::ffff:127.0.0.0/104.
 * Anything else — 0/0, a LAN range, `*`, a name — counts as wider than localhost (a fork may accept it).
 */
export function isLoopbackOnly(entry: string): boolean {
  const body = entry.trim().replace(/^[A-Za-z]:/, "");
  if (body === "localhost") return true;
  const slash = body.indexOf("/");
  const address = slash >= 0 ? body.slice(0, slash) : body;
  const bitsText = slash >= 0 ? body.slice(slash + 1) : null;
  if (bitsText !== null && !/^\d{1,3}$/.test(bitsText)) return false;
  if (ipFamily(address) === 6) {
    const groups = ipv6Groups(address);
    const bits = bitsText === null ? 128 : Number(bitsText);
    if (bits > 128) return false;
    if (groups.slice(0, 7).every((g) => g === 0) && groups[7] === 1) return bits >= 128;
    const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff && groups[6]! >> 8 === 127;
    return mapped && bits >= 104;
  }
  const ip = inetAton(address);
  if (ip === null) return false;
  const bits = bitsText === null ? 32 : Number(bitsText);
  if (bits > 32) return false;
  // Every address the entry admits shares the first `bits` bits with `ip`: all of them are in 127/8 only when
  // the prefix is at least 8 bits long and its first octet is 127.
  return bits >= 8 && Math.floor(ip / 2 ** 24) === 127;
}

/** The entries of an api-allow list that admit more than localhost (`[RWA]:addr[/bits]`, comma separated). */
export function wideApiAllowEntries(apiAllow: string): string[] {
  return apiAllow
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "")
    .filter((e) => !isLoopbackOnly(e));
}

export function apiExposureGuard(configs: readonly MinerConfigFile[]): Finding[] {
  const out: Finding[] = [];
  for (const config of configs) {
    if (!config.ok || !config.apiListen) continue; // the API is off: nothing to expose
    const wide = config.apiAllow !== undefined ? wideApiAllowEntries(config.apiAllow) : [];
    // cgminer: api-network without api-allow listens for, and admits, any address.
    if (wide.length === 0 && !(config.apiAllow === undefined && config.apiNetwork)) continue;
    out.push(
      finding({
        guard: "api-exposure",
        claim: "configuration",
        tier: "warning",
        subject: `${config.path}#api-allow`,
        expected: NARROW_API_ALLOW,
        seen: config.apiAllow ?? "api-network without api-allow",
        message: `miner API admits ${wide.length ? wide.join(", ") : "any address"}: anyone who can reach port 4028 can switch pools`,
      }),
    );
  }
  return out;
}
