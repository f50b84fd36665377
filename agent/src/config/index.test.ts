import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/index.js";
import { tempDir } from "../testing/index.js";
import { envName, loadAgentConfig, parseAgentConfig } from "./index.js";

const base = {
  controlPlaneUrl: "https://plane.example.net",
  mqttUrl: "mqtts://plane.example.net:8883",
  stateDir: "state",
  model: "S19",
  firmwareVersion: "1.0.0",
  platform: { kind: "simulated", root: "board" },
};

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("agent config", () => {
  const dirs: (() => void)[] = [];
  afterEach(() => dirs.splice(0).forEach((c) => c()));

  it("applies defaults and resolves paths against the file's directory", () => {
    const dir = tempDir();
    dirs.push(dir.cleanup);
    const file = join(dir.path, "agent.json");
    writeFileSync(file, JSON.stringify(base));
    const config = loadAgentConfig(file, {});
    expect(config.stateDir).toBe(join(dir.path, "state"));
    expect(config.keyFile).toBe(join(dir.path, "state", "device.key"));
    expect(config.platform.root).toBe(join(dir.path, "board"));
    expect(config).toMatchObject({ heartbeatIntervalMs: 10_000, attestIntervalMs: 300_000, reconnectMinMs: 500, reconnectMaxMs: 30_000, enrollPollMs: 5_000, outboxMaxEvents: 1000, watch: true, logLevel: "info", measure: { paths: [], includeAgentBinary: true } });
  });

  it.each([
    [{ controlPlaneUrl: "ftp://x" }, "controlPlaneUrl", "ftp://x"],
    [{ mqttUrl: "http://broker" }, "mqttUrl", "http://broker"],
    [{ heartbeatIntervalMs: 5 }, "heartbeatIntervalMs", "5"],
    [{ attestIntervalMs: 10 }, "attestIntervalMs", "10"],
    [{ outboxMaxEvents: 100_001 }, "outboxMaxEvents", "100001"],
    [{ commandPublicKey: "not-a-key" }, "commandPublicKey", "not-a-key"],
    [{ measure: { paths: ["relative/path"] } }, "measure.paths.0", "relative/path"],
    [{ measure: { paths: ["/firmware/../etc"] } }, "measure.paths.0", "/firmware/../etc"],
    [{ reconnectMinMs: 5000, reconnectMaxMs: 1000 }, "reconnectMaxMs", "1000"],
    [{ logLevel: "loud" }, "logLevel", "loud"],
    [{ platform: { kind: "whatsminer", root: "/" } }, "platform.kind", "whatsminer"],
  ])("names the option and value for %j", (override, option, value) => {
    const error = configError(() => parseAgentConfig({ ...base, ...override }));
    expect(error.option).toBe(option);
    expect(error.message).toContain(option);
    expect(error.message).toContain(value);
  });

  it("antminer A/B slots on U-Boot: defaults, and bad slot devices named (HW-BOARD-2)", () => {
    const antminer = (slots: unknown) => ({ ...base, platform: { kind: "antminer", root: "/", slots } });
    const config = parseAgentConfig(antminer({ a: { kind: "block", path: "/dev/mmcblk0p2" }, b: { kind: "block", path: "/dev/mmcblk0p3" } }));
    expect(config.platform).toMatchObject({ slots: { fwEnvConfig: "/etc/fw_env.config", bootlimit: 3, rebootCommand: ["reboot"] } });
    const same = configError(() => parseAgentConfig(antminer({ a: { kind: "ubi", volume: "/dev/ubi0_1" }, b: { kind: "ubi", volume: "/dev/ubi0_1" } })));
    expect(same.option).toBe("platform.slots.b");
    expect(same.message).toContain("different devices");
    expect(configError(() => parseAgentConfig(antminer({ a: { kind: "nor", path: "/dev/mtd4" }, b: { kind: "mtd", device: "/dev/mtd5" } }))).option).toBe("platform.slots.a.kind");
    expect(configError(() => parseAgentConfig(antminer({ a: { kind: "mtd", device: "dev/mtd4" }, b: { kind: "mtd", device: "/dev/mtd5" } }))).option).toBe("platform.slots.a.device");
    expect(configError(() => parseAgentConfig(antminer({ a: { kind: "mtd", device: "/dev/mtd4" }, b: { kind: "mtd", device: "/dev/mtd5" }, bootlimit: 10 }))).option).toBe("platform.slots.bootlimit");
  });

  it("names a missing required option and unknown keys", () => {
    const { model: _m, ...withoutModel } = base;
    expect(configError(() => parseAgentConfig(withoutModel)).option).toBe("model");
    const unknown = configError(() => parseAgentConfig({ ...base, heartbeatInterval: 5 }));
    expect(unknown.option).toBe("heartbeatInterval");
    expect(unknown.message).toContain("heartbeatInterval");
  });

  it("takes HASHWARD_AGENT_* overrides and names the env variable in errors", () => {
    const dir = tempDir();
    dirs.push(dir.cleanup);
    const file = join(dir.path, "agent.json");
    writeFileSync(file, JSON.stringify(base));
    expect(envName("mqttUrl")).toBe("HASHWARD_AGENT_MQTT_URL");
    expect(envName("measure.includeAgentBinary")).toBe("HASHWARD_AGENT_MEASURE_INCLUDE_AGENT_BINARY");
    const config = loadAgentConfig(file, {
      HASHWARD_AGENT_MQTT_URL: "mqtt://127.0.0.1:1883",
      HASHWARD_AGENT_HEARTBEAT_INTERVAL_MS: "250",
      HASHWARD_AGENT_WATCH: "false",
      HASHWARD_AGENT_MEASURE_PATHS: "/firmware,/config/cgminer.conf",
      HASHWARD_AGENT_PLATFORM_ROOT: "/srv/board",
    });
    expect(config).toMatchObject({ mqttUrl: "mqtt://127.0.0.1:1883", heartbeatIntervalMs: 250, watch: false, platform: { root: "/srv/board" }, measure: { paths: ["/firmware", "/config/cgminer.conf"] } });
    const bad = configError(() => loadAgentConfig(file, { HASHWARD_AGENT_HEARTBEAT_INTERVAL_MS: "50" }));
    expect(bad.option).toBe("HASHWARD_AGENT_HEARTBEAT_INTERVAL_MS");
    expect(bad.message).toContain("50");
    expect(configError(() => loadAgentConfig(file, { HASHWARD_AGENT_WATCH: "maybe" })).option).toBe("HASHWARD_AGENT_WATCH");
  });

  it("reports unreadable and non-JSON files against --config", () => {
    const dir = tempDir();
    dirs.push(dir.cleanup);
    expect(configError(() => loadAgentConfig(join(dir.path, "nope.json"), {})).option).toBe("--config");
    const file = join(dir.path, "bad.json");
    writeFileSync(file, "{");
    expect(configError(() => loadAgentConfig(file, {})).option).toBe("--config");
  });
});
