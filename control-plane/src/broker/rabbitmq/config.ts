/**
 * Which broker the plane uses (HASHWARD_BROKER) and, for the external RabbitMQ mode, how to reach it and where
 * its hooks listen. Read by loadConfig (control-plane/src/config); every error is a ConfigError naming the variable.
 */
import { ConfigError } from "../../../../shared/errors/index.js";

export type BrokerConfig =
  | { kind: "embedded" }
  | {
      kind: "rabbitmq";
      /** amqp:// or amqps:// URL of the plane's own (internal) RabbitMQ user; several comma-separated for a cluster. */
      amqpUrls: string[];
      /** http(s)://user:pass@host:port of the management API (revocation closes connections through it); optional. */
      managementUrl?: string;
      /** The hook listener (rabbitmq_auth_backend_http asks here): loopback by default. */
      hookHost: string;
      hookPort: number;
      /** Shared secret, the first path segment of every hook URL (HW-BROKER-2); at least 32 characters. */
      hookSecret: string;
      /** Deliveries in flight per replica (AMQP prefetch). */
      prefetch: number;
      /** The exchange the MQTT plugin publishes to (mqtt.exchange) and the vhost (mqtt.vhost). */
      exchange: string;
      vhost: string;
    };

type Env = Record<string, string | undefined>;

function fail(name: string, value: string, why: string): never {
  throw new ConfigError(`${name}=${value}: ${why}`, name);
}

/** Hides URL passwords (user:pass@) in anything logged or thrown. */
export function redactUrl(value: string): string {
  return value.replace(/\/\/([^:@/]+):[^@/]*@/g, "//$1:***@");
}

/**
 * HASHWARD_BROKER=embedded (default) | rabbitmq. rabbitmq requires HASHWARD_RABBITMQ_URL,
 * HASHWARD_BROKER_HOOK_SECRET and HASHWARD_PUBLIC_MQTT_URL (checked by the caller: agents must be told the
 * broker's address, which the plane does not listen on itself).
 */
export function loadBrokerConfig(env: Env): BrokerConfig {
  const kind = env.HASHWARD_BROKER?.trim() || "embedded";
  if (kind === "embedded") return { kind };
  if (kind !== "rabbitmq") fail("HASHWARD_BROKER", kind, "must be one of embedded, rabbitmq");
  const urls = (env.HASHWARD_RABBITMQ_URL ?? "").split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new ConfigError("HASHWARD_RABBITMQ_URL: required with HASHWARD_BROKER=rabbitmq (amqp://user:pass@host:5672)", "HASHWARD_RABBITMQ_URL");
  for (const u of urls) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      fail("HASHWARD_RABBITMQ_URL", redactUrl(u), "is not a URL");
    }
    if (parsed.protocol !== "amqp:" && parsed.protocol !== "amqps:") fail("HASHWARD_RABBITMQ_URL", redactUrl(u), "must start with amqp:// or amqps://");
  }
  const secret = env.HASHWARD_BROKER_HOOK_SECRET ?? "";
  if (secret.length < 32 || !/^[A-Za-z0-9_-]+$/.test(secret)) {
    throw new ConfigError("HASHWARD_BROKER_HOOK_SECRET: required with HASHWARD_BROKER=rabbitmq, at least 32 characters of [A-Za-z0-9_-]", "HASHWARD_BROKER_HOOK_SECRET");
  }
  const hookHost = env.HASHWARD_BROKER_HOOK_HOST?.trim() || "127.0.0.1";
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(hookHost)) fail("HASHWARD_BROKER_HOOK_HOST", hookHost, "must be a host name or IP address");
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const value = env[name]?.trim();
    if (value === undefined || value === "") return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) fail(name, value, `must be an integer between ${min} and ${max}`);
    return n;
  };
  const config: BrokerConfig = {
    kind: "rabbitmq",
    amqpUrls: urls,
    hookHost,
    hookPort: int("HASHWARD_BROKER_HOOK_PORT", 8090, 0, 65535),
    hookSecret: secret,
    prefetch: int("HASHWARD_RABBITMQ_PREFETCH", 256, 1, 65535),
    exchange: "amq.topic",
    vhost: "/",
  };
  const management = env.HASHWARD_RABBITMQ_MANAGEMENT_URL?.trim();
  if (management) {
    let parsed: URL;
    try {
      parsed = new URL(management);
    } catch {
      fail("HASHWARD_RABBITMQ_MANAGEMENT_URL", redactUrl(management), "is not a URL");
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") fail("HASHWARD_RABBITMQ_MANAGEMENT_URL", redactUrl(management), "must start with http:// or https://");
    config.managementUrl = management;
  }
  return config;
}

/** The broker config as it may be logged: passwords and the hook secret hidden. */
export function describeBrokerConfig(config: BrokerConfig): Record<string, unknown> {
  if (config.kind === "embedded") return config;
  return {
    ...config,
    amqpUrls: config.amqpUrls.map(redactUrl),
    managementUrl: config.managementUrl === undefined ? undefined : redactUrl(config.managementUrl),
    hookSecret: "***",
  };
}
