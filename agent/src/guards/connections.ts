/**
 * Network guards over the kernel socket tables (HW-GUARD-4):
 *  - connection: an ESTABLISHED (or SYN_SENT: still trying) outbound socket whose remote is not an approved
 *    pool, the control plane or an allowlisted host (a phone-home backdoor of the Antbleed kind:
 *    auth.minerlink.com:7000);
 *  - listening-port: a non-loopback listener on a port that is not expected on this board.
 * Inbound means: the socket's local (family, IP, port) is one we listen on, a wildcard listener (0.0.0.0, ::)
 * covering any local IP of its family. Matching on the port alone would let a backdoor listen on
 * 127.0.0.1:P and connect out from <LAN IP>:P unseen. Loopback traffic stays on the board and is ignored.
 */
import { finding, type Finding } from "./findings.js";
import { isLoopback, isUnspecified, type SocketEntry } from "./net.js";

/** One approved destination: its resolved IPs and, when the policy named one, its port. */
export interface ApprovedEndpoint {
  label: string;
  ips: readonly string[];
  port?: number;
}

function endpoint(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The local endpoints we accept connections on: "family ip port", with "*" for a wildcard listener. */
function listenerKeys(sockets: readonly SocketEntry[]): Set<string> {
  const keys = new Set<string>();
  for (const s of sockets) {
    if (s.state !== "LISTEN") continue;
    keys.add(`${s.family} ${isUnspecified(s.localIp) ? "*" : s.localIp} ${s.localPort}`);
  }
  return keys;
}

function isInbound(s: SocketEntry, listeners: ReadonlySet<string>): boolean {
  // A socket accepted by a dual-stack [::] listener shows in tcp6 with its IPv4-mapped address (normalised to
  // dotted IPv4 by normalizeIp), so the family is the table's, as for the listener.
  return listeners.has(`${s.family} ${s.localIp} ${s.localPort}`) || listeners.has(`${s.family} * ${s.localPort}`);
}

export function connectionGuard(sockets: readonly SocketEntry[], approved: readonly ApprovedEndpoint[]): Finding[] {
  const listeners = listenerKeys(sockets);
  const out = new Map<string, Finding>();
  const labels = [...new Set(approved.map((a) => a.label))].sort().slice(0, 32);
  for (const s of sockets) {
    if (s.state !== "ESTABLISHED" && s.state !== "SYN_SENT") continue;
    if (isLoopback(s.remoteIp) || isUnspecified(s.remoteIp)) continue;
    // SYN_SENT is always ours: a listener's half-open sockets are SYN_RECV and live in its queue.
    if (s.state === "ESTABLISHED" && isInbound(s, listeners)) continue;
    const ok = approved.some((a) => a.ips.includes(s.remoteIp) && (a.port === undefined || a.port === s.remotePort));
    if (ok) continue;
    const remote = endpoint(s.remoteIp, s.remotePort);
    // Identity (HW-GUARD-2) is the remote: a connection attempt that then succeeds is the same finding.
    if (out.has(remote) && s.state === "SYN_SENT") continue;
    out.set(
      remote,
      finding({
        guard: "connection",
        claim: "runtime-opaque",
        tier: "contraindicated",
        subject: remote,
        expected: labels,
        seen: remote,
        message:
          s.state === "SYN_SENT"
            ? `outbound connection attempt (SYN_SENT) to ${remote}, which is not an approved pool, the control plane or an allowlisted host`
            : `established outbound connection to ${remote}, which is not an approved pool, the control plane or an allowlisted host`,
      }),
    );
  }
  return [...out.values()];
}

export function listeningGuard(sockets: readonly SocketEntry[], allowedPorts: readonly number[]): Finding[] {
  const allowed = new Set(allowedPorts);
  const out = new Map<string, Finding>();
  for (const s of sockets) {
    if (s.state !== "LISTEN" || isLoopback(s.localIp) || allowed.has(s.localPort)) continue;
    const local = endpoint(s.localIp, s.localPort);
    out.set(
      local,
      finding({
        guard: "listening-port",
        claim: "runtime-opaque",
        tier: "warning",
        subject: local,
        expected: [...allowed].sort((a, b) => a - b),
        seen: s.localPort,
        message: `unexpected listener on ${local}`,
      }),
    );
  }
  return [...out.values()];
}
