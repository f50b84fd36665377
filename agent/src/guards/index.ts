/**
 * Miner guards (HW-GUARD-1..9): pool hijack, miner API exposure, unknown connections and listeners, malware
 * indicators. Each guard is a pure function from board inputs to findings; GuardRunner reads the inputs
 * through the Platform on a timer and reports changes. createGuardRunner wires it from the agent config.
 */
import type { AgentConfig } from "../config/index.js";
import type { Logger } from "../log/index.js";
import { MinerApiClient, MINER_API_DEFAULTS } from "../miner-api/index.js";
import type { Platform } from "../platform/index.js";
import type { PolicyStore } from "../policy/index.js";
import { platformReader } from "./board.js";
import { IndicatorMemory } from "./indicators.js";
import { KnownGoodPools } from "./known-good.js";
import { ReportedFindings } from "./reported.js";
import { KnownAddresses } from "./addresses.js";
import { HostResolver, type LookupAll } from "./net.js";
import { GuardRunner, type GuardRunnerDeps } from "./runner.js";

export { GuardRunner, MAX_REPORTED_FINDINGS, type GuardCycle, type GuardRunnerDeps, type GuardSettings } from "./runner.js";
export { finding, findingKey, normalizeFindings, type Finding, type GuardName } from "./findings.js";
export { poolConfigGuard, poolLiveGuard, parseMinerConfig, PoolMatcher, POOL_CONFIG_KEYS, type ConfigPool, type MinerConfigFile } from "./pools.js";
export { apiExposureGuard, wideApiAllowEntries, NARROW_API_ALLOW } from "./exposure.js";
export { connectionGuard, listeningGuard, type ApprovedEndpoint } from "./connections.js";
export { indicatorGuard, IndicatorMemory } from "./indicators.js";
export { KnownGoodPools } from "./known-good.js";
export { ReportedFindings } from "./reported.js";
export { KnownAddresses } from "./addresses.js";
export { platformReader, type BoardReader, type BoardStat } from "./board.js";
export { parseProcNetTcp, normalizeIp, ipv6Groups, isLoopback, parseEndpoint, HostResolver, type SocketEntry, type LookupAll } from "./net.js";

/** The miner API endpoint the config names, the stock one on a real Antminer, or none (simulated board without one). */
export function minerApiFor(config: Pick<AgentConfig, "guards" | "platform">): MinerApiClient | null {
  const api = config.guards.minerApi;
  if (api) return new MinerApiClient(api);
  return config.platform.kind === "antminer" ? new MinerApiClient(MINER_API_DEFAULTS) : null;
}

export interface GuardWiring
  extends Pick<GuardRunnerDeps, "policy" | "controlPlaneUrls" | "minerStopped" | "onFindingsChanged" | "onNewFinding" | "onEnforced"> {
  config: Pick<AgentConfig, "guards" | "platform" | "mode" | "stateDir">;
  platform: Platform;
  log: Logger;
  lookup?: LookupAll;
}

/** Builds the runner from the config, or null when `guards.enabled` is false. */
export function createGuardRunner(w: GuardWiring): GuardRunner | null {
  const g = w.config.guards;
  if (!g.enabled) return null;
  return new GuardRunner({
    platform: w.platform,
    board: platformReader(w.platform),
    policy: w.policy,
    minerApi: minerApiFor(w.config),
    resolver: new HostResolver({ timeoutMs: g.dnsTimeoutMs, ttlMs: g.dnsCacheMs, ...(w.lookup ? { lookup: w.lookup } : {}) }),
    memory: IndicatorMemory.inDir(w.config.stateDir),
    knownGood: KnownGoodPools.inDir(w.config.stateDir),
    reported: ReportedFindings.inDir(w.config.stateDir),
    addresses: KnownAddresses.inDir(w.config.stateDir),
    settings: { minerConfigPaths: g.minerConfigPaths, allowedHosts: g.allowedHosts, allowedListenPorts: g.allowedListenPorts },
    mode: () => w.config.mode,
    controlPlaneUrls: w.controlPlaneUrls,
    minerStopped: w.minerStopped,
    onFindingsChanged: w.onFindingsChanged,
    onNewFinding: w.onNewFinding,
    ...(w.onEnforced ? { onEnforced: w.onEnforced } : {}),
    log: w.log.child({ component: "guards" }),
  });
}
