/**
 * Miner API exposure (HW-GUARD-3): Antminer firmware ships `api-allow "A:0/0,W:*"`, so anyone on the LAN can
 * `addpool`/`switchpool` over 4028. Anything wider than localhost is a configuration warning; enforcing mode
 * narrows it to NARROW_API_ALLOW.
 */
import { finding, type Finding } from "./findings.js";
import type { MinerConfigFile } from "./pools.js";

export const NARROW_API_ALLOW = "W:127.0.0.1";

const LOCAL = new Set(["127.0.0.1", "127.0.0.1/32", "::1", "::1/128", "localhost"]);

/** The entries of an api-allow list that admit more than localhost (`[RWA]:addr[/bits]`, comma separated). */
export function wideApiAllowEntries(apiAllow: string): string[] {
  return apiAllow
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "")
    .filter((e) => !LOCAL.has(e.replace(/^[RWAa-z]:/i, "").trim()));
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
