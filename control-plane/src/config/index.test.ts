import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors/index.js";
import { describeConfig, loadConfig } from "./index.js";

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("has defaults for everything", () => {
    expect(loadConfig({})).toEqual({
      httpPort: 8080,
      httpHost: "0.0.0.0",
      mqttPort: 1883,
      mqttHost: "0.0.0.0",
      dataDir: resolve("./data"),
      broker: { kind: "embedded" },
      commandTtlMs: 300_000,
      challengeTtlMs: 60_000,
      commandRetryMs: 5_000,
      staleAfterMs: 90_000,
      autoQuarantine: "contraindicated",
      logLevel: "info",
      maxMqttClients: 20_000,
      maxPendingDevices: 10_000,
      tufTimestampTtlMs: 86_400_000,
      tufSnapshotTtlMs: 7 * 86_400_000,
      tufRenewCheckMs: 60_000,
      tufMaxImageBytes: 512 * 1024 * 1024,
      rolloutTickMs: 5_000,
      updateCommandTtlMs: 3_600_000,
      httpBodyTimeoutMs: 10_000,
      httpKeepAliveTimeoutMs: 65_000,
      sessionTakeoverThreshold: 3,
      sessionTakeoverWindowMs: 60_000,
      // HW-TLS-1: TLS on unless HASHWARD_TLS=off.
      tls: { enabled: true, extraNames: [], certLifetimeMs: 90 * 86_400_000, renewCheckMs: 3_600_000, requireClientCert: false },
      eventStreamMaxQueue: 1_000,
      eventStreamsMax: 2_000,
      eventStreamsPerToken: 16,
      eventPollMs: 1_000,
      webhookAllowLoopback: false,
      webhookMaxConsecutiveFailures: 10,
      webhookMaxAttempts: 12,
      webhookRetryBaseMs: 5_000,
      webhookTimeoutMs: 10_000,
      webhookTickMs: 1_000,
      leaseTtlMs: 15_000,
      telemetrySampleMs: 300_000,
      telemetryRetentionMs: 86_400_000,
      uiSessionTtlMs: 43_200_000,
    });
  });

  it.each([
    ["HASHWARD_TLS", "maybe"],
    ["HASHWARD_TLS_SAN", "plane.example,bad host"],
    ["HASHWARD_TLS_CERT_TTL_MS", "1000"],
    ["HASHWARD_MQTT_CLIENT_CERT", "sometimes"],
    ["HASHWARD_LEASE_TTL_MS", "100"],
  ])("refuses %s=%s naming it", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(expect.objectContaining({ option: name }));
  });

  it("refuses mutual TLS without TLS", () => {
    expect(() => loadConfig({ HASHWARD_TLS: "off", HASHWARD_MQTT_CLIENT_CERT: "required" })).toThrow(expect.objectContaining({ option: "HASHWARD_MQTT_CLIENT_CERT" }));
  });

  it("reads every variable", () => {
    const config = loadConfig({
      HASHWARD_HTTP_PORT: "0",
      HASHWARD_HTTP_HOST: "127.0.0.1",
      HASHWARD_MQTT_PORT: "0",
      HASHWARD_MQTT_HOST: "::1",
      HASHWARD_DATA_DIR: "/tmp/hw",
      DATABASE_URL: "postgresql://u:secret@db/hashward",
      HASHWARD_PUBLIC_MQTT_URL: "mqtts://plane.example:8883",
      HASHWARD_COMMAND_TTL_MS: "1000",
      HASHWARD_CHALLENGE_TTL_MS: "2000",
      HASHWARD_COMMAND_RETRY_MS: "250",
      HASHWARD_STALE_AFTER_MS: "3000",
      HASHWARD_AUTO_QUARANTINE: "off",
      HASHWARD_LOG_LEVEL: "debug",
      HASHWARD_MAX_MQTT_CLIENTS: "5",
      HASHWARD_HTTP_BODY_TIMEOUT_MS: "500",
      HASHWARD_HTTP_KEEP_ALIVE_TIMEOUT_MS: "2000",
      HASHWARD_LEASE_TTL_MS: "3000",
      HASHWARD_SECRETS_KEY_FILE: "/tmp/hw-secrets.key",
      HASHWARD_TUF_IMAGE_DIR: "/srv/hashward/images",
    });
    expect(config).toMatchObject({
      httpPort: 0,
      mqttPort: 0,
      mqttHost: "::1",
      dataDir: "/tmp/hw",
      databaseUrl: "postgresql://u:secret@db/hashward",
      publicMqttUrl: "mqtts://plane.example:8883",
      commandTtlMs: 1000,
      challengeTtlMs: 2000,
      commandRetryMs: 250,
      staleAfterMs: 3000,
      autoQuarantine: "off",
      logLevel: "debug",
      maxMqttClients: 5,
      httpBodyTimeoutMs: 500,
      httpKeepAliveTimeoutMs: 2000,
      leaseTtlMs: 3000,
      secretsKeyFile: "/tmp/hw-secrets.key",
      tufImageDir: "/srv/hashward/images",
    });
    expect(describeConfig(config).databaseUrl).toBe("postgresql://u:***@db/hashward");
  });

  it("treats empty values as unset", () => {
    expect(loadConfig({ HASHWARD_HTTP_PORT: "", DATABASE_URL: " " })).toMatchObject({ httpPort: 8080 });
    expect(loadConfig({ DATABASE_URL: "" }).databaseUrl).toBeUndefined();
  });

  it.each([
    ["HASHWARD_HTTP_PORT", "http"],
    ["HASHWARD_HTTP_PORT", "65536"],
    ["HASHWARD_HTTP_PORT", "-1"],
    ["HASHWARD_MQTT_PORT", "1.5"],
    ["HASHWARD_HTTP_HOST", "http://x"],
    ["HASHWARD_COMMAND_TTL_MS", "10"],
    ["HASHWARD_CHALLENGE_TTL_MS", "99999999999"],
    ["HASHWARD_COMMAND_RETRY_MS", "5s"],
    ["HASHWARD_STALE_AFTER_MS", "0"],
    ["HASHWARD_AUTO_QUARANTINE", "always"],
    ["HASHWARD_LOG_LEVEL", "verbose"],
    ["HASHWARD_MAX_MQTT_CLIENTS", "0"],
    ["DATABASE_URL", "mysql://db/x"],
    ["DATABASE_URL", "not a url"],
    ["HASHWARD_PUBLIC_MQTT_URL", "http://plane"],
  ])("refuses %s=%s naming the variable and value", (name, value) => {
    const error = configError({ [name]: value });
    expect(error.option).toBe(name);
    expect(error.message).toContain(name);
    expect(error.message).toContain(JSON.stringify(value));
  });

  describe("HASHWARD_BROKER=rabbitmq", () => {
    const rabbit = {
      HASHWARD_BROKER: "rabbitmq",
      HASHWARD_RABBITMQ_URL: "amqp://hashward:s3cretpass@127.0.0.1:5672",
      HASHWARD_RABBITMQ_MANAGEMENT_URL: "http://hashward:s3cretpass@127.0.0.1:15672",
      HASHWARD_BROKER_HOOK_SECRET: "k".repeat(32),
      HASHWARD_PUBLIC_MQTT_URL: "mqtts://broker.farm.example:8883",
    };

    it("reads the external broker mode; the hooks listen on loopback by default", () => {
      expect(loadConfig(rabbit).broker).toMatchObject({ kind: "rabbitmq", amqpUrls: [rabbit.HASHWARD_RABBITMQ_URL], hookHost: "127.0.0.1", hookPort: 8090, prefetch: 256 });
    });

    it.each([
      ["HASHWARD_BROKER", "kafka"],
      ["HASHWARD_RABBITMQ_URL", ""],
      ["HASHWARD_RABBITMQ_URL", "http://127.0.0.1:5672"],
      ["HASHWARD_BROKER_HOOK_SECRET", "short"],
      ["HASHWARD_BROKER_HOOK_SECRET", `${"k".repeat(32)}/x`],
      ["HASHWARD_PUBLIC_MQTT_URL", ""],
      ["HASHWARD_RABBITMQ_MANAGEMENT_URL", "ftp://x"],
    ])("refuses %s=%s naming it", (name, value) => {
      expect(() => loadConfig({ ...rabbit, [name]: value })).toThrow(expect.objectContaining({ option: name }));
    });

    it("never logs the broker passwords or the hook secret", () => {
      const text = JSON.stringify(describeConfig(loadConfig(rabbit)));
      expect(text).not.toContain("s3cretpass");
      expect(text).not.toContain("k".repeat(32));
    });
  });

  describe("HASHWARD_BROKER=emqx", () => {
    const emqx = {
      HASHWARD_BROKER: "emqx",
      HASHWARD_EMQX_MQTT_URL: "mqtts://emqx.farm.example:8883,mqtts://emqx2.farm.example:8883",
      HASHWARD_EMQX_API_URL: "https://apikey:s3cretpass@emqx.farm.example:18083",
      HASHWARD_BROKER_HOOK_SECRET: "k".repeat(32),
      HASHWARD_PUBLIC_MQTT_URL: "mqtts://broker.farm.example:8883",
    };

    it("reads the EMQX mode: listeners, REST API, hooks on loopback, share group `hashward`", () => {
      expect(loadConfig(emqx).broker).toEqual({
        kind: "emqx",
        mqttUrls: ["mqtts://emqx.farm.example:8883", "mqtts://emqx2.farm.example:8883"],
        apiUrl: emqx.HASHWARD_EMQX_API_URL,
        hookHost: "127.0.0.1",
        hookPort: 8090,
        hookSecret: "k".repeat(32),
        shareGroup: "hashward",
      });
    });

    it.each([
      ["HASHWARD_EMQX_MQTT_URL", ""],
      ["HASHWARD_EMQX_MQTT_URL", "amqp://emqx:5672"],
      ["HASHWARD_EMQX_API_URL", "ftp://emqx"],
      ["HASHWARD_EMQX_SHARE_GROUP", "a/b"],
      ["HASHWARD_EMQX_SHARE_GROUP", "+"],
      ["HASHWARD_BROKER_HOOK_SECRET", "short"],
      ["HASHWARD_BROKER_HOOK_PORT", "70000"],
      ["HASHWARD_PUBLIC_MQTT_URL", ""],
    ])("refuses %s=%s naming it", (name, value) => {
      expect(() => loadConfig({ ...emqx, [name]: value })).toThrow(expect.objectContaining({ option: name }));
    });

    it("never logs the API secret or the hook secret", () => {
      const text = JSON.stringify(describeConfig(loadConfig(emqx)));
      expect(text).not.toContain("s3cretpass");
      expect(text).not.toContain("k".repeat(32));
    });
  });

  it("never echoes a database password", () => {
    const error = configError({ DATABASE_URL: "mysql://u:hunter2@db/x" });
    expect(error.message).not.toContain("hunter2");
    expect(error.option).toBe("DATABASE_URL");
  });
});
