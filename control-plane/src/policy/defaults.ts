/**
 * What applies when an operator has set nothing for a kind: an empty network allowlist (only the approved pools
 * and the control plane are expected destinations) and the built-in malware indicators below, taken from real
 * attacks on Antminer-class boards (ARCHITECTURE "Who uses it and what they fear"). There is no built-in pool
 * policy: only an operator knows which pools are approved, and a device gets no policy until one applies to it.
 *
 * The agent matches `hosts-entry` patterns against the WHOLE host name, case-insensitively (`^(?:pattern)$`).
 */
import type { Indicator, NetworkPolicyBody } from "./schemas.js";

export const BUILT_IN_NETWORK: NetworkPolicyBody = { allowedHosts: [] };

/** Well-known public pool domains: an /etc/hosts entry for one of them redirects the hashrate (a pool hijack). */
const POOL_DOMAINS = ["antpool\\.com", "f2pool\\.com", "viabtc\\.com", "slushpool\\.com", "braiins\\.com", "poolin\\.com", "btc\\.com", "binance\\.com", "foundryusapool\\.com"];

export const BUILT_IN_INDICATORS: readonly Indicator[] = Object.freeze([
  {
    id: "ld-so-preload",
    kind: "file-present",
    path: "/etc/ld.so.preload",
    severity: "critical",
    description: "/etc/ld.so.preload injects a library into every process; Antbuild-style malware hides itself this way",
  },
  {
    id: "antbuild-binary",
    kind: "file-present",
    path: "/usr/bin/build",
    severity: "critical",
    description: "/usr/bin/build is the Antbuild trojan's binary (trojaned firmware with a hidden fee and remote control)",
  },
  {
    id: "antbuild-reappears",
    kind: "reappearing-file",
    path: "/usr/bin/build",
    severity: "critical",
    description: "the Antbuild binary came back after removal: something on the board re-installs it",
  },
  {
    id: "ld-so-preload-reappears",
    kind: "reappearing-file",
    path: "/etc/ld.so.preload",
    severity: "critical",
    description: "/etc/ld.so.preload came back after removal: something on the board re-installs it",
  },
  {
    id: "antbleed-hosts",
    kind: "hosts-entry",
    pattern: "(?:.+\\.)?minerlink\\.com\\.?",
    // Warning, not critical: the public Antbleed mitigation is exactly such an entry pointing at 127.0.0.1.
    severity: "warning",
    description: "/etc/hosts names the Antbleed backdoor domain (auth.minerlink.com): redirected phone-home that can stop mining",
  },
  {
    id: "pool-domain-hosts",
    kind: "hosts-entry",
    pattern: `(?:.+\\.)?(?:${POOL_DOMAINS.join("|")})\\.?`,
    severity: "critical",
    description: "/etc/hosts redirects a public pool's domain: the miner hashes for whoever that address belongs to",
  },
  {
    id: "executable-in-tmp",
    kind: "unexpected-executable",
    path: "/tmp",
    severity: "critical",
    description: "an executable file in /tmp, which the firmware never ships: a dropped payload",
  },
]);
