/**
 * What applies when an operator has set nothing for a kind: an empty network allowlist (only the approved pools
 * and the control plane are expected destinations) and the built-in malware indicators below, taken from real
 * attacks on Antminer-class boards. There is no built-in pool
 * policy: only an operator knows which pools are approved, and a device gets no policy until one applies to it.
 *
 * The agent matches `hosts-entry` patterns against the WHOLE host name, case-insensitively (`^(?:pattern)$`).
 */
import type { Indicator, NetworkPolicyBody } from "./schemas.js";

export const BUILT_IN_NETWORK: NetworkPolicyBody = { allowedHosts: [] };

/** Well-known public pool domains: an /etc/hosts entry for one of them redirects the hashrate (a pool hijack). */
const POOL_DOMAINS = ["antpool\\.com", "f2pool\\.com", "viabtc\\.com", "slushpool\\.com", "braiins\\.com", "poolin\\.com", "btc\\.com", "binance\\.com", "foundryusapool\\.com"];

/**
 * The board's writable places (Antminer: /config and /nvdata are persistent flash, /tmp and /var tmpfs), where a
 * payload survives or hides; scanned this many levels deep within the per-cycle caps of HW-GUARD-9.
 */
const WRITABLE_PLACES = ["/config", "/nvdata", "/tmp", "/var"];
const WRITABLE_SCAN_DEPTH = 6;

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
    maxDepth: WRITABLE_SCAN_DEPTH,
    severity: "critical",
    description: "an executable file under /tmp, which the firmware never ships: a dropped payload",
  },
  // Markers of real Antminer malware from Hive OS's public virus check, `hive/bin/virus-check` v0.7.4 in
  // github.com/minershive/hiveos-asic (functions check_nightswitcher, check_bitmsfser_info, check_antbuild,
  // check_ntpd_size, check_for_suspicious_files). Each entry says what the marker is; the tiers follow Hive's.
  // Not built in, on purpose: Antbuild v1 "cured" (/lib/modules/bitmain_axi.ko of 7415 bytes, POSIX cksum
  // 1596665532) and the Antbuild kernel (uname -r containing g16220c3), which Hive checks only on an S9 running its
  // own firmware 1.02 (its md5 list names that kernel string as legitimate on a T9 build), and check_system_files'
  // md5 list of stock ntpd/bitmain_axi.ko builds: a changed kernel, module or ntpd is what the measured reference
  // values judge (HW-APPRAISE-1), per model and firmware version, when those paths are in `measure.paths`.
  {
    id: "antbuild-egrep",
    kind: "file-present",
    path: "/usr/bin/egrep",
    severity: "critical",
    description: "/usr/bin/egrep is dropped by Antbuild v2 (Hive OS check_antbuild; the stock busybox has no such file)",
  },
  {
    id: "bitmsfser-hosts",
    kind: "hosts-entry",
    // Hive greps the whole hosts file for the name (grep -F): any host name containing it.
    pattern: ".*bitmsfser\\.info.*",
    severity: "critical",
    description: "/etc/hosts names bitmsfser.info, a domain Antminer malware plants there (Hive OS check_bitmsfser_info)",
  },
  {
    id: "known-bad-names",
    kind: "named-file",
    // /config/bNminer.conf is the Nightswitcher config (Hive OS check_nightswitcher); antminers/antfalg/antfalgZ
    // are the names of the files Hive OS deletes as suspicious. Looked for anywhere in the writable places, so a
    // copy moved to a subdirectory is found too.
    pattern: "bNminer\\.conf|antminers|antfalgZ?",
    paths: WRITABLE_PLACES,
    maxDepth: WRITABLE_SCAN_DEPTH,
    severity: "critical",
    description: "a file named like known Antminer malware (Nightswitcher's bNminer.conf, antminers, antfalg) in a writable place",
  },
  {
    id: "ntpd-oversized",
    kind: "file-size-above",
    path: "/usr/bin/ntpd",
    // Stock ntpd is 358,832 bytes (S9/T9) or 447,336 bytes (S17/T17/Z11/L3+); Hive flags 500,000 and above.
    maxBytes: 499_999,
    // Warning as in Hive OS check_ntpd_size ("very suspicious"): a size alone is no proof; the measured
    // reference values (HW-APPRAISE-1) judge the digest.
    severity: "warning",
    description: "/usr/bin/ntpd is larger than any stock build (0.5 MB or more): a trojaned ntpd (Hive OS check_ntpd_size)",
  },
  // Files Hive OS deletes on sight and warns about when they come back (check_for_suspicious_files): a return
  // after removal means something on the board re-installs them, so that is critical here.
  ...(
    [
      ["/config/.antminers", "a hidden antminers file in /config"],
      ["/usr/antfalg", "an antfalg marker file"],
      ["/usr/antfalgZ", "an antfalgZ marker file"],
      ["/usr/bin/antminers", "an antminers binary"],
      ["/nvdata/.shadow", "a hidden .shadow file in /nvdata, the flash store that survives a firmware reflash"],
    ] as const
  ).map(
    ([path, what]): Indicator => ({
      id: `hive-suspicious${path.replaceAll(/[^a-zA-Z0-9]+/g, "-").toLowerCase()}`,
      kind: "reappearing-file",
      path,
      presentSeverity: "warning",
      severity: "critical",
      description: `${path}: ${what}, one of the files Hive OS's virus check deletes as malware`,
    }),
  ),
  {
    id: "dropped-executable",
    kind: "unexpected-executable",
    paths: WRITABLE_PLACES.filter((p) => p !== "/tmp"),
    maxDepth: WRITABLE_SCAN_DEPTH,
    allowReferenceValues: true,
    severity: "critical",
    description: "an executable in a writable place (/config, /nvdata, /var) that the approved reference values do not name: a dropped payload",
  },
]);
