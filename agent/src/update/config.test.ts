import { ConfigError } from "../../../shared/index.js";
import { describe, expect, it } from "vitest";
import { parseAgentConfig } from "../config/index.js";

const base = { controlPlaneUrl: "https://plane.example:8443/hw", stateDir: "/var/lib/hashward", model: "S19", firmwareVersion: "1.0.0", platform: { kind: "simulated", root: "/b" } };

describe("config: update section", () => {
  it("defaults the TUF URLs under the control plane and caps sizes and timeouts", () => {
    const config = parseAgentConfig(base, { baseDir: "/etc/hashward" });
    expect(config.update).toEqual({
      metadataUrl: "https://plane.example:8443/hw/tuf/metadata/",
      targetsUrl: "https://plane.example:8443/hw/tuf/targets/",
      maxImageBytes: 512 * 1024 * 1024,
      metadataTimeoutMs: 30_000,
      targetTimeoutMs: 1_800_000,
      stallTimeoutMs: 60_000,
      downloadAttempts: 5,
    });
    const withRoot = parseAgentConfig({ ...base, update: { trustedRootFile: "root.json" } }, { baseDir: "/etc/hashward" });
    expect(withRoot.update.trustedRootFile).toBe("/etc/hashward/root.json");
  });

  it("names the option and value on errors", () => {
    for (const [update, option] of [
      [{ maxImageBytes: 10 }, "update.maxImageBytes"],
      [{ metadataTimeoutMs: 1 }, "update.metadataTimeoutMs"],
      [{ stallTimeoutMs: 10 }, "update.stallTimeoutMs"],
      [{ downloadAttempts: 0 }, "update.downloadAttempts"],
      [{ targetsUrl: "ftp://x" }, "update.targetsUrl"],
      [{ rootFile: "x" }, "update.rootFile"],
    ] as const) {
      const error = (() => {
        try {
          parseAgentConfig({ ...base, update });
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(error, option).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).option).toBe(option);
    }
  });
});
