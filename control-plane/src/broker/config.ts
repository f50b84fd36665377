/**
 * Which broker the plane uses (HASHWARD_BROKER) and, for the external modes (RabbitMQ, EMQX), how to reach it and
 * where its hooks listen. Read by loadConfig (control-plane/src/config); every error is a ConfigError naming the variable.
 */
import { ConfigError } from "../../../shared/errors/index.js";

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
    }
  | {
      kind: "emqx";
      /** mqtt:// or mqtts:// URLs of EMQX's listeners the plane's own MQTT 5 client connects to (several: tried in turn). */
      mqttUrls: string[];
      /** http(s)://<api key>:<api secret>@host:18083 of EMQX's REST API (revocation kicks the client through it); optional. */
      apiUrl?: string;
      /** The hook listener (EMQX's HTTP authenticator and authorizer ask here): loopback by default. */
      hookHost: string;
      hookPort: number;
      /** Shared secret (HW-BROKER-2): EMQX sends it as `Authorization: Bearer <secret>`; also the plane's MQTT password. */
      hookSecret: string;
      /** The shared-subscription group the replicas ingest in (`$share/<group>/asic/v1/+/up/+`). */
      shareGroup: string;
    };

type Env = Record<string, string | undefined>;

function fail(name: string, value: string, why: string): never {
  throw new ConfigError(`${name}=${value}: ${why}`, name);
}

/** Hides URL passwords (user:pass@) in anything logged or thrown. */
export function redactUrl(value: string): string {
  return value.replace(/\/\/([^:@/]+):[^@/]*@/g, "//$1:***@");
}

/** An integer variable within [min, max], or `fallback` when unset; a ConfigError naming it otherwise. */
function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = env[name]?.trim();
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(name, value, `must be an integer between ${min} and ${max}`);
  return n;
}

/** A comma list of URLs with one of `protocols`; a ConfigError naming the variable (password hidden) otherwise. */
function urlList(env: Env, name: string, protocols: string[]): string[] {
  const urls = (env[name] ?? "").split(",").map((u) => u.trim()).filter((u) => u !== "");
  for (const u of urls) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      fail(name, redactUrl(u), "is not a URL");
    }
    if (!protocols.includes(parsed.protocol)) fail(name, redactUrl(u), `must start with ${protocols.map((p) => `${p}//`).join(" or ")}`);
  }
  return urls;
}

/** The hook listener and its secret (HW-BROKER-2), the same variables for every external broker. */
function hookSettings(env: Env, kind: string): { hookHost: string; hookPort: number; hookSecret: string } {
  const secret = env.HASHWARD_BROKER_HOOK_SECRET ?? "";
  if (secret.length < 32 || !/^[A-Za-z0-9_-]+$/.test(secret)) {
    throw new ConfigError(`HASHWARD_BROKER_HOOK_SECRET: required with HASHWARD_BROKER=${kind}, at least 32 characters of [A-Za-z0-9_-]`, "HASHWARD_BROKER_HOOK_SECRET");
  }
  const hookHost = env.HASHWARD_BROKER_HOOK_HOST?.trim() || "127.0.0.1";
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(hookHost)) fail("HASHWARD_BROKER_HOOK_HOST", hookHost, "must be a host name or IP address");
  return { hookHost, hookPort: intVar(env, "HASHWARD_BROKER_HOOK_PORT", 8090, 0, 65535), hookSecret: secret };
}

/** An optional http(s) URL variable (password hidden in errors). */
function optionalHttpUrl(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  if (!value) return undefined;
  return urlList({ [name]: value }, name, ["http:", "https:"])[0];
}

/**
 * HASHWARD_BROKER=embedded (default) | rabbitmq | emqx. rabbitmq requires HASHWARD_RABBITMQ_URL, emqx requires
 * HASHWARD_EMQX_MQTT_URL; both require HASHWARD_BROKER_HOOK_SECRET and HASHWARD_PUBLIC_MQTT_URL (checked by the
 * caller: agents must be told the broker's address, which the plane does not listen on itself).
 * Throws ConfigError naming the variable and its value (passwords hidden).
 */
export function loadBrokerConfig(env: Env): BrokerConfig {
  const kind = env.HASHWARD_BROKER?.trim() || "embedded";
  if (kind === "embedded") return { kind };
  if (kind === "emqx") {
    const mqttUrls = urlList(env, "HASHWARD_EMQX_MQTT_URL", ["mqtt:", "mqtts:"]);
    if (mqttUrls.length === 0) throw new ConfigError("HASHWARD_EMQX_MQTT_URL: required with HASHWARD_BROKER=emqx (mqtt://emqx.example:1883)", "HASHWARD_EMQX_MQTT_URL");
    const shareGroup = env.HASHWARD_EMQX_SHARE_GROUP?.trim() || "hashward";
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(shareGroup)) fail("HASHWARD_EMQX_SHARE_GROUP", shareGroup, "must be 1-64 characters of [A-Za-z0-9_-]");
    const apiUrl = optionalHttpUrl(env, "HASHWARD_EMQX_API_URL");
    return { kind, mqttUrls, ...hookSettings(env, kind), shareGroup, ...(apiUrl === undefined ? {} : { apiUrl }) };
  }
  if (kind !== "rabbitmq") fail("HASHWARD_BROKER", kind, "must be one of embedded, rabbitmq, emqx");
  const urls = urlList(env, "HASHWARD_RABBITMQ_URL", ["amqp:", "amqps:"]);
  if (urls.length === 0) throw new ConfigError("HASHWARD_RABBITMQ_URL: required with HASHWARD_BROKER=rabbitmq (amqp://user:pass@host:5672)", "HASHWARD_RABBITMQ_URL");
  const config: BrokerConfig = {
    kind: "rabbitmq",
    amqpUrls: urls,
    ...hookSettings(env, kind),
    prefetch: intVar(env, "HASHWARD_RABBITMQ_PREFETCH", 256, 1, 65535),
    exchange: "amq.topic",
    vhost: "/",
  };
  const management = optionalHttpUrl(env, "HASHWARD_RABBITMQ_MANAGEMENT_URL");
  if (management !== undefined) config.managementUrl = management;
  return config;
}

/** The broker config as it may be logged: passwords and the hook secret hidden. */
export function describeBrokerConfig(config: BrokerConfig): Record<string, unknown> {
  if (config.kind === "embedded") return config;
  if (config.kind === "emqx") {
    return { ...config, mqttUrls: config.mqttUrls.map(redactUrl), apiUrl: config.apiUrl === undefined ? undefined : redactUrl(config.apiUrl), hookSecret: "***" };
  }
  return {
    ...config,
    amqpUrls: config.amqpUrls.map(redactUrl),
    managementUrl: config.managementUrl === undefined ? undefined : redactUrl(config.managementUrl),
    hookSecret: "***",
  };
}
