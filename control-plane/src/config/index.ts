/**
 * The control plane's configuration: a typed object read from the environment, with defaults and hard caps,
 * validated at start. Every error is a ConfigError naming the variable and the value it had.
 */
import { resolve } from "node:path";
import { ConfigError } from "../../../shared/errors/index.js";
import { describeBrokerConfig, loadBrokerConfig, type BrokerConfig } from "../broker/config.js";

export type AutoQuarantine = "contraindicated" | "off";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface ControlPlaneConfig {
  httpPort: number;
  httpHost: string;
  mqttPort: number;
  mqttHost: string;
  /** Absolute path. Holds the PGlite database, the command-signing key and the admin token. */
  dataDir: string;
  /** postgres:// or postgresql://; unset = embedded PGlite in dataDir. */
  databaseUrl?: string;
  /** The MQTT URL told to agents in the enrollment response (e.g. mqtts://plane.farm.example:8883). */
  publicMqttUrl?: string;
  /** HASHWARD_BROKER: the embedded aedes broker (default) or RabbitMQ (control-plane/src/broker/rabbitmq, HW-BROKER-1..4). */
  broker: BrokerConfig;
  /** The HTTPS URL of this plane as agents reach it (bootstrap answer, demo:board); default from the listener. */
  publicUrl?: string;
  /**
   * HW-TLS-1: HTTPS and MQTT over TLS unless `tls.enabled` is false (HASHWARD_TLS=off, logged at warn on every
   * start). Without operator files the plane issues its own certificates (control-plane/src/tls).
   */
  tls: {
    enabled: boolean;
    certFile?: string;
    keyFile?: string;
    caFile?: string;
    /** Extra subject alternative names (HASHWARD_TLS_SAN, comma list of host names or IPs). */
    extraNames: string[];
    certLifetimeMs: number;
    renewCheckMs: number;
    /** HW-MTLS-1: the embedded broker requires a client certificate issued by the plane's CA. */
    requireClientCert: boolean;
  };
  commandTtlMs: number;
  challengeTtlMs: number;
  commandRetryMs: number;
  staleAfterMs: number;
  autoQuarantine: AutoQuarantine;
  logLevel: LogLevel;
  maxMqttClients: number;
  /** Devices that may wait in `pending` at once; more enrollments without a token get HTTP 429. */
  maxPendingDevices: number;
  /** TUF repository (control-plane/src/tuf): online metadata lifetimes, renewal check, image upload cap. */
  tufTimestampTtlMs: number;
  tufSnapshotTtlMs: number;
  tufRenewCheckMs: number;
  tufMaxImageBytes: number;
  /** Rollouts (control-plane/src/rollouts): engine tick and the expiry of each signed update command. */
  rolloutTickMs: number;
  updateCommandTtlMs: number;
  /** HTTP listener (control-plane/src/plane/http-timeouts.ts): request body deadline (HW-HTTP-3) and keep-alive idle close (HW-HTTP-4), ms. */
  httpBodyTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  /** HW-AUTH-2: this many MQTT session takeovers within sessionTakeoverWindowMs make a device's appraisal `warning`. */
  sessionTakeoverThreshold: number;
  sessionTakeoverWindowMs: number;
  /** Events queued for one event-stream client before it is dropped (HW-SSE-1). */
  eventStreamMaxQueue: number;
  /** Open event streams per plane, and per API token (HW-SSE-1). */
  eventStreamsMax: number;
  eventStreamsPerToken: number;
  /** How often the event stream reads events other processes committed (its own commits wake it at once, HW-SSE-2). */
  eventPollMs: number;
  /** HW-HOOK-3: allow loopback and link-local webhook targets. */
  webhookAllowLoopback: boolean;
  webhookMaxConsecutiveFailures: number;
  webhookMaxAttempts: number;
  webhookRetryBaseMs: number;
  webhookTimeoutMs: number;
  webhookTickMs: number;
  /**
   * Replicas on PostgreSQL (control-plane/src/replicas, docs/scale.md): lifetime of the lease that picks the one
   * replica running the fleet-wide timers, renewed every third of it (HW-HA-3), and the 32-byte key file that
   * seals the shared keys in plane_secrets (HW-HA-1; unset: stored unsealed).
   */
  leaseTtlMs: number;
  secretsKeyFile?: string;
  /** Folder of uploaded TUF target images (HASHWARD_TUF_IMAGE_DIR; replicas share one); default `<dataDir>/tuf/targets`. */
  tufImageDir?: string;
  /** Dashboard (control-plane/src/ui): telemetry kept for charts, one sample per device per interval (ms), for the retention (ms). */
  telemetrySampleMs: number;
  telemetryRetentionMs: number;
  /** Dashboard session lifetime (HW-UI-1, ms). */
  uiSessionTtlMs: number;
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const AUTO_QUARANTINE: readonly AutoQuarantine[] = ["contraindicated", "off"];
const MINUTE_MS = 60_000;
const ON_OFF = ["on", "off"] as const;
const DAY_MS = 24 * 60 * MINUTE_MS;

/** Unset and empty both mean "use the default" (so `FOO= cmd` in a shell behaves like no FOO). */
function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function fail(name: string, value: string, why: string): never {
  throw new ConfigError(`${name}=${JSON.stringify(value)}: ${why}`, name);
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) fail(name, value, `must be a whole number between ${min} and ${max}`);
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    fail(name, value, `must be between ${min} and ${max}`);
  }
  return parsed;
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) fail(name, value, `must be one of ${allowed.join(", ")}`);
  return value as T;
}

function host(env: Env, name: string, fallback: string): string {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  // A host name or an IP literal; no scheme, port or path (those belong in other variables).
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(value)) fail(name, value, "must be a host name or IP address");
  return value;
}

function hostList(env: Env, name: string): string[] {
  const value = raw(env, name);
  if (value === undefined) return [];
  const hosts = value.split(",").map((h) => h.trim()).filter((h) => h !== "");
  for (const h of hosts) if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(h)) fail(name, value, `${JSON.stringify(h)} is not a host name or IP address`);
  return hosts;
}

function url(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    fail(name, redact(value), "is not a URL");
  }
  if (!protocols.includes(parsed.protocol)) {
    fail(name, redact(value), `must start with ${protocols.map((p) => `${p}//`).join(" or ")}`);
  }
  return value;
}

/** Database URLs carry passwords: never echo one into a log or an error. */
function redact(value: string): string {
  return value.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}

export function loadConfig(env: Env = process.env): ControlPlaneConfig {
  const dataDir = raw(env, "HASHWARD_DATA_DIR") ?? "./data";
  const config: ControlPlaneConfig = {
    httpPort: integer(env, "HASHWARD_HTTP_PORT", 8080, 0, 65535),
    httpHost: host(env, "HASHWARD_HTTP_HOST", "0.0.0.0"),
    mqttPort: integer(env, "HASHWARD_MQTT_PORT", 1883, 0, 65535),
    mqttHost: host(env, "HASHWARD_MQTT_HOST", "0.0.0.0"),
    dataDir: resolve(dataDir),
    broker: loadBrokerConfig(env),
    commandTtlMs: integer(env, "HASHWARD_COMMAND_TTL_MS", 5 * MINUTE_MS, 1_000, 30 * DAY_MS),
    challengeTtlMs: integer(env, "HASHWARD_CHALLENGE_TTL_MS", MINUTE_MS, 1_000, 60 * MINUTE_MS),
    commandRetryMs: integer(env, "HASHWARD_COMMAND_RETRY_MS", 5_000, 100, 60 * MINUTE_MS),
    staleAfterMs: integer(env, "HASHWARD_STALE_AFTER_MS", 90_000, 1_000, 30 * DAY_MS),
    autoQuarantine: oneOf(env, "HASHWARD_AUTO_QUARANTINE", "contraindicated", AUTO_QUARANTINE),
    logLevel: oneOf(env, "HASHWARD_LOG_LEVEL", "info", LOG_LEVELS),
    maxMqttClients: integer(env, "HASHWARD_MAX_MQTT_CLIENTS", 20_000, 1, 1_000_000),
    maxPendingDevices: integer(env, "HASHWARD_MAX_PENDING_DEVICES", 10_000, 1, 1_000_000),
    tufTimestampTtlMs: integer(env, "HASHWARD_TUF_TIMESTAMP_TTL_MS", DAY_MS, 3_000, 30 * DAY_MS),
    tufSnapshotTtlMs: integer(env, "HASHWARD_TUF_SNAPSHOT_TTL_MS", 7 * DAY_MS, 3_000, 365 * DAY_MS),
    tufRenewCheckMs: integer(env, "HASHWARD_TUF_RENEW_CHECK_MS", MINUTE_MS, 100, 60 * MINUTE_MS),
    // Image lengths are stored as 32-bit integers: 2 GiB - 1 is the hard cap.
    tufMaxImageBytes: integer(env, "HASHWARD_TUF_MAX_IMAGE_BYTES", 512 * 1024 * 1024, 1024, 2 ** 31 - 1),
    rolloutTickMs: integer(env, "HASHWARD_ROLLOUT_TICK_MS", 5_000, 100, 60 * MINUTE_MS),
    updateCommandTtlMs: integer(env, "HASHWARD_UPDATE_COMMAND_TTL_MS", 60 * MINUTE_MS, 1_000, 30 * DAY_MS),
    // HW-HTTP-3: a body must arrive within this after the headers (release images stream for longer: see README).
    httpBodyTimeoutMs: integer(env, "HASHWARD_HTTP_BODY_TIMEOUT_MS", 10_000, 100, 60 * MINUTE_MS),
    // HW-HTTP-4: longer than any client's keep-alive pool, so the server is not the side that closes a reused socket.
    httpKeepAliveTimeoutMs: integer(env, "HASHWARD_HTTP_KEEP_ALIVE_TIMEOUT_MS", 65_000, 1_000, 10 * MINUTE_MS),
    sessionTakeoverThreshold: integer(env, "HASHWARD_SESSION_TAKEOVER_THRESHOLD", 3, 1, 1_000),
    sessionTakeoverWindowMs: integer(env, "HASHWARD_SESSION_TAKEOVER_WINDOW_MS", MINUTE_MS, 1_000, DAY_MS),
    tls: {
      enabled: oneOf(env, "HASHWARD_TLS", "on", ON_OFF) === "on",
      extraNames: hostList(env, "HASHWARD_TLS_SAN"),
      // A certificate shorter than a few seconds could expire between issue and handshake.
      certLifetimeMs: integer(env, "HASHWARD_TLS_CERT_TTL_MS", 90 * DAY_MS, 3_000, 825 * DAY_MS),
      renewCheckMs: integer(env, "HASHWARD_TLS_RENEW_CHECK_MS", 60 * MINUTE_MS, 100, 24 * 60 * MINUTE_MS),
      requireClientCert: oneOf(env, "HASHWARD_MQTT_CLIENT_CERT", "optional", ["optional", "required"] as const) === "required",
    },
    eventStreamMaxQueue: integer(env, "HASHWARD_EVENT_STREAM_MAX_QUEUE", 1_000, 1, 100_000),
    eventStreamsMax: integer(env, "HASHWARD_EVENT_STREAMS_MAX", 2_000, 1, 1_000_000),
    eventStreamsPerToken: integer(env, "HASHWARD_EVENT_STREAMS_PER_TOKEN", 16, 1, 1_000_000),
    eventPollMs: integer(env, "HASHWARD_EVENT_POLL_MS", 1_000, 10, MINUTE_MS),
    webhookAllowLoopback: oneOf(env, "HASHWARD_WEBHOOK_ALLOW_LOOPBACK", "false", ["true", "false"]) === "true",
    webhookMaxConsecutiveFailures: integer(env, "HASHWARD_WEBHOOK_MAX_FAILURES", 10, 1, 1_000),
    webhookMaxAttempts: integer(env, "HASHWARD_WEBHOOK_MAX_ATTEMPTS", 12, 1, 100),
    webhookRetryBaseMs: integer(env, "HASHWARD_WEBHOOK_RETRY_BASE_MS", 5_000, 10, 60 * MINUTE_MS),
    webhookTimeoutMs: integer(env, "HASHWARD_WEBHOOK_TIMEOUT_MS", 10_000, 100, 5 * MINUTE_MS),
    webhookTickMs: integer(env, "HASHWARD_WEBHOOK_TICK_MS", 1_000, 10, MINUTE_MS),
    leaseTtlMs: integer(env, "HASHWARD_LEASE_TTL_MS", 15_000, 300, 10 * MINUTE_MS),
    // 10,000 devices at one sample per 5 min for a day: 2.9 million rows.
    telemetrySampleMs: integer(env, "HASHWARD_TELEMETRY_SAMPLE_MS", 5 * MINUTE_MS, 100, DAY_MS),
    telemetryRetentionMs: integer(env, "HASHWARD_TELEMETRY_RETENTION_MS", DAY_MS, MINUTE_MS, 90 * DAY_MS),
    uiSessionTtlMs: integer(env, "HASHWARD_UI_SESSION_TTL_MS", 12 * 60 * MINUTE_MS, MINUTE_MS, 30 * DAY_MS),
  };
  const secretsKeyFile = raw(env, "HASHWARD_SECRETS_KEY_FILE");
  if (secretsKeyFile !== undefined) config.secretsKeyFile = resolve(secretsKeyFile);
  const tufImageDir = raw(env, "HASHWARD_TUF_IMAGE_DIR");
  if (tufImageDir !== undefined) config.tufImageDir = resolve(tufImageDir);
  for (const [field, name] of [["certFile", "HASHWARD_TLS_CERT_FILE"], ["keyFile", "HASHWARD_TLS_KEY_FILE"], ["caFile", "HASHWARD_TLS_CA_FILE"]] as const) {
    const value = raw(env, name);
    if (value !== undefined) config.tls[field] = resolve(value);
  }
  if (!config.tls.enabled && config.tls.requireClientCert) {
    fail("HASHWARD_MQTT_CLIENT_CERT", "required", "needs TLS (HASHWARD_TLS=on)");
  }
  const databaseUrl = url(env, "DATABASE_URL", ["postgres:", "postgresql:"]);
  if (databaseUrl !== undefined) config.databaseUrl = databaseUrl;
  const publicUrl = url(env, "HASHWARD_PUBLIC_URL", ["https:", "http:"]);
  if (publicUrl !== undefined) config.publicUrl = publicUrl;
  const publicMqttUrl = url(env, "HASHWARD_PUBLIC_MQTT_URL", ["mqtt:", "mqtts:", "tcp:", "tls:", "ws:", "wss:"]);
  if (publicMqttUrl !== undefined) config.publicMqttUrl = publicMqttUrl;
  if (config.broker.kind !== "embedded" && publicMqttUrl === undefined) {
    throw new ConfigError(`HASHWARD_PUBLIC_MQTT_URL: required with HASHWARD_BROKER=${config.broker.kind} (the broker's MQTT address that agents are told)`, "HASHWARD_PUBLIC_MQTT_URL");
  }
  return config;
}

/** The config as it may be logged (database password hidden). */
export function describeConfig(config: ControlPlaneConfig): Record<string, unknown> {
  return { ...config, databaseUrl: config.databaseUrl === undefined ? undefined : redact(config.databaseUrl), broker: describeBrokerConfig(config.broker) };
}
