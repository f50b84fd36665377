/**
 * The running agent: wires identity, state, platform, enrollment, MQTT session, commands, attestation,
 * outbox, heartbeats and watches. Each concern lives in its own folder; this file only orders them.
 *
 * Start order matters:
 *  1. identity and state (refuse a foreign or corrupt state);
 *  2. if the state says quarantined, re-apply platform.quarantine() BEFORE anything else: quarantine
 *     survives restart and only a signed release lifts it;
 *  3. the plane's TLS identity (HW-PIN-2: CA pinned before anything is sent), enrollment (pins the plane's
 *     command key in the same authenticated exchange, HW-PIN-1), then MQTT over TLS with that CA.
 */
import { existsSync, readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { ConfigError, PROTOCOL_VERSION, signObject, type Challenge, type DeviceEventDetail, type Evidence, type Heartbeat, type Hello } from "../../../shared/index.js";
import { Attester, watchPaths, type EvidenceReason, type WatchHandle } from "../attest/index.js";
import { CommandHandler } from "../commands/index.js";
import { EXIT } from "../cli/index.js";
import type { AgentConfig } from "../config/index.js";
import { enroll, EnrollmentRevokedError } from "../enroll/index.js";
import { loadOrCreateIdentity, type DeviceIdentity } from "../identity/index.js";
import type { Logger } from "../log/index.js";
import { createEvent, Outbox, type EventKind, type EventSeverity, type OutboxMessage } from "../outbox/index.js";
import { createPlatform, type Platform } from "../platform/index.js";
import { createGuardRunner, type Finding, type GuardRunner, type LookupAll } from "../guards/index.js";
import { PolicyStore } from "../policy/index.js";
import { MqttSession } from "../session/index.js";
import {
  establishPlaneTrust,
  loadOrCreateClientKey,
  PlaneIdentityError,
  sameEndpoint,
  storeClientCertificate,
  storedClientCertificate,
  type PlaneTrust,
} from "../plane-trust/index.js";
import { StateStore } from "../state/index.js";
import { initTrustedRoot, testCheckpoint, TufClient, UpdateEngine } from "../update/index.js";
import { AGENT_VERSION } from "../version/index.js";

export interface AgentDeps {
  log: Logger;
  platform?: Platform;
  fetch?: typeof fetch;
  now?: () => number;
  /** Overrides process.execPath for the "@agent" measurement. */
  execPath?: string;
  agentVersion?: string;
  /** DNS for the guards (tests resolve pool names without a network). */
  lookup?: LookupAll;
}

/** How often state and outbox entries a full state dir refused are written again (HW-FAULT-10), ms. */
export const PENDING_WRITE_RETRY_MS = 2000;

export { EXIT } from "../cli/index.js";

export function readBootId(): string {
  try {
    const id = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    if (id) return id.slice(0, 128);
  } catch {
    // not Linux: a per-process id still tells restarts apart
  }
  return `proc-${randomUUID()}`;
}

function readMqttCa(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError(`mqttCaFile: cannot read ${file}: ${(cause as Error).message}`, "mqttCaFile", { cause });
  }
}

/**
 * HW-GUARD-7 at process level: a stray rejected promise (a timer's `void` call that slipped a catch) is logged
 * and the agent keeps running; quarantine and the guards must not die of a bug in a side path. An uncaught
 * exception leaves the process in an unknown state: it is logged as fatal and the process exits 1, so the init
 * script's supervisor loop restarts it (and the agent re-applies a persisted quarantine first, HW-Q-1).
 */
export function installProcessHandlers(
  log: Logger,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- process.on's own listener type
  proc: { on(event: "unhandledRejection" | "uncaughtException", listener: (...args: any[]) => void): unknown; exit(code: number): void } = process,
): void {
  proc.on("unhandledRejection", (reason: unknown) => {
    log.error({ err: reason instanceof Error ? (reason.stack ?? reason.message) : String(reason) }, "unhandled promise rejection; the agent keeps running");
  });
  proc.on("uncaughtException", (error: Error) => {
    log.fatal({ err: error.stack ?? error.message }, "uncaught exception; exiting for the supervisor to restart the agent");
    proc.exit(EXIT.failure);
  });
}

/**
 * The destinations the agent itself talks to, approved for the connection guard: the plane's HTTP and MQTT
 * URLs and the TUF metadata and targets URLs (which may name a CDN rather than the plane). Without the latter
 * the agent's own update download was reported as an unknown connection and could auto-quarantine the board.
 */
export function agentDestinations(config: Pick<AgentConfig, "controlPlaneUrl" | "update">, mqttUrl: string | null): string[] {
  return [...new Set([config.controlPlaneUrl, ...(mqttUrl ? [mqttUrl] : []), config.update.metadataUrl, config.update.targetsUrl])];
}

export function controlPlaneHosts(urls: readonly (string | null | undefined)[]): string[] {
  const hosts = new Set<string>();
  for (const url of urls) if (url && URL.canParse(url)) hosts.add(new URL(url).hostname);
  return [...hosts].sort();
}

export class Agent {
  readonly identity: DeviceIdentity;
  readonly state: StateStore;
  readonly platform: Platform;
  readonly outbox: Outbox;
  readonly attester: Attester;
  readonly commands: CommandHandler;
  readonly policy: PolicyStore;
  /** Signed updates (agent/src/update): TUF-verified install into the inactive slot, commit or roll back. */
  readonly updates: UpdateEngine;
  /** Miner guards (null when guards.enabled is false). */
  readonly guards: GuardRunner | null;
  session: MqttSession | null = null;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly startedAtMs: number;
  private readonly bootId = readBootId();
  private readonly agentVersion: string;
  private readonly abort = new AbortController();
  private timers: ReturnType<typeof setInterval>[] = [];
  private watcher: WatchHandle | null = null;
  private evidenceQueue: Promise<unknown> = Promise.resolve();
  private mqttUrl: string | null;
  private exitResolve!: (code: number) => void;
  /** Resolves with the process exit code when the agent stops. */
  readonly exited: Promise<number>;

  constructor(
    readonly config: AgentConfig,
    deps: AgentDeps,
  ) {
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.startedAtMs = this.now();
    this.agentVersion = deps.agentVersion ?? AGENT_VERSION;
    this.exited = new Promise((resolve) => (this.exitResolve = resolve));
    this.identity = loadOrCreateIdentity(config.keyFile);
    if (this.identity.created) this.log.info({ deviceId: this.identity.deviceId, keyFile: config.keyFile }, "created device key");
    const stateLost = !this.identity.created && !existsSync(join(config.stateDir, "state.json"));
    this.state = StateStore.open(config.stateDir, this.identity.deviceId, {
      // HW-FAULT-10: say what cannot be persisted, to the log and (through the outbox, in memory if need be) the plane.
      notPersisted: ({ file, err, code }) => {
        this.log.error({ file, err, code }, "state not persisted: the state dir is full or unwritable");
        // Before the outbox exists (a write in this constructor) the log line is all there is.
        if (this.outbox) this.event("platform-error", "critical", { reason: `state not persisted: cannot write ${file}: ${code ?? err}`.slice(0, 1024) });
      },
      persisted: ({ file, pendingForMs }) => this.log.warn({ file, pendingForMs }, "state persisted again"),
    });
    if (stateLost) {
      // HW-EVD-2: the plane sees evidence seqs start again from a known key and holds the verdict until a challenge.
      this.log.warn({ deviceId: this.identity.deviceId, stateDir: config.stateDir }, "state.json was missing for an existing device key: sequence numbers start again; the plane holds the verdict until this agent answers its challenge");
    }
    if (config.commandPublicKey) {
      try {
        this.state.pinCommandKey(config.commandPublicKey);
      } catch (cause) {
        throw new ConfigError(`commandPublicKey: ${config.commandPublicKey} differs from the key pinned in ${config.stateDir}; a pinned key is never replaced`, "commandPublicKey", { cause });
      }
    }
    this.mqttUrl = config.mqttUrl ?? this.state.snapshot.mqttUrl;
    this.platform = deps.platform ?? createPlatform(config);
    const { deviceId, keyPair } = this.identity;
    this.outbox = new Outbox({
      dir: join(config.stateDir, "outbox"),
      maxEvents: config.outboxMaxEvents,
      log: this.log,
      overflowEvent: (dropped) => createEvent(deviceId, keyPair.privateKey, "outbox-overflow", "warning", { dropped, maxEvents: config.outboxMaxEvents }, this.now()),
    });
    this.policy = PolicyStore.open(config.stateDir);
    this.guards = createGuardRunner({
      config,
      platform: this.platform,
      policy: this.policy,
      log: this.log,
      controlPlaneUrls: () => agentDestinations(config, this.mqttUrl),
      minerStopped: () => this.state.containment === "quarantined",
      // HW-GUARD-2: evidence when the set of findings changes, one signed guard-alert per new finding.
      onFindingsChanged: () => void this.sendEvidence("guard", null),
      onNewFinding: (f) => this.guardAlert(f),
      onEnforced: (actions) => this.event("guard-alert", "warning", { guard: "enforcement", subject: "board", tier: "warning", message: "restored approved settings", actions }),
      ...(deps.lookup ? { lookup: deps.lookup } : {}),
    });
    this.updates = new UpdateEngine({
      stateDir: config.stateDir,
      model: config.model,
      configuredFirmwareVersion: config.firmwareVersion,
      platform: this.platform,
      // Bound late: the plane's CA is known only after establishPlaneTrust in start().
      tuf: this.tufClient(deps.fetch ?? ((input, init) => (this.trust?.fetch ?? fetch)(input, init))),
      maxImageBytes: config.update.maxImageBytes,
      progress: (severity, detail) => this.event("update-progress", severity, detail),
      attest: () => {
        if (this.session) this.watch(); // running: /firmware now names the new slot
        return this.sendEvidence("update", null);
      },
      log: this.log,
      now: this.now,
      // The test build only: freeze the install at a checkpoint so the test can SIGKILL the agent there.
      checkpoint: testCheckpoint(config.stateDir, process.env),
    });
    const runningFirmware = () => this.firmwareVersion;
    this.attester = new Attester({
      deviceId,
      privateKey: keyPair.privateKey,
      state: this.state,
      platform: this.platform,
      measurePaths: config.measure.paths,
      includeAgentBinary: config.measure.includeAgentBinary,
      model: config.model,
      // The running firmware changes with a committed update: read at every evidence.
      get firmwareVersion() {
        return runningFirmware();
      },
      agentVersion: this.agentVersion,
      bootId: this.bootId,
      now: this.now,
      log: this.log,
      ...(deps.execPath ? { execPath: deps.execPath } : {}),
      findings: () => this.guards?.findings ?? null,
      observations: () => this.guards?.observations ?? null,
    });
    this.commands = new CommandHandler({
      deviceId,
      privateKey: keyPair.privateKey,
      state: this.state,
      platform: this.platform,
      controlPlaneHosts: () => this.quarantineHosts(),
      send: (entry) => this.send(entry),
      attestNow: (nonce) => this.sendEvidence(nonce ? "challenge" : "timer", nonce),
      now: this.now,
      log: this.log,
      policy: { store: this.policy, now: this.now, onApplied: () => void this.guards?.runNow() },
      updater: this.updates,
    });
    this.fetchImpl = deps.fetch;
  }

  private readonly fetchImpl: typeof fetch | undefined;
  /** The plane's trust anchor (agent/src/plane-trust); set in start() before any request. */
  private trust: PlaneTrust | null = null;

  /**
   * HW-PIN-2: retries until the plane proves the pinned identity. A server that does not gets nothing: each
   * failed attempt is an error line naming its address. Returns null when stopped meanwhile.
   */
  private async planeTrust(log: Logger): Promise<PlaneTrust | null> {
    for (;;) {
      if (this.abort.signal.aborted) return null;
      try {
        return await establishPlaneTrust({ config: this.config, log, signal: this.abort.signal });
      } catch (error) {
        if (error instanceof ConfigError) throw error;
        if (error instanceof PlaneIdentityError) {
          log.error({ address: error.address, err: error.message }, "control plane did not prove the pinned identity; nothing sent to it");
        } else {
          log.warn({ controlPlaneUrl: this.config.controlPlaneUrl, err: error instanceof Error ? error.message : String(error) }, "control plane CA not reachable; retrying");
        }
      }
      const waited = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), this.config.enrollPollMs);
        this.abort.signal.addEventListener("abort", () => (clearTimeout(timer), resolve(false)), { once: true });
      });
      if (!waited) return null;
    }
  }

  get deviceId(): string {
    return this.identity.deviceId;
  }

  /** The committed running firmware version (the configured one until an update commits). */
  get firmwareVersion(): string {
    return this.updates.firmwareVersion;
  }

  /** HW-UPD-1: the TUF root is provisioned (update.trustedRootFile), copied once into <stateDir>/tuf. */
  private tufClient(fetchImpl: typeof fetch | undefined): TufClient | null {
    const { update, stateDir } = this.config;
    if (!update.trustedRootFile) return null;
    const metadataDir = join(stateDir, "tuf");
    if (!existsSync(join(metadataDir, "root.json"))) {
      try {
        initTrustedRoot(metadataDir, update.trustedRootFile);
      } catch (cause) {
        throw new ConfigError(`update.trustedRootFile: cannot use ${update.trustedRootFile}: ${(cause as Error).message}`, "update.trustedRootFile", { cause });
      }
    }
    return new TufClient({
      metadataDir,
      metadataUrl: update.metadataUrl,
      targetsUrl: update.targetsUrl,
      metadataTimeoutMs: update.metadataTimeoutMs,
      targetTimeoutMs: update.targetTimeoutMs,
      stallTimeoutMs: update.stallTimeoutMs,
      downloadAttempts: update.downloadAttempts,
      onDownloadRetry: ({ url, attempt, attempts, reason, retryInMs }) =>
        this.log.warn({ url, attempt, attempts, reason, retryInMs }, "update download interrupted; starting it again"),
      userAgent: `hashward-agent/${this.agentVersion}`,
      ...(fetchImpl ? { fetch: fetchImpl } : {}),
    });
  }

  private quarantineHosts(): string[] {
    return controlPlaneHosts([this.config.controlPlaneUrl, this.mqttUrl]);
  }

  /** Runs until stop() or a terminal condition; `exited` resolves with the exit code. */
  async start(): Promise<void> {
    const log = this.log.child({ deviceId: this.deviceId });
    // HW-FAULT-10: what a full state dir refused lands once space returns, network or not.
    this.timers.push(
      setInterval(() => {
        this.state.retryPending();
        this.outbox.persistPending();
      }, PENDING_WRITE_RETRY_MS),
    );
    if (this.state.containment === "quarantined") {
      // HW-Q-1: quarantine survives restart: re-apply before enrollment, network or anything else.
      log.warn("state is quarantined: re-applying quarantine before anything else");
      await this.platform.quarantine({ controlPlaneHosts: this.quarantineHosts() });
    }
    if (this.config.mode === "enforcing" && this.platform.disableVendorUpgrade) {
      // HW-UPD-6: enforcing mode closes the vendor upgrade path for good; firmware arrives only signed.
      await this.platform.disableVendorUpgrade();
    }
    // HW-UPD-5: finish or roll back an install a crash interrupted, before the network.
    await this.updates.resume();
    this.event("agent-started", "info", { agentVersion: this.agentVersion, bootId: this.bootId, containment: this.state.containment });

    this.trust = await this.planeTrust(log);
    if (!this.trust) return;
    const clientKey = this.config.mqttClientCertificate ? loadOrCreateClientKey(this.config.stateDir) : null;
    let response;
    try {
      response = await enroll(
        {
          controlPlaneUrl: this.config.controlPlaneUrl,
          identity: this.identity,
          model: this.config.model,
          firmwareVersion: this.firmwareVersion,
          agentVersion: this.agentVersion,
          enrollmentToken: this.config.enrollmentToken,
          tlsPublicKey: clientKey?.publicKeyPem,
          state: this.state,
          pollMs: this.config.enrollPollMs,
          log,
          signal: this.abort.signal,
          now: this.now,
          fetch: this.fetchImpl ?? this.trust.fetch,
        },
        { alreadyAccepted: this.state.snapshot.enrollment === "accepted" && this.state.commandPublicKey !== null },
      );
    } catch (error) {
      if (error instanceof EnrollmentRevokedError) {
        log.fatal({ err: error.message }, "device revoked by the control plane; exiting");
        await this.stop(EXIT.revoked);
        return;
      }
      throw error;
    }
    if (this.abort.signal.aborted) return;
    if (this.config.mqttUrl && response?.mqttUrl && !sameEndpoint(this.config.mqttUrl, response.mqttUrl)) {
      // An agent pointed at another broker than the plane's says so loudly.
      log.error({ configured: this.config.mqttUrl, announced: response.mqttUrl }, "configured mqttUrl disagrees with the control plane's enrollment answer; check the agent config");
    }
    if (!this.mqttUrl) this.mqttUrl = response?.mqttUrl ?? this.state.snapshot.mqttUrl;
    if (!this.mqttUrl) throw new ConfigError("mqttUrl: not configured and the control plane did not provide one", "mqttUrl");
    if (new URL(this.mqttUrl).protocol === "mqtt:") {
      // HW-TLS-1: the connect token would travel in the clear, for any LAN host to take the session with.
      if (!this.config.allowPlaintext) {
        throw new ConfigError(`mqttUrl: ${this.mqttUrl} is plaintext MQTT; use mqtts:// (or set allowPlaintext: true on a trusted network)`, "mqttUrl");
      }
      log.warn({ mqttUrl: this.mqttUrl }, "PLAINTEXT: MQTT without TLS (allowPlaintext)");
    }
    const mqttCa = this.config.mqttCaFile ? readMqttCa(this.config.mqttCaFile) : this.trust.ca;
    // HW-MTLS-1: the certificate arrived in the authenticated enrollment answer; an earlier one is kept otherwise.
    if (clientKey && response?.clientCertificate) storeClientCertificate(this.config.stateDir, response.clientCertificate);
    const clientCert = clientKey ? storedClientCertificate(this.config.stateDir) : null;
    if (clientKey && !clientCert) log.error("mqttClientCertificate: the plane issued no client certificate (is its CA key held by the plane?); connecting without one");

    this.session = new MqttSession({
      url: this.mqttUrl,
      deviceId: this.deviceId,
      privateKey: this.identity.keyPair.privateKey,
      ...(mqttCa ? { ca: mqttCa } : {}),
      ...(clientCert ? { clientCert } : {}),
      reconnectMinMs: this.config.reconnectMinMs,
      reconnectMaxMs: this.config.reconnectMaxMs,
      log,
      now: this.now,
      onConnect: () => this.onConnect(),
      onChallenge: (challenge) => this.onChallenge(challenge),
      onCommand: async (command) => {
        await this.commands.handle(command);
      },
    });
    this.session.start();

    this.guards?.start(this.config.guards.intervalMs);
    this.timers.push(setInterval(() => void this.heartbeat(), this.config.heartbeatIntervalMs));
    this.timers.push(setInterval(() => void this.sendEvidence("timer", null), this.config.attestIntervalMs));
    this.watch();
  }

  /** (Re)starts the watcher: device paths resolve anew, e.g. `/firmware` to the slot an update switched to. */
  private watch(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.abort.signal.aborted || !this.config.watch || this.config.measure.paths.length === 0) return;
    const log = this.log.child({ deviceId: this.deviceId });
    this.watcher = watchPaths(
      this.config.measure.paths.map((devicePath) => ({ devicePath, hostPath: this.platform.resolve(devicePath) })),
      (paths) => {
        log.warn({ paths }, "watched paths changed");
        this.event("watch-change", "warning", { paths });
        void this.sendEvidence("watch", null);
      },
      { log },
    );
  }

  async stop(code: number = EXIT.ok): Promise<void> {
    this.abort.abort();
    this.guards?.stop();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.watcher?.close();
    this.watcher = null;
    await this.session?.stop();
    this.exitResolve(code);
  }

  private async onConnect(): Promise<void> {
    const session = this.session!;
    const connectNonce = session.connectNonce;
    if (connectNonce === null) return; // the connection dropped already; the next connect says hello
    // HW-LIVE-1: signed and bound to this connection.
    const hello: Hello = signObject(
      {
        v: PROTOCOL_VERSION,
        type: "hello" as const,
        deviceId: this.deviceId,
        connectNonce,
        model: this.config.model,
        firmwareVersion: this.firmwareVersion,
        agentVersion: this.agentVersion,
        bootId: this.bootId,
        containment: this.state.containment,
        lastCommandSeq: this.state.lastCommandSeq,
        ts: this.now(),
      },
      this.identity.keyPair.privateKey,
    );
    await session.publish("hello", hello);
    await this.sendEvidence("startup", null);
    await this.flushOutbox();
  }

  private async onChallenge(challenge: Challenge): Promise<void> {
    if (challenge.deviceId !== this.deviceId || challenge.expiresAt <= this.now()) {
      this.log.warn({ nonce: challenge.nonce, expiresAt: challenge.expiresAt }, "challenge for another device or expired; ignored");
      return;
    }
    await this.sendEvidence("challenge", challenge.nonce);
  }

  /** Produces evidence (seq persisted first) and publishes it; serialized so seqs leave in order. */
  sendEvidence(reason: EvidenceReason, nonce: string | null): Promise<void> {
    const run = this.evidenceQueue.then(async () => {
      if (!this.session?.connected) {
        // Evidence is about "now": a stale one is worthless, the next connect sends fresh startup evidence.
        this.log.debug({ reason }, "offline: evidence skipped");
        return;
      }
      let evidence: Evidence;
      try {
        evidence = await this.attester.evidence(reason, nonce);
      } catch (error) {
        this.log.error({ err: String(error), reason }, "measurement failed");
        this.event("platform-error", "warning", { reason: `measurement failed: ${String(error)}` });
        return;
      }
      await this.session.publish("evidence", evidence, 1);
    });
    this.evidenceQueue = run.catch(() => undefined);
    return run.catch((error) => this.log.warn({ err: String(error), reason }, "evidence not sent"));
  }

  private async heartbeat(): Promise<void> {
    const session = this.session;
    const connectNonce = session?.connectNonce ?? null;
    if (!session || connectNonce === null) return;
    try {
      // HW-LIVE-1: the plane takes liveness and telemetry only from a heartbeat signed by the device key and
      // bound to this connection; seq grows across restarts (persisted in blocks).
      const heartbeat: Heartbeat = signObject(
        {
          v: PROTOCOL_VERSION,
          type: "heartbeat" as const,
          deviceId: this.deviceId,
          connectNonce,
          seq: this.state.nextHeartbeatSeq(),
          ts: this.now(),
          uptimeMs: Math.max(0, Math.round(this.now() - this.startedAtMs)),
          containment: this.state.containment,
          outboxDepth: this.outbox.depth,
          ...(this.guards?.telemetry ? { telemetry: this.guards.telemetry } : {}),
        },
        this.identity.keyPair.privateKey,
      );
      await session.publish("heartbeat", heartbeat, 0);
    } catch (error) {
      this.log.debug({ err: String(error) }, "heartbeat not sent");
    }
  }

  private guardAlert(f: Finding): void {
    const { guard, subject, tier, expected, seen, message } = f;
    const detail = { guard, subject, tier, message, ...(expected !== undefined ? { expected } : {}), ...(seen !== undefined ? { seen } : {}) };
    this.event("guard-alert", tier === "contraindicated" ? "critical" : "warning", detail);
  }

  private event<K extends EventKind>(kind: K, severity: EventSeverity, detail: DeviceEventDetail<K>): void {
    this.send({ kind: "event", message: createEvent(this.deviceId, this.identity.keyPair.privateKey, kind, severity, detail, this.now()) });
  }

  private send(entry: OutboxMessage): void {
    this.outbox.enqueue(entry);
    void this.flushOutbox();
  }

  private async flushOutbox(): Promise<void> {
    const session = this.session;
    if (!session?.connected) return;
    try {
      await this.outbox.flush((entry) => session.publish(entry.kind, entry.message, 1));
    } catch (error) {
      this.log.debug({ err: String(error), depth: this.outbox.depth }, "outbox flush interrupted; retried on reconnect");
    }
  }
}
