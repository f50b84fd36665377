/** The cross-compiled arm64 agent runs under qemu-user: `--version` and one `measure`. */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { REPO_ROOT, writeAgentConfig } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { describeUnless } from "../support/skip.js";

const ARM64_BINARY = join(REPO_ROOT, "dist/agent/hashward-agent-linux-arm64");
const QEMU = "/usr/bin/qemu-aarch64-static";
const SYSROOT = "/usr/aarch64-linux-gnu";
const missing = [ARM64_BINARY, QEMU, SYSROOT].filter((path) => !existsSync(path));
// In CI the set-up installs qemu and the build makes the binary, so a gap there is a failure, not a skip.
const runIt = missing.length === 0 || process.env.CI === "true";

describeUnless(runIt ? null : `missing ${missing.join(", ")} (install qemu-user-static libc6-arm64-cross; npm run build:agent)`, "arm64 agent under qemu-user", () => {
  const run = (...args: string[]) => execFileSync(QEMU, ["-L", SYSROOT, ARM64_BINARY, ...args], { encoding: "utf8", timeout: 120_000 });

  it("prints its version", () => {
    expect(run("--version")).toMatch(/^hashward-agent \d+\.\d+\.\d+/);
  });

  it("measures a simulated board", async () => {
    const dir = tempDir("arm64").path;
    const root = join(dir, "board");
    await createSimulatedBoard(root, { model: "S19" });
    const config = writeAgentConfig(dir, {
      controlPlaneUrl: "http://127.0.0.1:9", mqttUrl: "mqtt://127.0.0.1:9", stateDir: join(dir, "state"),
      model: "S19", firmwareVersion: "1.0.0", platform: { kind: "simulated", root }, measure: { paths: ["/firmware", "/config"] },
    });
    const measurements = JSON.parse(run("measure", "--config", config));
    expect(measurements.map((m: { path: string }) => m.path)).toContain("/config/cgminer.conf");
    expect(measurements.every((m: { sha256: string }) => /^[0-9a-f]{64}$/.test(m.sha256))).toBe(true);
  });
});
