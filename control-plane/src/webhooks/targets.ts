/**
 * HW-HOOK-3: the SSRF guard for webhook targets. A target is `http:` or `https:` with a host, no user info and no
 * fragment; a loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10) or unspecified (0.0.0.0, ::)
 * address, literal or resolved, IPv4-mapped IPv6 included, is refused unless `allowLoopback` is set. The check
 * runs at registration and again at every delivery on the address actually connected to (`guardedLookup` is the
 * socket's DNS lookup), so a name re-pointed to 127.0.0.1 after registration is still refused.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList } from "node:net";
import { ValidationError } from "../../../shared/errors/index.js";
import { normalizeIp, parseIp, unmapped } from "../../../shared/net/index.js";

const blocked = new BlockList();
blocked.addSubnet("127.0.0.0", 8, "ipv4");
blocked.addSubnet("169.254.0.0", 16, "ipv4");
blocked.addSubnet("0.0.0.0", 32, "ipv4");
blocked.addAddress("::1", "ipv6");
blocked.addAddress("::", "ipv6");
blocked.addSubnet("fe80::", 10, "ipv6");

/**
 * True for loopback, link-local and unspecified addresses (HW-HOOK-3), in any spelling: brackets, a zone id,
 * compressed or expanded IPv6, and IPv4-mapped IPv6 (`::ffff:127.0.0.1` is 127.0.0.1). Not an IP literal: false.
 */
export function isRefusedAddress(address: string): boolean {
  const ip = parseIp(address);
  if (ip === null) return false;
  return blocked.check(normalizeIp(address), unmapped(ip).kind());
}

export class WebhookTargetError extends ValidationError {}

/** Parses and checks a target URL's form and literal address; throws WebhookTargetError naming the problem. */
export function checkTargetUrl(raw: string, allowLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookTargetError(`url: not a URL: ${JSON.stringify(raw.slice(0, 200))}`, "url");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new WebhookTargetError(`url: scheme ${url.protocol} is not http: or https:`, "url");
  if (url.username !== "" || url.password !== "") throw new WebhookTargetError("url: user info is not allowed (the secret signs deliveries)", "url");
  if (url.hash !== "") throw new WebhookTargetError("url: a fragment is not allowed", "url");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (!allowLoopback && (host === "localhost" || host.endsWith(".localhost") || isRefusedAddress(host))) {
    // HW-HOOK-3
    throw new WebhookTargetError(`url: ${url.hostname} is a loopback or link-local target (set HASHWARD_WEBHOOK_ALLOW_LOOPBACK=true to allow)`, "url");
  }
  return url;
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `lookup` for node:http(s) that refuses resolved loopback/link-local addresses (HW-HOOK-3) unless allowed. */
export function guardedLookup(allowLoopback: boolean) {
  return (hostname: string, options: object, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "");
      const list = addresses as LookupAddress[];
      const refused = allowLoopback ? undefined : list.find((a) => isRefusedAddress(a.address));
      if (refused) {
        const denied = Object.assign(new Error(`${hostname} resolves to ${refused.address}, a loopback or link-local address (HW-HOOK-3)`), { code: "EHOOKTARGET" });
        return callback(denied, "");
      }
      if ((options as { all?: boolean }).all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), "");
      callback(null, first.address, first.family);
    });
  };
}
