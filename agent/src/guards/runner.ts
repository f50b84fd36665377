/**
 * GuardRunner: one guard cycle every `guards.intervalMs`, inputs read through the Platform, findings diffed
 * against the previous cycle (HW-GUARD-2: a finding is reported once until it changes):
 *   - set of findings changed  -> onFindingsChanged (the agent sends evidence with reason "guard")
 *   - each NEW finding         -> onNewFinding      (the agent sends a signed guard-alert event)
 * In enforcing mode the cycle then restores what it can (approved pools, narrow api-allow); the next cycle
 * confirms it and the evidence shows the finding gone.
 *
 * HW-APPRAISE-3 (agent side): every cycle also says, per input, whether it was observed (`observations`, sent
 * in every evidence). Quarantine does not stop the observing: a stopped miner is still asked (a miner that
 * still answers with an active pool or a non-zero hashrate is a contraindicated `miner-stop` finding: the stop
 * failed), and a miner that really stopped (API refused or silent) is "miner-api not observed", never clean.
 *
 * A cycle never throws and never stops the timer: a failing input is a finding (miner-api) or is skipped with
 * a log line; a failing state write (ENOSPC, read-only /config) or callback is logged once per reason and the
 * guards keep running (HW-GUARD-7). Cycles never overlap; runNow() while one runs waits for it and runs once
 * more (a fresh policy must be judged fresh).
 */
import { isIP } from "node:net";
import { poolRuleEndpoint, readMinerPoolUrl } from "../../../shared/pools/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import type { Observations, telemetrySchema } from "../../../shared/index.js";
import type { z } from "zod";
type Telemetry = z.infer<typeof telemetrySchema>;
import type { Logger } from "../log/index.js";
import { MinerApiError, type MinerApiClient, type MinerPool } from "../miner-api/index.js";
import type { Platform } from "../platform/index.js";
import type { GuardPolicy, PolicyStore } from "../policy/index.js";
import type { BoardReader } from "./board.js";
import { connectionGuard, listeningGuard, type ApprovedEndpoint } from "./connections.js";
import { apiExposureGuard, NARROW_API_ALLOW } from "./exposure.js";
import { finding, findingKey, normalizeFindings, type Finding } from "./findings.js";
import { IndicatorMemory, indicatorGuard } from "./indicators.js";
import type { KnownGoodPools } from "./known-good.js";
import { KnownAddresses } from "./addresses.js";
import { ReportedFindings } from "./reported.js";
import { parseEndpoint, parseProcNetTcp, type HostResolver, type SocketEntry } from "./net.js";
import { parseMinerConfig, POOL_CONFIG_KEYS, PoolMatcher, poolConfigGuard, poolLiveGuard, type ConfigPool, type MinerConfigFile } from "./pools.js";

export const MAX_REPORTED_FINDINGS = 256;
const CONFIG_MAX_BYTES = 256 * 1024;
const PROC_NET_MAX_BYTES = 4 * 1024 * 1024;

export interface GuardSettings {
  /** Device paths of the miner's JSON config files; missing ones are skipped. */
  minerConfigPaths: readonly string[];
  /** Hosts or host:port always allowed as outbound destinations, on top of the policy's. */
  allowedHosts: readonly string[];
  /** Non-loopback listening ports expected on this board. */
  allowedListenPorts: readonly number[];
}

export interface GuardRunnerDeps {
  platform: Pick<Platform, "resolve" | "miner">;
  board: BoardReader;
  policy: PolicyStore;
  minerApi: MinerApiClient | null;
  resolver: HostResolver;
  memory: IndicatorMemory;
  knownGood: KnownGoodPools;
  /** Every address approved names resolved to (default: in memory only): rotating pool DNS is no backdoor. */
  addresses?: KnownAddresses;
  /** Findings already alerted, persisted so a restart does not re-alert them (default: in memory only). */
  reported?: ReportedFindings;
  settings: GuardSettings;
  mode: () => "monitor" | "enforcing";
  /** URLs of the control plane (HTTP and MQTT): always approved destinations. */
  controlPlaneUrls: () => readonly string[];
  /**
   * True while the agent holds the board in quarantine: the miner was stopped on purpose. It is still queried
   * (HW-APPRAISE-3): an answer showing an active pool or hashrate is a `miner-stop` finding, silence is
   * "miner-api not observed"; enforcement never touches a stopped miner.
   */
  minerStopped: () => boolean;
  onFindingsChanged: (findings: Finding[]) => void;
  onNewFinding: (finding: Finding) => void;
  /** Enforcement actions taken (for an event and the log). */
  onEnforced?: (actions: string[]) => void;
  log: Logger;
}

export interface GuardCycle {
  findings: Finding[];
  added: Finding[];
  removed: Finding[];
  telemetry: Telemetry | undefined;
  /** What this cycle could observe (HW-APPRAISE-3); carried in every evidence with the findings. */
  observations: Observations;
  enforced: string[];
  /** Set when the cycle failed as a whole (logged; the previous findings stand). */
  error?: string;
}

type Observation = NonNullable<Observations["miner-api"]>;

/** Every input "not observed" for one reason (a cycle that failed as a whole). */
function notObserved(reason: string): Observations {
  const o = { observed: false, reason: reason.slice(0, 256) };
  return { "miner-api": o, sockets: o, config: o, indicators: o };
}

/** Which inputs were observed, without the free-text reasons (those may vary cycle to cycle). */
function observedKey(o: Observations): string {
  return JSON.stringify([o["miner-api"]?.observed, o.sockets?.observed, o.config?.observed, o.indicators?.observed]);
}

/** Bounded: a misbehaving board cannot grow the set of remembered failure reasons without limit. */
const MAX_LOGGED_REASONS = 64;

export class GuardRunner {
  private previous: Finding[] | null = null;
  private lastTelemetry: Telemetry | undefined;
  private lastObservations: Observations | null = null;
  private running: Promise<GuardCycle> | null = null;
  private again = false;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly reported: ReportedFindings;
  private readonly addresses: KnownAddresses;
  private readonly loggedReasons = new Set<string>();

  constructor(private readonly deps: GuardRunnerDeps) {
    this.reported = deps.reported ?? new ReportedFindings(null);
    this.addresses = deps.addresses ?? new KnownAddresses(null);
  }

  /** HW-GUARD-7: one error line per distinct failure, not one per cycle (a full flash would flood the log). */
  private failed(where: string, error: unknown): void {
    const code = (error as NodeJS.ErrnoException | null)?.code;
    const reason = `${where}: ${code ?? (error instanceof Error ? error.message : String(error)).slice(0, 200)}`;
    if (this.loggedReasons.has(reason)) return;
    if (this.loggedReasons.size >= MAX_LOGGED_REASONS) return;
    this.loggedReasons.add(reason);
    this.deps.log.error({ where, err: error instanceof Error ? error.message : String(error), ...(code ? { code } : {}) }, `guards: ${where} failed; guards keep running`);
  }

  /** Findings of the last completed cycle (null before the first): every evidence carries them. */
  get findings(): Finding[] | null {
    return this.previous === null ? null : structuredClone(this.previous);
  }

  /** Observations of the last completed cycle (null before the first): every evidence carries them. */
  get observations(): Observations | null {
    return this.lastObservations === null ? null : structuredClone(this.lastObservations);
  }

  get telemetry(): Telemetry | undefined {
    return this.lastTelemetry;
  }

  start(intervalMs: number): void {
    if (this.timer) return;
    void this.runNow();
    this.timer = setInterval(() => void this.runNow(), intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Runs a cycle now; if one is running, runs one more right after it. Never rejects (HW-GUARD-7). */
  runNow(): Promise<GuardCycle> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let cycle: GuardCycle;
      try {
        do {
          this.again = false;
          try {
            cycle = await this.cycle();
          } catch (error) {
            this.failed("cycle", error);
            const findings = structuredClone(this.previous ?? []);
            // A failed cycle saw nothing: its inputs are not observed (HW-APPRAISE-3), the previous findings stand.
            const observations = notObserved(`guard cycle failed: ${error instanceof Error ? error.message : String(error)}`);
            cycle = { findings, added: [], removed: [], telemetry: this.lastTelemetry, observations, enforced: [], error: error instanceof Error ? error.message : String(error) };
          }
        } while (this.again);
      } finally {
        this.running = null;
      }
      return cycle;
    })();
    return this.running;
  }

  private async cycle(): Promise<GuardCycle> {
    const { deps } = this;
    const policy = deps.policy.policy;
    const found: Finding[] = [];

    const configs = this.readConfigs();
    if (policy) found.push(...poolConfigGuard(configs, policy));
    found.push(...apiExposureGuard(configs));

    const live = await this.queryMiner(policy);
    found.push(...live.findings);

    const { sockets, read: socketsRead } = this.readSockets();
    const observations: Observations = {
      "miner-api": live.observation,
      sockets: socketsRead ? { observed: true } : { observed: false, reason: "no /proc/net/tcp or /proc/net/tcp6" },
      config: policy === null ? { observed: false, reason: "no signed policy yet" } : configs.length > 0 ? { observed: true } : { observed: false, reason: "no miner config file found" },
      indicators: policy === null ? { observed: false, reason: "no signed policy yet" } : { observed: true },
    };
    if (sockets.length > 0) {
      const approved = await this.approvedEndpoints(policy, configs, live.pools);
      found.push(...connectionGuard(sockets, approved));
      found.push(...listeningGuard(sockets, deps.settings.allowedListenPorts));
    }
    if (policy) found.push(...indicatorGuard(policy.indicators, deps.board, deps.memory, (where, error) => this.failed(where, error)));
    if (policy) {
      try {
        this.learnKnownGood(configs, policy);
      } catch (error) {
        this.failed("known-good pools", error);
      }
    }

    let findings = normalizeFindings(found);
    if (findings.length > MAX_REPORTED_FINDINGS) {
      deps.log.error({ findings: findings.length, max: MAX_REPORTED_FINDINGS }, "more findings than evidence can carry; reporting the contraindications first");
      findings = [...findings.filter((f) => f.tier === "contraindicated"), ...findings.filter((f) => f.tier !== "contraindicated")].slice(0, MAX_REPORTED_FINDINGS);
    }
    const first = this.previous === null;
    const now = new Set(findings.map(findingKey));
    const removed = (this.previous ?? []).filter((f) => !now.has(findingKey(f)));
    // HW-GUARD-2: "new" means not alerted yet, remembered across restarts (reported-findings.json).
    const fresh = findings.filter((f) => !this.reported.has(findingKey(f)));
    const before = new Set((this.previous ?? []).map(findingKey));
    // The first cycle's findings go out as evidence too: the startup evidence may have left before them.
    // HW-APPRAISE-3: an input going blind (or seeing again) is news for the plane as much as a finding is.
    const observedChanged = this.lastObservations !== null && observedKey(this.lastObservations) !== observedKey(observations);
    const changed = first ? findings.length > 0 : removed.length > 0 || findings.some((f) => !before.has(findingKey(f))) || observedChanged;
    this.previous = findings;
    this.lastTelemetry = live.telemetry;
    this.lastObservations = observations;
    const alerted = findings.filter((f) => this.reported.has(findingKey(f))).map(findingKey);
    const added: Finding[] = [];
    for (const f of fresh) {
      deps.log.warn({ guard: f.guard, subject: f.subject, tier: f.tier }, f.message);
      try {
        deps.onNewFinding(f);
        added.push(f);
        alerted.push(findingKey(f));
      } catch (error) {
        this.failed("guard alert", error); // not marked reported: the next cycle alerts it again
      }
    }
    this.reported.replace(alerted);
    try {
      this.reported.flush();
    } catch (error) {
      this.failed("reported findings", error);
    }
    deps.log.debug({ findings: findings.length, added: added.length, removed: removed.length }, "guard cycle");
    if (changed) {
      try {
        deps.onFindingsChanged(structuredClone(findings));
      } catch (error) {
        this.failed("guard evidence", error);
      }
    }

    const enforced = deps.mode() === "enforcing" ? await this.enforce(policy, configs, findings, live.pools) : [];
    if (enforced.length > 0) {
      deps.log.warn({ actions: enforced }, "guards restored approved settings");
      deps.onEnforced?.(enforced);
    }
    return { findings, added, removed, telemetry: live.telemetry, observations, enforced };
  }

  private readConfigs(): MinerConfigFile[] {
    const out: MinerConfigFile[] = [];
    for (const path of this.deps.settings.minerConfigPaths) {
      const text = this.deps.board.readText(path, CONFIG_MAX_BYTES);
      if (text !== null) out.push(parseMinerConfig(path, text));
    }
    return out;
  }

  private readSockets(): { sockets: SocketEntry[]; read: boolean } {
    const out: SocketEntry[] = [];
    let read = false;
    for (const path of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const text = this.deps.board.readText(path, PROC_NET_MAX_BYTES);
      if (text !== null) {
        read = true;
        out.push(...parseProcNetTcp(text));
      }
    }
    return { sockets: out, read };
  }

  /**
   * summary + stats + pools (one joined request, miner-api `summaryStatsPools`). HW-MINER-1: answers are read as cgminer writes them (miner-api/answer.ts) and every
   * pool in a readable answer is judged. A failing answer is one miner-api warning per failure kind (once,
   * HW-GUARD-2), makes the live pools "not observed" (a warning, never clean, except under quarantine where an
   * unreachable miner is the stop working), keeps a contraindicated live-pool finding seen before, and no
   * enforcement acts on it. HW-APPRAISE-3: the miner is asked under quarantine too. There an unreachable miner
   * is the stop working (no warning, but "not observed"), and a miner still answering with an active pool or
   * hashrate is a contraindicated `miner-stop` finding; its live pools are judged as always.
   */
  private async queryMiner(policy: GuardPolicy | null): Promise<{ findings: Finding[]; pools: MinerPool[] | null; telemetry: Telemetry | undefined; observation: Observation }> {
    const api = this.deps.minerApi;
    if (!api) return { findings: [], pools: null, telemetry: undefined, observation: { observed: false, reason: "no miner API configured" } };
    const stopped = this.deps.minerStopped();
    const errors = new Map<string, MinerApiError>();
    const take = <T>(result: T | MinerApiError): T | null => {
      if (!(result instanceof MinerApiError)) return result;
      if (!errors.has(result.kind)) errors.set(result.kind, result);
      return null;
    };
    // One joined request per cycle (separate calls where the miner refuses joins); the readings are judged in the
    // order separate calls were made: stats only after a good summary, pools unless the miner is unreachable.
    const readings = await api.summaryStatsPools();
    const summary = take(readings.summary);
    const stats = summary ? take(readings.stats) : null;
    const pools = summary || errors.get("unreachable") === undefined ? take(readings.pools) : null;
    const findings: Finding[] = [];
    for (const [kind, error] of errors) {
      if (stopped && kind === "unreachable") continue; // HW-APPRAISE-3: the stop worked; "not observed" says so below
      findings.push(
        finding({ guard: "miner-api", claim: "runtime-opaque", tier: "warning", subject: api.endpoint, expected: "well-formed answers", seen: kind, message: error.message }),
      );
    }
    if (policy) {
      if (pools) findings.push(...poolLiveGuard(pools, policy));
      else {
        // HW-MINER-1: live pools that could not be read are "not observed", never clean: a warning on the
        // configuration claim, and a contraindicated live pool seen before stays until an answer shows it gone.
        const cause = errors.values().next().value;
        // Under quarantine a silent miner is the stop working: the observation says "not observed", and the
        // plane holds the quarantine's cause (HW-APPRAISE-3); a warning here would only be noise.
        const stopWorked = stopped && [...errors.keys()].every((kind) => kind === "unreachable");
        if (!stopWorked) findings.push(
          finding({
            guard: "pool-live",
            claim: "configuration",
            tier: "warning",
            subject: `${api.endpoint}#pools`,
            expected: "a pools answer the guard can judge",
            seen: "not observed",
            message: `live pools not observed${cause ? `: ${cause.message}` : ""}; the last verdict on them cannot stand as clean`,
          }),
        );
        findings.push(...(this.previous ?? []).filter((f) => f.guard === "pool-live" && f.tier === "contraindicated"));
      }
    }
    const active = pools?.find((p) => p.active);
    const hashing = (summary?.hashrateGhs ?? 0) > 0 || (summary?.hashrateAvgGhs ?? 0) > 0;
    if (stopped && (active || hashing)) {
      // HW-APPRAISE-3: the board is quarantined, yet the miner still mines: the stop failed.
      findings.push(
        finding({
          guard: "miner-stop",
          claim: "runtime-opaque",
          tier: "contraindicated",
          subject: api.endpoint,
          expected: "miner stopped (quarantined)",
          seen: { ...(active ? { activePool: active.url.slice(0, 512) } : {}), ...(summary?.hashrateGhs !== undefined ? { hashrateGhs: summary.hashrateGhs } : {}) },
          message: `quarantined, but the miner still answers${active ? ` with active pool ${active.url.slice(0, 200)}` : ""}${hashing ? ` at ${summary?.hashrateGhs ?? summary?.hashrateAvgGhs} GH/s` : ""}: the stop failed`,
        }),
      );
    }
    const firstError = [...errors.values()][0];
    const observation: Observation = pools
      ? { observed: true }
      : { observed: false, reason: `${stopped ? "miner stopped (quarantined); " : ""}${firstError ? `${firstError.kind}: ${firstError.message}` : "no pools answer"}`.slice(0, 256) };
    const telemetry: Telemetry = {
      ...(summary?.hashrateGhs !== undefined ? { hashrateGhs: summary.hashrateGhs } : {}),
      ...(summary?.hashrateAvgGhs !== undefined ? { hashrateAvgGhs: summary.hashrateAvgGhs } : {}),
      ...(summary?.accepted !== undefined ? { accepted: summary.accepted } : {}),
      ...(summary?.rejected !== undefined ? { rejected: summary.rejected } : {}),
      ...(stats && stats.temperaturesC.length ? { temperaturesC: stats.temperaturesC } : {}),
      ...(stats && stats.fanRpm.length ? { fanRpm: stats.fanRpm } : {}),
      ...(active ? { activePool: active.url.slice(0, 512) } : {}),
    };
    return { findings, pools, telemetry: Object.keys(telemetry).length > 0 ? telemetry : undefined, observation };
  }

  /** Approved destinations: policy pools (or, without a policy, the configured ones), the plane, allowlists. */
  private async approvedEndpoints(policy: GuardPolicy | null, configs: readonly MinerConfigFile[], livePools: MinerPool[] | null): Promise<ApprovedEndpoint[]> {
    const names: string[] = [...this.deps.controlPlaneUrls(), ...this.deps.settings.allowedHosts];
    // Pool URLs are read with the shared pool rules (a `:*` rule approves every port on its host).
    const endpoints: { host: string; port?: number }[] = [];
    if (policy) {
      names.push(...policy.network.allowedHosts);
      endpoints.push(...PoolMatcher.of(policy).urls.rules.map(poolRuleEndpoint));
    } else {
      // No policy yet: the board's own pools are the best notion of "expected" we have.
      const urls = [...configs.flatMap((c) => (c.ok ? c.pools.map((p) => p.url) : [])), ...(livePools ?? []).map((p) => p.url)];
      for (const url of urls) {
        const target = readMinerPoolUrl(url);
        if (target.port !== null && target.proxy === undefined) endpoints.push({ host: target.host, port: target.port });
      }
    }
    for (const name of names) {
      const ep = parseEndpoint(name);
      if (ep) endpoints.push(ep);
    }
    const out: ApprovedEndpoint[] = [];
    const seen = new Set<string>();
    for (const ep of endpoints) {
      const key = `${ep.host}|${ep.port ?? ""}`;
      if (seen.has(key)) continue;
      seen.add(key);
      let ips = await this.deps.resolver.resolve(ep.host);
      if (!isIP(ep.host)) {
        try {
          ips = this.addresses.remember(ep.host, ips);
        } catch (error) {
          this.failed("known addresses", error);
          ips = [...new Set([...this.addresses.get(ep.host), ...ips])];
        }
      }
      out.push({ label: ep.port ? `${ep.host}:${ep.port}` : ep.host, ips, ...(ep.port ? { port: ep.port } : {}) });
    }
    return out;
  }

  private learnKnownGood(configs: readonly MinerConfigFile[], policy: GuardPolicy): void {
    const m = PoolMatcher.of(policy);
    const clean = configs.find((c): c is Extract<MinerConfigFile, { ok: true }> => c.ok && c.pools.length > 0 && c.pools.every((p) => m.allowed(p)));
    if (clean) this.deps.knownGood.record(clean.pools);
  }

  /** Pools to put back: the last clean list still allowed by the current policy, else the allowed subset. */
  private restorePools(policy: GuardPolicy, config: Extract<MinerConfigFile, { ok: true }>): ConfigPool[] {
    const m = PoolMatcher.of(policy);
    const known = this.deps.knownGood.get().filter((p) => m.allowed(p));
    return known.length > 0 ? known : config.pools.filter((p) => m.allowed(p));
  }

  /** HW-GUARD-6 (enforcing mode only): restore approved pools and narrow api-allow. */
  private async enforce(policy: GuardPolicy | null, configs: readonly MinerConfigFile[], findings: readonly Finding[], livePools: MinerPool[] | null): Promise<string[]> {
    const actions: string[] = [];
    const { deps } = this;
    let restartMiner = false;
    for (const config of configs) {
      if (!config.ok) continue;
      const poolBad = policy !== null && findings.some((f) => f.guard === "pool-config" && f.tier === "contraindicated" && f.subject.startsWith(`${config.path}#`));
      const apiWide = findings.some((f) => f.guard === "api-exposure" && f.subject === `${config.path}#api-allow`);
      if (!poolBad && !apiWide) continue;
      const next: Record<string, unknown> = { ...config.raw };
      if (poolBad) {
        const pools = this.restorePools(policy!, config);
        if (pools.length === 0) {
          deps.log.error({ path: config.path }, "no approved pool is known: cannot restore pools");
        } else {
          // HW-GUARD-6: every key the miner takes pools from (top-level url/user/pass, arrays, quota, include)
          // goes; one clean `pools` array is what it reads after the restart.
          for (const key of POOL_CONFIG_KEYS) delete next[key];
          next["pools"] = pools;
          actions.push(`${config.path}: restored ${pools.length} approved pool(s)`);
        }
      }
      if (apiWide) {
        // cgminer keeps the LAST api-allow it reads and reads pool objects after the top level: a copy inside a
        // pool object would win over the narrowed top-level value (HW-GUARD-6).
        if (Array.isArray(next["pools"])) {
          next["pools"] = (next["pools"] as unknown[]).map((p) => {
            if (typeof p !== "object" || p === null || Array.isArray(p)) return p;
            const { ["api-allow"]: _dropped, ...rest } = p as Record<string, unknown>;
            return rest;
          });
        }
        next["api-allow"] = NARROW_API_ALLOW;
        actions.push(`${config.path}: api-allow narrowed to ${NARROW_API_ALLOW}`);
      }
      if (JSON.stringify(next) === JSON.stringify(config.raw)) continue;
      try {
        writeFileAtomicSync(deps.platform.resolve(config.path), `${JSON.stringify(next, null, 2)}\n`, 0o644);
        restartMiner = true;
      } catch (error) {
        deps.log.error({ path: config.path, err: String(error) }, "cannot rewrite the miner config");
      }
    }
    if (restartMiner && !deps.minerStopped()) {
      // A restarted miner re-reads its config: the live pools come back from the file, no API calls needed.
      try {
        await deps.platform.miner?.restart();
        actions.push("miner restarted");
      } catch (error) {
        deps.log.error({ err: String(error) }, "miner restart failed");
      }
      return actions;
    }
    if (policy && livePools && deps.minerApi && !deps.minerStopped() && findings.some((f) => f.guard === "pool-live")) {
      actions.push(...(await this.restoreLivePools(policy, configs, livePools, deps.minerApi)));
    }
    return actions;
  }

  /** addpool an approved pool if none is listed, switchpool to it, removepool the rest (highest index first). */
  private async restoreLivePools(policy: GuardPolicy, configs: readonly MinerConfigFile[], livePools: MinerPool[], api: MinerApiClient): Promise<string[]> {
    const m = PoolMatcher.of(policy);
    const actions: string[] = [];
    try {
      let pools = livePools;
      let good = pools.find((p) => m.allowed(p));
      if (!good) {
        const config = configs.find((c): c is Extract<MinerConfigFile, { ok: true }> => c.ok);
        const candidate = (config ? this.restorePools(policy, config) : this.deps.knownGood.get().filter((p) => m.allowed(p)))[0];
        if (!candidate) {
          this.deps.log.error("no approved pool is known: cannot restore the live pools");
          return actions;
        }
        await api.addpool(candidate.url, candidate.user, candidate.pass);
        actions.push(`addpool ${candidate.url}`);
        pools = await api.pools();
        good = pools.find((p) => m.allowed(p));
        if (!good) return actions;
      }
      if (!good.active) {
        await api.switchpool(good.index);
        actions.push(`switchpool ${good.index} (${good.url})`);
      }
      pools = await api.pools();
      for (const p of [...pools].sort((a, b) => b.index - a.index)) {
        if (m.allowed(p) || p.active) continue;
        await api.removepool(p.index);
        actions.push(`removepool ${p.index} (${p.url})`);
      }
    } catch (error) {
      this.deps.log.error({ err: String(error) }, "live pool restore failed; retried next cycle");
    }
    return actions;
  }
}
