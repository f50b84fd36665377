/**
 * Network guards over the kernel socket tables (HW-GUARD-4):
 *  - connection: an ESTABLISHED outbound socket whose remote is not an approved pool, the control plane or an
 *    allowlisted host (a phone-home backdoor of the Antbleed kind: auth.minerlink.com:7000);
 *  - listening-port: a non-loopback listener on a port that is not expected on this board.
 * Outbound means: the local port is not one we listen on (an accepted inbound socket shares the listener's
 * port). Loopback traffic stays on the board and is ignored.
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

export function connectionGuard(sockets: readonly SocketEntry[], approved: readonly ApprovedEndpoint[]): Finding[] {
  const listening = new Set(sockets.filter((s) => s.state === "LISTEN").map((s) => s.localPort));
  const out = new Map<string, Finding>();
  const labels = [...new Set(approved.map((a) => a.label))].sort().slice(0, 32);
  for (const s of sockets) {
    if (s.state !== "ESTABLISHED" || isLoopback(s.remoteIp) || isUnspecified(s.remoteIp)) continue;
    if (listening.has(s.localPort)) continue; // inbound to one of our listeners
    const ok = approved.some((a) => a.ips.includes(s.remoteIp) && (a.port === undefined || a.port === s.remotePort));
    if (ok) continue;
    const remote = endpoint(s.remoteIp, s.remotePort);
    out.set(
      remote,
      finding({
        guard: "connection",
        claim: "runtime-opaque",
        tier: "contraindicated",
        subject: remote,
        expected: labels,
        seen: remote,
        message: `established outbound connection to ${remote}, which is not an approved pool, the control plane or an allowlisted host`,
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
