/**
 * IP address literals, parsed by ipaddr.js (the parser express's proxy-addr uses) instead of hand-written
 * splitting: IPv4 as four dotted decimals, IPv6 in every spelling (compressed `::`, an embedded IPv4 tail, a zone
 * id `%eth0`, upper case), with or without brackets. One spelling per address, so the kernel's socket tables,
 * DNS answers and operator input compare equal: dotted IPv4 (also for an IPv4-mapped IPv6 address), IPv6 as
 * eight lowercase groups without compression or leading zeros, zone id dropped.
 */
import ipaddr from "ipaddr.js";

/** A parsed IP address (ipaddr.js). */
export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;

/** A dotted IPv4 address in its one spelling: four decimals 0..255 without leading zeros. */
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** `[addr]` -> `addr`; anything else unchanged. */
function unbracketed(text: string): string {
  return text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
}

/**
 * The address `text` spells (brackets allowed, an IPv6 zone id allowed and kept in `zoneId`), or null when it is
 * not an IP literal. IPv4 (alone or as an IPv6 tail) must be four decimal parts without leading zeros: `127.1`,
 * `0x7f.0.0.1` or `010.0.0.1` are not addresses here (as for node:net isIP; cgminer's own parser is separate).
 */
export function parseIp(text: string): IpAddress | null {
  const bare = unbracketed(text);
  if (ipaddr.IPv4.isValidFourPartDecimal(bare)) return ipaddr.IPv4.parse(bare);
  if (!ipaddr.IPv6.isValid(bare)) return null;
  // An embedded IPv4 tail must be four plain decimals too: ipaddr.js would read `::ffff:010.0.0.1` as octal.
  const tail = bare.replace(/%.*$/, "").split(":").at(-1) ?? "";
  if (tail.includes(".") && !ipaddr.IPv4.isValidFourPartDecimal(tail)) return null;
  return ipaddr.IPv6.parse(bare);
}

/** 4 or 6 for an IP literal as parseIp reads it (brackets and zone ids allowed), else 0. */
export function ipFamily(text: string): 0 | 4 | 6 {
  const ip = parseIp(text);
  return ip === null ? 0 : ip.kind() === "ipv4" ? 4 : 6;
}

/** The eight 16-bit groups of an IPv6 address (any spelling, zone id ignored). Throws TypeError when it is not one. */
export function ipv6Groups(text: string): number[] {
  const ip = parseIp(text);
  if (ip === null || ip.kind() !== "ipv6") throw new TypeError(`not an IPv6 address: ${text}`);
  return [...(ip as ipaddr.IPv6).parts];
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`), else the address itself. */
export function unmapped(ip: IpAddress): IpAddress {
  return ip.kind() === "ipv6" && (ip as ipaddr.IPv6).isIPv4MappedAddress() ? (ip as ipaddr.IPv6).toIPv4Address() : ip;
}

/** The one spelling of an address (see the file comment); text that is not an IP literal comes back lowercased, brackets removed. */
export function normalizeIp(text: string): string {
  // Already the one spelling (dotted IPv4 without leading zeros, as /proc/net/tcp decodes to): ipaddr.js would
  // give it back unchanged. The guards normalise every socket's addresses every cycle.
  if (CANONICAL_IPV4.test(text)) return text;
  const ip = parseIp(text);
  if (ip === null) return unbracketed(text).toLowerCase();
  const plain = unmapped(ip);
  if (plain.kind() === "ipv4") return plain.toString();
  return (plain as ipaddr.IPv6).parts.map((group) => group.toString(16)).join(":");
}
