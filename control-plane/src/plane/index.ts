/**
 * Wires one control-plane process: data folder, database, command-signing key, domain services, the embedded
 * MQTT broker, the HTTP API and the timers. `startPlane` either returns a running plane or cleans up what it
 * opened and throws (a ConfigError naming the variable for the operator's own mistakes, such as a busy port).
 */
import { existsSync, readFileSync } from "node:fs";
import { chmod } from "node:fs/promises";
import type { Server as NetServer } from "node:net";
import { createHttpApp } from "../http/index.js";
import { applyHttpTimeouts } from "./http-timeouts.js";
import { privatizeDatabaseFiles, secureDataDir } from "./data-dir.js";
import { join } from "node:path";
import type { Logger } from "pino";
import { hostname } from "node:os";
import { collectDefaultMetrics, Counter, Registry } from "prom-client";
import type { KeyPair } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { createBroker, type Broker } from "../broker/index.js";
import { startRabbitTransport, type RabbitTransport } from "../broker/rabbitmq/transport.js";
import { startEmqxTransport, type EmqxTransport } from "../broker/emqx/transport.js";
import { writeBrokerTlsFiles } from "../broker/rabbitmq/tls-files.js";
import type { ControlPlaneConfig } from "../config/index.js";
import { openDatabase, type Database, type Tx } from "../db/index.js";
import { probeDatabase } from "../db/transient.js";
import { createFarmAlerts } from "../alerts/index.js";
import { createEventHub } from "../events/index.js";
import { createWebhookService } from "../webhooks/index.js";
import { pruneDashboardData } from "../ui/queries.js";
import { ADMIN_TOKEN_FILE, loadOrCreateCommandKey, writeSecretFileAtomic } from "../keys/index.js";
import { createServices, type ControlPlaneService, type DevicePublisher, type DeviceSideHooks, type DeviceSideService } from "../service/index.js";
import { createSharedSecrets, readSecretsKey, soleLeader, startLeaderLease, type Leadership, type SharedSecrets } from "../replicas/index.js";
import { createPolicyService, policyDeliveryHooks } from "../policy/index.js";
import { createUpdates } from "../rollouts/updates.js";
import { reconcileReleaseReferenceValues } from "../tuf/index.js";
import { createApiServer, mqttTlsServerFactory, startPlaneTls, type ApiServer, type PlaneTls } from "../tls/index.js";

export const STALE_CHECK_INTERVAL_MS = 5_000;
/** How often dashboard data past its retention is deleted. */
const DASHBOARD_PRUNE_MS = 10 * 60_000;

export interface Plane {
  httpPort: number;
  mqttPort: number;
  httpUrl: string;
  mqttUrl: string;
  /** `sha256:<hex>` of the CA's public key (HW-PIN-2); null when TLS is off. */
  caCertHash: string | null;
  dataDir: string;
  database: "pglite" | "postgres";
  adminTokenFile: string;
  /** Set only on the start that created it (also written to adminTokenFile). */
  adminToken?: string;
  commandPublicKey: Uint8Array;
  /** Stops accepting, flushes buffered writes, closes the broker, HTTP server and database. Idempotent. */
  close(): Promise<void>;
}

interface Services {
  service: ControlPlaneService;
  deviceSide: DeviceSideService;
  ensureAdminToken(onCreate?: (tx: Tx) => Promise<void>): Promise<string | null>;
  /** Stops the services' own timers and flushes buffered writes; falls back to deviceSide.flush(). */
  close?(): Promise<void>;
}

interface OpenedDb {
  db: unknown;
  dialect: "pglite" | "postgres";
  /** Whether the database answers now (HW-FAULT-3); absent: `select 1` through `db`. */
  probe?(timeoutMs?: number): Promise<"up" | "down">;
  close(): Promise<void>;
}

/** Seams for tests; production uses the real modules. */
export interface PlaneFactories {
  openDatabase(opts: { dataDir: string; databaseUrl?: string }): Promise<OpenedDb>;
  createServices(deps: {
    db: never;
    publisher: DevicePublisher;
    commandKey: KeyPair;
    logger: Logger;
    now?: () => number;
    monotonicNow?: () => number;
    options: ServiceOptions;
    hooks?: DeviceSideHooks;
  }): Services;
}

type ServiceOptions = Parameters<typeof createServices>[0]["options"];

const defaultFactories: PlaneFactories = {
  openDatabase,
  createServices: (deps) => createServices(deps as Parameters<typeof createServices>[0]),
};

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** Turns a listen() failure into an operator-facing error that names the variable. */
function listenError(error: unknown, portOption: string, port: number, hostOption: string, host: string): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code === "EADDRINUSE") return new ConfigError(`${portOption}=${port}: port already in use`, portOption, { cause: error });
  if (code === "EACCES") return new ConfigError(`${portOption}=${port}: permission denied (ports below 1024 need privileges)`, portOption, { cause: error });
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new ConfigError(`${hostOption}=${host}: address not available on this host`, hostOption, { cause: error });
  }
  return error;
}

function listenHttp(server: NetServer, port: number, host: string, logger: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      server.on("error", (error) => logger.error({ err: error }, "http server error"));
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : port);
    });
  });
}

function closeHttp({ http, listener }: ApiServer): Promise<void> {
  return new Promise((resolve) => {
    if (!listener.listening) return resolve();
    listener.close(() => resolve());
    // Keep-alive connections would hold close() open; in-flight requests still finish.
    http.closeIdleConnections?.();
  });
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * Runs `task` every `intervalMs`, never overlapping itself, never throwing, never keeping the process alive.
 * With `leadership`, only while this replica leads (HW-HA-3); each run counts in `runs` (hashward_timer_runs_total).
 */
function every(
  intervalMs: number,
  name: string,
  logger: Logger,
  task: () => Promise<void>,
  gate: { runs: Counter<"task">; leadership?: Leadership },
): () => Promise<void> {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    if (gate.leadership && !gate.leadership.isLeader()) return;
    gate.runs.inc({ task: name });
    running = task()
      .catch((error: unknown) => logger.error({ err: error, task: name }, "timer task failed"))
      .finally(() => {
        running = null;
      });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/**
 * HW-HA-1: on PostgreSQL, the store through which replicas share their keys (sealed with HASHWARD_SECRETS_KEY_FILE
 * when set); alone on PGlite, null: the keys stay files in the data folder.
 */
async function sharedSecretsFor(opened: OpenedDb, config: ControlPlaneConfig, logger: Logger): Promise<SharedSecrets | null> {
  if (opened.dialect !== "postgres") {
    if (config.secretsKeyFile) logger.warn({ option: "HASHWARD_SECRETS_KEY_FILE" }, "ignored: only replicas on PostgreSQL keep keys in the database");
    return null;
  }
  const secretsKey = config.secretsKeyFile ? await readSecretsKey(config.secretsKeyFile) : null;
  return createSharedSecrets({ db: opened.db as Database, dataDir: config.dataDir, secretsKey });
}

export async function startPlane(
  config: ControlPlaneConfig,
  logger: Logger,
  factories: PlaneFactories = defaultFactories,
): Promise<Plane> {
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        logger.error({ err: error }, "shutdown step failed");
      }
    }
  };

  try {
    await secureDataDir(config.dataDir, logger); // HW-DATA-1

    // The database first: replicas on PostgreSQL take their keys from it (HW-HA-1).
    const opened = await factories.openDatabase(
      config.databaseUrl === undefined ? { dataDir: config.dataDir } : { dataDir: config.dataDir, databaseUrl: config.databaseUrl },
    );
    cleanups.push(() => opened.close());
    await privatizeDatabaseFiles(config.dataDir, logger); // HW-DATA-1: PGlite sets its own file modes
    const shared = await sharedSecretsFor(opened, config, logger);

    const commandKey = await loadOrCreateCommandKey(config.dataDir, shared);
    logger.info(
      { path: commandKey.origin === "database" || commandKey.origin === "created" ? null : commandKey.path, origin: commandKey.origin, created: commandKey.created },
      commandKey.created ? "command-signing key created" : "command-signing key loaded",
    );

    // HW-TLS-1: TLS unless explicitly turned off, and then said at warn on every start.
    let tls: PlaneTls | null = null;
    if (config.tls.enabled) {
      const hostOf = (u: string | undefined) => (u === undefined ? [] : [new URL(u).hostname]);
      tls = await startPlaneTls(
        config.dataDir,
        [config.httpHost, config.mqttHost, ...hostOf(config.publicUrl), ...hostOf(config.publicMqttUrl), ...config.tls.extraNames],
        config.tls,
        logger,
        Date.now,
        shared,
      );
      const planeTls = tls;
      cleanups.push(async () => planeTls.close());
    } else {
      logger.warn({ option: "HASHWARD_TLS", value: "off" }, "PLAINTEXT: HTTP and MQTT without TLS; anyone on the network can read and hijack device sessions (HW-TLS-1)");
    }

    const registry = new Registry();
    try {
      collectDefaultMetrics({ register: registry });
    } catch (error) {
      logger.warn({ err: error }, "default process metrics unavailable on this runtime");
    }

    // The services publish through the broker, and the broker hands messages to the services: bind late.
    let broker: Pick<Broker, "publisher" | "disconnect"> | null = null;
    const publisher = {
      publish(deviceId: string, kind: "challenge" | "command", message: never): Promise<void> {
        if (!broker) return Promise.reject(new Error("MQTT broker is not started"));
        return broker.publisher.publish(deviceId, kind as "command", message);
      },
      isConnected(deviceId: string): boolean {
        return broker?.publisher.isConnected(deviceId) ?? false;
      },
      // Revocation bites at once: the service drops a revoked or rejected device's live session (embedded aedes
      // or RabbitMQ alike); the CONNECT check refuses it from then on.
      disconnect(deviceId: string): void {
        broker?.disconnect(deviceId);
      },
    } as DevicePublisher;

    const options: ServiceOptions = {
      commandTtlMs: config.commandTtlMs,
      challengeTtlMs: config.challengeTtlMs,
      staleAfterMs: config.staleAfterMs,
      autoQuarantine: config.autoQuarantine,
      maxPendingDevices: config.maxPendingDevices,
      sessionTakeoverThreshold: config.sessionTakeoverThreshold,
      sessionTakeoverWindowMs: config.sessionTakeoverWindowMs,
      commandRetryMs: config.commandRetryMs,
      telemetrySampleMs: config.telemetrySampleMs,
      ...(config.publicMqttUrl === undefined ? {} : { publicMqttUrl: config.publicMqttUrl }),
    };
    // Guard policies ride on the device side: a due set-policy is issued on hello, acked versions recorded.
    const policies = createPolicyService({ db: opened.db as never, publisher, commandKey: commandKey.keyPair, logger, now: Date.now, options });
    // HW-ALERT-1..4: farm alerts from the telemetry of heartbeats the device side accepted, judged by the
    // `farm-alerts` policy thresholds, written in batches off the heartbeat path.
    const farmAlerts = createFarmAlerts({ db: opened.db as never, publisher, commandKey: commandKey.keyPair, logger, now: Date.now, options, registry });
    await farmAlerts.start();
    policies.onChange((kind) => {
      if (kind === "farm-alerts") void farmAlerts.refreshThresholds();
    });
    cleanups.push(() => farmAlerts.close()); // after the broker stops (cleanups run last-in first): nothing queued is lost
    // The device side's hooks: plain options, the same wiring the services' tests use (no wrapper around it).
    const hooks: DeviceSideHooks = { ...policyDeliveryHooks(policies), afterHeartbeat: (heartbeat) => farmAlerts.observeHeartbeat(heartbeat) };
    const services = factories.createServices({
      db: opened.db as never,
      publisher,
      commandKey: commandKey.keyPair,
      logger,
      now: Date.now,
      monotonicNow: () => performance.now(), // HW-FAULT-11: tells a step of Date.now from elapsed time
      options,
      hooks,
    });
    cleanups.push(() => (services.close ? services.close() : services.deviceSide.flush()));
    const { deviceSide } = services;
    // HASHWARD_BROKER: the embedded aedes broker, or RabbitMQ / EMQX asking this plane's hooks (HW-BROKER-1..5).
    let external: RabbitTransport | EmqxTransport | null = null;
    let embedded: Broker | null = null;
    if (config.broker.kind === "rabbitmq") {
      if (tls) await writeBrokerTlsFiles(config.dataDir, tls, logger); // RabbitMQ's MQTT TLS listener serves the plane's certificate
      const started = await startRabbitTransport({ config: config.broker, deviceSide, db: opened.db as Database, logger, registry });
      external = started;
      cleanups.push(() => started.close());
    } else if (config.broker.kind === "emqx") {
      if (tls) await writeBrokerTlsFiles(config.dataDir, tls, logger); // EMQX's SSL listener serves the plane's certificate
      const started = await startEmqxTransport({
        config: config.broker,
        deviceSide,
        db: opened.db as Database,
        logger,
        registry,
        requireClientCertificate: config.tls.enabled && config.tls.requireClientCert, // HW-MTLS-1 at EMQX's listener
        ...(tls ? { caPem: tls.ca.certPem } : {}),
      });
      external = started;
      cleanups.push(() => started.close());
    } else {
      const started = await createBroker({ deviceSide, logger, registry, maxClients: config.maxMqttClients, requireClientCertificate: config.tls.enabled && config.tls.requireClientCert });
      embedded = started;
      cleanups.push(() => started.close());
    }
    const startedBroker = (external ?? embedded)!;
    broker = startedBroker;

    // First start: the service makes an admin API token; it is shown once, so it goes to a 0600 file.
    const adminTokenFile = join(config.dataDir, ADMIN_TOKEN_FILE);
    // HW-HA-2: with replicas, where the file goes is recorded with the token, so the others can log where it is
    // (the token itself is never stored, only its hash).
    const adminToken = await services.ensureAdminToken(shared ? (tx) => shared.writeNote("admin-token-file", { host: hostname(), path: adminTokenFile }, tx) : undefined);
    if (adminToken !== null) {
      await writeSecretFileAtomic(adminTokenFile, `${adminToken}\n`);
      logger.warn({ adminTokenFile }, "admin API token created; read it from this file, then keep it safe");
    } else if (existsSync(adminTokenFile)) {
      await chmod(adminTokenFile, 0o600).catch(() => undefined);
      logger.info({ adminTokenFile }, "admin API token is in this file (created on first start)");
    } else {
      const createdAt = await shared?.readNote("admin-token-file");
      if (createdAt) logger.info({ adminTokenFile: createdAt.path, host: createdAt.host }, "admin API token was created by another replica, in this file on that host");
      else logger.warn({ adminTokenFile }, "admin API token was created on first start and its file is gone; use an existing admin token");
    }

    const updates = await createUpdates({ config, db: opened.db as never, publisher, commandKey: commandKey.keyPair, options, logger, shared });
    // Best effort: a repair of what a crash between publishing a release and registering its values left behind.
    // It must not keep the plane from starting; it runs again at the next start.
    await updates.tuf
      .listTargets()
      .then((targets) => reconcileReleaseReferenceValues(services.service, targets, logger))
      .catch((error: unknown) => logger.error({ err: error }, "could not reconcile release reference values"));

    const version = readVersion();
    let advertised: { controlPlaneUrl: string; mqttUrl: string } | null = null;
    const planeTlsForCerts = tls;
    const bootstrap = {
      caPem: tls?.ca.certPem ?? null,
      ...(planeTlsForCerts ? { issueClientCertificate: (deviceId: string, pem: string) => planeTlsForCerts.issueClientCertificate(deviceId, pem) } : {}),
      bootstrap: () => ({
        controlPlaneUrl: advertised?.controlPlaneUrl ?? "",
        mqttUrl: advertised?.mqttUrl ?? "",
        tls: tls !== null,
        caCertHash: tls?.ca.caCertHash ?? null,
      }),
    };
    const hub = createEventHub({ db: opened.db as Database, logger, registry, options: { pollIntervalMs: config.eventPollMs, maxQueuedPerClient: config.eventStreamMaxQueue, maxSubscribers: config.eventStreamsMax, maxSubscribersPerHolder: config.eventStreamsPerToken } });
    const webhooks = createWebhookService({
      db: opened.db as Database,
      logger,
      registry,
      options: {
        allowLoopback: config.webhookAllowLoopback,
        maxConsecutiveFailures: config.webhookMaxConsecutiveFailures,
        maxAttempts: config.webhookMaxAttempts,
        retryBaseMs: config.webhookRetryBaseMs,
        timeoutMs: config.webhookTimeoutMs,
      },
    });
    const app = createHttpApp({ service: services.service, logger, registry, version, updates, policies, bootstrap, events: { hub }, webhooks,
      probeDatabase: () => (opened.probe ? opened.probe() : probeDatabase(opened.db as Database)),
      dashboard: { db: opened.db as Database, secure: tls !== null, sessionTtlMs: config.uiSessionTtlMs },
    });

    await tls?.renewIfDue();
    const mqttPort = embedded
      ? await embedded.listen(config.mqttPort, config.mqttHost, tls ? mqttTlsServerFactory(tls, config.tls.requireClientCert) : undefined).catch((error: unknown) => {
          throw listenError(error, "HASHWARD_MQTT_PORT", config.mqttPort, "HASHWARD_MQTT_HOST", config.mqttHost);
        })
      : Number(new URL(config.publicMqttUrl!).port || 8883); // the external broker's MQTT listener (HASHWARD_PUBLIC_MQTT_URL)

    const apiServer = createApiServer(app.fetch, tls);
    applyHttpTimeouts(apiServer.http, { bodyTimeoutMs: config.httpBodyTimeoutMs, keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs }, logger);
    cleanups.push(() => closeHttp(apiServer)); // runs first on shutdown: stop taking requests before the broker/DB go
    cleanups.push(() => hub.close()); // ends the event streams, which closeHttp would otherwise wait for
    const httpPort = await listenHttp(apiServer.listener, config.httpPort, config.httpHost, logger).catch((error: unknown) => {
      throw listenError(error, "HASHWARD_HTTP_PORT", config.httpPort, "HASHWARD_HTTP_HOST", config.httpHost);
    });

    // HW-HA-3: fleet-wide timers run on the replica that holds the lease (alone on PGlite: always this one);
    // given up after the timers stopped (cleanups run last-in first), so a successor starts without waiting.
    const leadership = opened.dialect === "postgres" ? await startLeaderLease({ db: opened.db as Database, ttlMs: config.leaseTtlMs, logger, registry }) : soleLeader();
    cleanups.push(() => leadership.close());
    const runs = new Counter({ name: "hashward_timer_runs_total", help: "Timer task runs started by this replica (HW-HA-3)", labelNames: ["task"], registers: [registry] });
    const leader = { runs, leadership };
    const everyReplica = { runs }; // HW-HA-4: work claimed row by row in SQL, shared by every replica
    const stopRetry = every(config.commandRetryMs, "retryPendingCommands", logger, () => services.deviceSide.retryPendingCommands(), everyReplica);
    const stopStale = every(STALE_CHECK_INTERVAL_MS, "markStaleDevices", logger, () => services.deviceSide.markStaleDevices(), leader);
    cleanups.push(async () => {
      await stopRetry();
      await stopStale();
    });
    const stopWebhooks = every(config.webhookTickMs, "deliverWebhooks", logger, async () => {
      await webhooks.deliverDue();
    }, everyReplica);
    cleanups.push(stopWebhooks);
    // Dashboard data: telemetry samples past the retention, sessions expired or signed out a day ago (idempotent
    // fleet-wide deletes: the lease holder's job, HW-HA-3).
    const stopDashboardPrune = every(DASHBOARD_PRUNE_MS, "pruneDashboardData", logger, async () => {
      const now = Date.now();
      await pruneDashboardData(opened.db as Database, new Date(now - config.telemetryRetentionMs), new Date(now - 24 * 3600_000));
    }, leader);
    cleanups.push(stopDashboardPrune);
    const stopUpdateTimers = updates.timers.map(([name, intervalMs, task]) => every(intervalMs, name, logger, task, leader));
    cleanups.push(async () => {
      for (const stop of stopUpdateTimers) await stop();
    });

    const httpUrl = `${tls ? "https" : "http"}://${urlHost(config.httpHost)}:${httpPort}`;
    const mqttUrl = external ? config.publicMqttUrl! : `${tls ? "mqtts" : "mqtt"}://${urlHost(config.mqttHost)}:${mqttPort}`;
    advertised = { controlPlaneUrl: config.publicUrl ?? httpUrl, mqttUrl: config.publicMqttUrl ?? mqttUrl };
    // The enrollment answer always names the broker (the bound port is known only now): an agent configured with
    // another address says so at error level (agent/src/runtime).
    options.publicMqttUrl = advertised.mqttUrl;
    logger.info(
      {
        httpPort,
        mqttPort,
        httpUrl,
        mqttUrl,
        publicMqttUrl: config.publicMqttUrl,
        broker: config.broker.kind,
        ...(external ? { brokerHookPort: external.hookPort } : {}),
        tls: tls !== null,
        caFile: tls && !config.tls.certFile ? join(config.dataDir, "ca.pem") : config.tls.caFile,
        caCertHash: tls?.ca.caCertHash ?? null,
        dataDir: config.dataDir,
        database: opened.dialect,
        adminTokenFile,
        leaseHolder: opened.dialect === "postgres" ? leadership.holder : undefined,
        version,
      },
      "control plane ready",
    );

    let closing: Promise<void> | null = null;
    const plane: Plane = {
      httpPort,
      mqttPort,
      httpUrl,
      mqttUrl,
      caCertHash: tls?.ca.caCertHash ?? null,
      dataDir: config.dataDir,
      database: opened.dialect,
      adminTokenFile,
      commandPublicKey: commandKey.keyPair.publicKey,
      close() {
        closing ??= (async () => {
          logger.info("control plane stopping");
          await cleanup();
          logger.info("control plane stopped");
        })();
        return closing;
      },
    };
    if (adminToken !== null) plane.adminToken = adminToken;
    return plane;
  } catch (error) {
    await cleanup();
    throw error;
  }
}
