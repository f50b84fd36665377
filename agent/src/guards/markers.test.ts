/**
 * The plane's built-in indicators (control-plane/src/policy/defaults.ts), as the agent receives them in a signed
 * set-policy, against a simulated board: each publicly known Antminer malware marker (Hive OS virus-check) is
 * found with its evidence, payloads dropped deep in the writable places are found, and a clean board raises
 * nothing (HW-GUARD-5, HW-GUARD-9).
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BUILT_IN_INDICATORS } from "../../../control-plane/src/policy/defaults.js";
import { withReferenceDigests } from "../../../control-plane/src/policy/effective.js";
import { guardPolicySchema } from "../../../control-plane/src/policy/schemas.js";
import { createSimulatedBoard } from "../platform/index.js";
import { policySchema } from "../policy/index.js";
import { prepareSimulatedBoardFiles } from "../sim-miner/index.js";
import { tempDir } from "../testing/index.js";
import { IndicatorMemory, indicatorGuard, platformReader } from "./index.js";

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

/** The built-ins as the plane sends them to a device with approved reference values, parsed by the agent. */
function deliveredBuiltIns() {
  const policy = { version: 1, pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: [] }, network: { allowedHosts: [] }, indicators: withReferenceDigests(BUILT_IN_INDICATORS, []) };
  guardPolicySchema.parse(policy); // the plane's own wire check accepts what it sends
  return policySchema.parse(policy).indicators; // and the agent accepts it
}

function board() {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const root = join(dir.path, "board");
  const reader = platformReader(createSimulatedBoard(root, { model: "S19", firmwareVersion: "2024.06.1" }));
  prepareSimulatedBoardFiles(root); // /etc/hosts and /proc/net/tcp{,6} as the simulated miner writes them
  const memory = new IndicatorMemory(join(dir.path, "indicator-memory.json"));
  const put = (path: string, body: string, mode = 0o644) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), body);
    chmodSync(join(root, path), mode);
  };
  const scan = () => indicatorGuard(deliveredBuiltIns(), reader, memory);
  return { root, put, scan };
}

describe("built-in malware markers (Hive OS virus-check) on a simulated board", () => {
  it("a clean simulated board raises no finding (false-alarm check), cycle after cycle", () => {
    const b = board();
    expect(b.scan()).toEqual([]);
    expect(b.scan()).toEqual([]);
  });

  it.each([
    ["Nightswitcher config", "/config/bNminer.conf", "known-bad-names", "contraindicated", { path: "/config/bNminer.conf", kind: "file" }],
    ["Nightswitcher config moved deeper", "/config/.cache/x/bNminer.conf", "known-bad-names", "contraindicated", { path: "/config/.cache/x/bNminer.conf", kind: "file" }],
    ["antminers dropped in /var", "/var/run/antminers", "known-bad-names", "contraindicated", { path: "/var/run/antminers" }],
    ["Antbuild v2 egrep", "/usr/bin/egrep", "antbuild-egrep", "contraindicated", "present"],
    ["suspicious file in /nvdata", "/nvdata/.shadow", "hive-suspicious-nvdata-shadow", "warning", "seen"],
    ["suspicious hidden file in /config", "/config/.antminers", "hive-suspicious-config-antminers", "warning", "seen"],
    ["antfalgZ marker", "/usr/antfalgZ", "hive-suspicious-usr-antfalgz", "warning", "seen"],
    ["antfalg marker", "/usr/antfalg", "hive-suspicious-usr-antfalg", "warning", "seen"],
    ["antminers binary", "/usr/bin/antminers", "hive-suspicious-usr-bin-antminers", "warning", "seen"],
    ["Antbuild v2 preload", "/etc/ld.so.preload", "ld-so-preload", "contraindicated", "present"],
    ["Antbuild v2 binary", "/usr/bin/build", "antbuild-binary", "contraindicated", "present"],
  ] as const)("%s: %s is found with its evidence", (_what, path, indicator, tier, seen) => {
    const b = board();
    b.put(path, "payload\n");
    const found = b.scan();
    // the marker's own indicator names it with its evidence (a twin "reappears" indicator may name it too)
    expect(found).toContainEqual(expect.objectContaining({ guard: "indicator", subject: path, tier, expected: expect.objectContaining({ indicator }), seen: typeof seen === "string" ? seen : expect.objectContaining(seen) }));
    expect(found.every((f) => f.subject === path)).toBe(true);
  });

  it("bitmsfser.info in /etc/hosts is found, whatever the name around it", () => {
    const b = board();
    b.put("/etc/hosts", "127.0.0.1 localhost\n1.2.3.4 bitmsfser.info\n5.6.7.8 www.BITMSFSER.info.\n");
    expect(b.scan().map((f) => [f.subject, f.tier, f.seen])).toEqual([
      ["/etc/hosts: bitmsfser.info", "contraindicated", "1.2.3.4 bitmsfser.info"],
      ["/etc/hosts: www.BITMSFSER.info.", "contraindicated", "5.6.7.8 www.BITMSFSER.info."],
    ]);
  });

  it("an oversized /usr/bin/ntpd is a warning with its size; stock sizes are not", () => {
    const b = board();
    b.put("/usr/bin/ntpd", "x".repeat(447_336), 0o755);
    expect(b.scan()).toEqual([]);
    b.put("/usr/bin/ntpd", "x".repeat(500_000), 0o755);
    expect(b.scan()).toEqual([expect.objectContaining({ subject: "/usr/bin/ntpd", tier: "warning", claim: "executables", expected: { indicator: "ntpd-oversized", kind: "file-size-above" }, seen: { path: "/usr/bin/ntpd", size: 500_000 } })]);
  });

  it("/nvdata/.shadow coming back after removal is contraindicated ('reappeared')", () => {
    const b = board();
    b.put("/nvdata/.shadow", "root:x:0:0\n");
    expect(b.scan()).toEqual([expect.objectContaining({ subject: "/nvdata/.shadow", tier: "warning", seen: "seen" })]);
    rmSync(join(b.root, "nvdata/.shadow"));
    expect(b.scan()).toEqual([]);
    b.put("/nvdata/.shadow", "root:x:0:0\n");
    expect(b.scan()).toEqual([expect.objectContaining({ subject: "/nvdata/.shadow", tier: "contraindicated", seen: "reappeared" })]);
  });

  it("an executable dropped deep in /config, /nvdata, /var or /tmp is found with {path, sha256, size}", () => {
    const b = board();
    for (const path of ["/config/a/b/c/.x", "/nvdata/run.sh", "/var/volatile/tmp/y", "/tmp/.ICE-unix/z"]) b.put(path, "#!/bin/sh\n", 0o755);
    const found = b.scan();
    expect(found.map((f) => f.subject).sort()).toEqual(["/config/a/b/c/.x", "/nvdata/run.sh", "/tmp/.ICE-unix/z", "/var/volatile/tmp/y"]);
    expect(found.every((f) => f.tier === "contraindicated" && f.claim === "executables")).toBe(true);
    expect(found.find((f) => f.subject === "/config/a/b/c/.x")?.seen).toEqual({ path: "/config/a/b/c/.x", sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: 10 });
  });
});
