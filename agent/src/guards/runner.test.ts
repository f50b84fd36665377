import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../log/index.js";
import { MinerApiClient } from "../miner-api/index.js";
import { createSimulatedBoard, SimulatedBoard } from "../platform/index.js";
import { PolicyStore, type GuardPolicy } from "../policy/index.js";
import { CLEAN_SOCKETS, SimMiner, writeSimulatedSockets } from "../sim-miner/index.js";
import { tempDir, waitFor } from "../testing/index.js";
import { GuardRunner, HostResolver, IndicatorMemory, KnownAddresses, KnownGoodPools, platformReader, ReportedFindings, type Finding, type GuardRunnerDeps, type LookupAll } from "./index.js";

const POLICY: GuardPolicy = {
  version: 1,
  pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["farm\\.worker\\d+"] },
  network: { allowedHosts: [] },
  indicators: [{ id: "antbuild-preload", kind: "file-present", path: "/etc/ld.so.preload", severity: "critical", description: "Antbuild: ld.so.preload present" }],
};

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { mode?: "monitor" | "enforcing"; policy?: GuardPolicy | null; deps?: Partial<GuardRunnerDeps>; lookup?: LookupAll } = {}) {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const root = join(dir.path, "board");
  const board = createSimulatedBoard(root, { model: "S19" });
  const miner = new SimMiner({ root });
  const port = await miner.start();
  cleanups.push(() => miner.close());
  const stateDir = join(dir.path, "state");
  const policy = PolicyStore.open(dir.path);
  if (opts.policy !== null) policy.apply(opts.policy ?? POLICY, Date.now());
  const events = { changed: [] as Finding[][], added: [] as Finding[], enforced: [] as string[][] };
  let mode = opts.mode ?? "monitor";
  const runner = new GuardRunner({
    platform: board,
    board: platformReader(board),
    policy,
    minerApi: new MinerApiClient({ host: "127.0.0.1", port, timeoutMs: 1000 }),
    resolver: new HostResolver({ lookup: opts.lookup ?? (async (host) => (host === "pool.example.net" ? ["198.51.100.7"] : host === "plane.example.net" ? ["192.0.2.10"] : [])) }),
    memory: new IndicatorMemory(join(dir.path, "memory.json")),
    knownGood: new KnownGoodPools(join(dir.path, "known-good.json")),
    settings: { minerConfigPaths: ["/config/bmminer.conf", "/config/cgminer.conf"], allowedHosts: [], allowedListenPorts: [22, 80, 443, 4028] },
    mode: () => mode,
    controlPlaneUrls: () => ["http://plane.example.net:8080", "mqtt://plane.example.net:1883"],
    minerStopped: () => false,
    onFindingsChanged: (f) => events.changed.push(f),
    onNewFinding: (f) => events.added.push(f),
    onEnforced: (a) => events.enforced.push(a),
    log: silentLogger(),
    ...opts.deps,
  });
  cleanups.push(() => runner.stop());
  return { dir: dir.path, root, board, miner, port, runner, events, stateDir, setMode: (m: typeof mode) => (mode = m) };
}

/** Another process speaking the real protocol: one command per connection, like an attacker on the LAN. */
function attackFromAnotherProcess(port: number, commands: { command: string; parameter: string }[]): Promise<string[]> {
  const script = `
    const net = require("node:net");
    const send = (req) => new Promise((resolve, reject) => {
      const s = net.connect(${port}, "127.0.0.1", () => s.end(JSON.stringify(req)));
      let out = ""; s.on("data", (d) => (out += d)); s.on("close", () => resolve(out.replace(/\\0/g, ""))); s.on("error", reject);
    });
    (async () => { for (const req of ${JSON.stringify(commands)}) process.stdout.write(JSON.stringify(JSON.parse(await send(req)).STATUS[0].STATUS) + "\\n"); })();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out.trim().split("\n")) : reject(new Error(`attacker exited ${code}`))));
  });
}

const subjects = (findings: Finding[]) => findings.map((f) => `${f.guard} ${f.subject}`);

describe("GuardRunner on a simulated board", () => {
  it("a clean board raises nothing, reports telemetry and learns the known-good pools", async () => {
    const { runner, events } = await setup();
    const cycle = await runner.runNow();
    expect(cycle.findings).toEqual([]);
    expect(events.changed).toEqual([]);
    expect(events.added).toEqual([]);
    expect(runner.findings).toEqual([]);
    expect(cycle.telemetry).toMatchObject({ hashrateGhs: 13512.34, hashrateAvgGhs: 13500.12, rejected: 1, temperaturesC: [60, 61, 62, 75, 76, 77], fanRpm: [5400, 5460, 5520, 5580], activePool: "stratum+tcp://pool.example.net:3333" });
  });

  it("addpool then switchpool from another process is detected by the next cycle (within one interval), reported once", async () => {
    const { runner, events, port } = await setup();
    runner.start(60_000); // the first cycle runs at once; the next only on runNow() here (deterministic)
    await waitFor("first cycle", () => runner.findings !== null);
    const statuses = await attackFromAnotherProcess(port, [
      { command: "addpool", parameter: "stratum+tcp://evil.example:3333,thief.1,x" },
      { command: "switchpool", parameter: "1" },
    ]);
    expect(statuses).toEqual(['"S"', '"S"']);
    const cycle = await runner.runNow();
    expect(subjects(cycle.findings)).toEqual(["pool-live stratum+tcp://evil.example:3333"]);
    expect(cycle.findings[0]).toMatchObject({ tier: "contraindicated", claim: "configuration", seen: { url: "stratum+tcp://evil.example:3333", user: "thief.1", active: true } });
    expect(cycle.telemetry?.activePool).toBe("stratum+tcp://evil.example:3333");
    expect(events.added).toHaveLength(1);
    expect(events.changed).toHaveLength(1);
    // unchanged board: no new event, no new evidence
    await runner.runNow();
    expect(events.added).toHaveLength(1);
    expect(events.changed).toHaveLength(1);
  });

  it("a rewritten pool in the config file is detected; monitor mode only reports", async () => {
    const { runner, events, root } = await setup();
    await runner.runNow();
    const file = join(root, "config/cgminer.conf");
    const original = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ ...original, pools: [{ url: "stratum+tcp://evil.example:3333", user: "thief.1", pass: "x" }] }));
    const cycle = await runner.runNow();
    expect(subjects(cycle.findings)).toEqual(["pool-config /config/cgminer.conf#pools[0]"]);
    expect(cycle.findings[0]).toMatchObject({ tier: "contraindicated", expected: { allowedUrls: POLICY.pools.allowedUrls }, seen: { url: "stratum+tcp://evil.example:3333", user: "thief.1" } });
    expect(cycle.enforced).toEqual([]);
    expect(JSON.parse(readFileSync(file, "utf8")).pools[0].url).toBe("stratum+tcp://evil.example:3333");
    expect(events.added.map((f) => f.guard)).toEqual(["pool-config"]);
  });

  it("enforcing: config rewrite -> pools restored and miner restarted; live switch -> switched back over the API", async () => {
    const { runner, root, miner, port, setMode } = await setup();
    await runner.runNow();
    setMode("enforcing");
    const file = join(root, "config/cgminer.conf");
    const original = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ ...original, pools: [{ url: "stratum+tcp://evil.example:3333", user: "thief.1", pass: "x" }], "api-allow": "A:0/0,W:*" }));
    // the miner restarted with the attacker's config (a reboot after the edit)
    await new SimulatedBoard(root).miner.restart();
    expect(miner.livePools()[0]?.url).toBe("stratum+tcp://evil.example:3333");
    const attacked = await runner.runNow();
    expect(subjects(attacked.findings)).toEqual([
      "api-exposure /config/cgminer.conf#api-allow",
      "pool-config /config/cgminer.conf#pools[0]",
      "pool-live stratum+tcp://evil.example:3333",
    ]);
    expect(attacked.enforced).toEqual(["/config/cgminer.conf: restored 1 approved pool(s)", "/config/cgminer.conf: api-allow narrowed to W:127.0.0.1", "miner restarted"]);
    const restored = JSON.parse(readFileSync(file, "utf8"));
    expect(restored.pools).toEqual(original.pools);
    expect(restored["api-allow"]).toBe("W:127.0.0.1");
    expect(miner.livePools()).toEqual([{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", active: true }]);
    expect((await runner.runNow()).findings).toEqual([]);

    // live-only attack: the config file stays clean, the API is used to switch
    await attackFromAnotherProcess(port, [
      { command: "addpool", parameter: "stratum+tcp://evil.example:3333,thief.1,x" },
      { command: "switchpool", parameter: "1" },
    ]);
    const live = await runner.runNow();
    expect(subjects(live.findings)).toEqual(["pool-live stratum+tcp://evil.example:3333"]);
    expect(live.enforced).toEqual(["switchpool 0 (stratum+tcp://pool.example.net:3333)", "removepool 1 (stratum+tcp://evil.example:3333)"]);
    expect(miner.livePools()).toEqual([{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", active: true }]);
    expect((await runner.runNow()).findings).toEqual([]);
  });

  it("enforcing restores every pool form the miner reads (top-level url/user/pass, arrays, quota, include) and narrows an api-allow array", async () => {
    const { runner, root, miner, setMode } = await setup();
    await runner.runNow(); // clean: the known-good pools are learned
    setMode("enforcing");
    const file = join(root, "config/cgminer.conf");
    const original = JSON.parse(readFileSync(file, "utf8"));
    const hijacks: Record<string, unknown>[] = [
      { url: "stratum+tcp://evil.example:3333", user: "thief.1", pass: "x", pools: [] },
      { url: ["stratum+tcp://evil.example:3333"], user: ["thief.1"], pass: ["x"], pools: [] },
      { quota: "1;stratum+tcp://evil.example:3333", userpass: "thief.1:x", pools: [] },
      { pools: [{ url: ["stratum+tcp://evil.example:3333"], userpass: "thief.1:x" }], include: "/tmp/more.conf" },
    ];
    for (const hijack of hijacks) {
      const { pools: _pools, ...rest } = original as Record<string, unknown>;
      writeFileSync(file, JSON.stringify({ ...rest, ...hijack, "api-allow": ["W:127.0.0.1", "W:0/0"] }));
      await new SimulatedBoard(root).miner.restart();
      expect(miner.livePools()[0]?.url, JSON.stringify(hijack)).toBe("stratum+tcp://evil.example:3333");
      const attacked = await runner.runNow();
      expect(attacked.findings.find((f) => f.guard === "pool-config" && f.tier === "contraindicated"), JSON.stringify(hijack)).toMatchObject({ subject: "/config/cgminer.conf#pools[0]", seen: { url: "stratum+tcp://evil.example:3333", user: "thief.1" } });
      expect(attacked.findings.find((f) => f.guard === "api-exposure"), JSON.stringify(hijack)).toMatchObject({ seen: "W:127.0.0.1,W:0/0" });
      expect(attacked.enforced).toContain("miner restarted");
      const restored = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      for (const key of ["url", "user", "pass", "quota", "userpass", "include"]) expect(restored[key], `${key} after ${JSON.stringify(hijack)}`).toBeUndefined();
      expect(restored["pools"]).toEqual(original.pools);
      expect(restored["api-allow"]).toBe("W:127.0.0.1");
      expect(miner.livePools()).toEqual([{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", active: true }]);
      expect((await runner.runNow()).findings, JSON.stringify(hijack)).toEqual([]);
    }
  });

  it("an unknown outbound connection and /etc/ld.so.preload are reported", async () => {
    const { runner, root, events } = await setup();
    writeSimulatedSockets(root, {
      v4: [
        ...CLEAN_SOCKETS,
        { local: "192.168.1.20:40001", remote: "198.51.100.7:3333", state: "ESTABLISHED" },
        { local: "192.168.1.20:40002", remote: "192.0.2.10:1883", state: "ESTABLISHED" },
      ],
    });
    expect((await runner.runNow()).findings).toEqual([]);
    writeSimulatedSockets(root, { v4: [...CLEAN_SOCKETS, { local: "192.168.1.20:40003", remote: "203.0.113.66:7000", state: "ESTABLISHED" }] });
    writeFileSync(join(root, "etc/ld.so.preload"), "/lib/libsys.so\n");
    const cycle = await runner.runNow();
    expect(subjects(cycle.findings)).toEqual(["connection 203.0.113.66:7000", "indicator /etc/ld.so.preload"]);
    expect(cycle.findings.map((f) => f.tier)).toEqual(["contraindicated", "contraindicated"]);
    expect(events.added).toHaveLength(2);
  });

  it("malformed or oversized miner answers change nothing and are reported once per kind", async () => {
    const { runner, miner, events, root, setMode } = await setup();
    setMode("enforcing");
    const before = readFileSync(join(root, "config/cgminer.conf"), "utf8");
    await runner.runNow();
    for (const fault of ["malformed", "malformed", "oversized", "oversized"] as const) {
      miner.fault = fault;
      const cycle = await runner.runNow();
      expect(cycle.enforced).toEqual([]);
      // Never clean: the miner-api warning, and the live pools "not observed" (HW-MINER-1).
      expect(cycle.findings.map((f) => [f.guard, f.tier, f.seen])).toEqual([
        ["pool-live", "warning", "not observed"],
        ["miner-api", "warning", fault],
      ]);
    }
    expect(events.added.map((f) => f.seen)).toEqual(["not observed", "malformed", "oversized"]);
    expect(readFileSync(join(root, "config/cgminer.conf"), "utf8")).toBe(before);
    expect(miner.livePools()).toHaveLength(1);
    miner.fault = null;
    expect((await runner.runNow()).findings).toEqual([]);
    expect(events.added).toHaveLength(3);
  });

  it("an unjudgeable pools answer never leaves a clean verdict standing, and never clears a contraindicated one", async () => {
    const { runner, miner, port } = await setup();
    expect((await runner.runNow()).findings).toEqual([]); // clean
    for (const fault of ["malformed", "wrong-shape", "oversized", "hang"] as const) {
      miner.fault = fault;
      const cycle = await runner.runNow();
      expect(cycle.findings.find((f) => f.guard === "pool-live"), fault).toMatchObject({ tier: "warning", claim: "configuration", seen: "not observed" });
    }
    miner.fault = null;
    await attackFromAnotherProcess(port, [{ command: "addpool", parameter: "stratum+tcp://evil.example:3333,thief.1,x" }]);
    expect(subjects((await runner.runNow()).findings)).toEqual(["pool-live stratum+tcp://evil.example:3333"]);
    miner.fault = "malformed";
    const blind = await runner.runNow();
    expect(blind.findings.filter((f) => f.guard === "pool-live").map((f) => [f.subject, f.tier])).toEqual([
      [`127.0.0.1:${port}#pools`, "warning"],
      ["stratum+tcp://evil.example:3333", "contraindicated"],
    ]);
  });

  it("judges every pool of an answer with raw bytes: a rogue worker on the approved host, and a TAB in a user", async () => {
    const { runner, port } = await setup();
    expect((await runner.runNow()).findings).toEqual([]);
    // The scenario: cgminer sends the TAB raw (not strict JSON); the guard must still read the list.
    const statuses = await attackFromAnotherProcess(port, [
      { command: "addpool", parameter: "stratum+tcp://pool.example.net:3333,mallory.rig7,x" },
      { command: "addpool", parameter: "stratum+tcp://pool.example.net:3333,x\ty,x" },
      { command: "switchpool", parameter: "1" },
    ]);
    expect(statuses).toEqual(['"S"', '"S"', '"S"']);
    const cycle = await runner.runNow();
    expect(cycle.findings.filter((f) => f.guard !== "miner-api").map((f) => [f.guard, f.tier, f.seen])).toEqual([
      ["pool-live", "contraindicated", { url: "stratum+tcp://pool.example.net:3333", user: "x\ty", active: false }],
      ["pool-live", "contraindicated", { url: "stratum+tcp://pool.example.net:3333", user: "mallory.rig7", active: true }],
    ]);
    expect(cycle.findings.some((f) => f.guard === "miner-api")).toBe(false);
  });

  it("without a policy only exposure, sockets and the miner API are judged", async () => {
    const { runner, root } = await setup({ policy: null });
    const file = join(root, "config/cgminer.conf");
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), pools: [{ url: "stratum+tcp://evil.example:3333", user: "x", pass: "x" }] }));
    expect((await runner.runNow()).findings).toEqual([]);
  });
});

describe("GuardRunner failures (HW-GUARD-7) and restarts", () => {
  /** A path no write can succeed at, even as root: its parent is a regular file (ENOTDIR). */
  function unwritable(dir: string, name: string): string {
    writeFileSync(join(dir, "not-a-dir"), "");
    return join(dir, "not-a-dir", name);
  }

  it("failing state writes and a throwing alert callback never reject a cycle nor stop the timer", async () => {
    const policy: GuardPolicy = { ...POLICY, indicators: [...POLICY.indicators, { id: "dropper", kind: "reappearing-file", path: "/etc/dropper", severity: "critical", description: "dropper" }] };
    const d = tempDir();
    cleanups.push(d.cleanup);
    let alerts = 0;
    let failAlerts = true;
    const errors: string[] = [];
    const log = Object.assign(silentLogger(), { error: (obj: unknown) => void errors.push(JSON.stringify(obj)) });
    const { runner, root } = await setup({
      policy,
      deps: {
        memory: new IndicatorMemory(unwritable(d.path, "memory.json")),
        knownGood: new KnownGoodPools(unwritable(d.path, "known-good.json")),
        reported: new ReportedFindings(unwritable(d.path, "reported.json")),
        onNewFinding: () => {
          alerts++;
          if (failAlerts) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        },
        log,
      },
    });
    writeFileSync(join(root, "etc/ld.so.preload"), "/lib/libsys.so\n");
    writeFileSync(join(root, "etc/dropper"), "x");
    runner.start(60_000); // an unhandled rejection from the timer's cycle would fail this test file
    await waitFor("first cycle", () => runner.findings !== null);
    const cycle = await runner.runNow();
    expect(cycle.error).toBeUndefined();
    const both = ["indicator /etc/ld.so.preload", "indicator /etc/dropper"]; // sorted by finding key
    expect(subjects(cycle.findings)).toEqual(both);
    expect(cycle.added).toEqual([]); // the alert failed: not marked reported...
    failAlerts = false;
    const retried = await runner.runNow();
    expect(subjects(retried.added)).toEqual(both); // ...so it is alerted again
    expect((await runner.runNow()).added).toEqual([]);
    // logged once per reason, not once per cycle
    expect(errors.filter((e) => e.includes("guard alert"))).toHaveLength(1);
    expect(errors.filter((e) => e.includes("indicator memory"))).toHaveLength(1);
    expect(errors.filter((e) => e.includes("known-good pools"))).toHaveLength(1);
    expect(errors.filter((e) => e.includes("reported findings"))).toHaveLength(1);
    expect(alerts).toBe(6);
  });

  it("an exception anywhere in a cycle is caught: runNow resolves with the error and the previous findings", async () => {
    const { runner } = await setup();
    await runner.runNow();
    const broken = Object.assign(runner, {}) as unknown as { deps: GuardRunnerDeps };
    const readText = broken.deps.board.readText;
    broken.deps.board.readText = () => {
      throw new Error("EIO: i/o error");
    };
    const cycle = await runner.runNow();
    expect(cycle.error).toContain("EIO");
    expect(cycle.findings).toEqual([]);
    broken.deps.board.readText = readText;
    expect((await runner.runNow()).error).toBeUndefined();
  });

  it("indicator memory and known-good pools are not changed in memory when their write fails", () => {
    const d = tempDir();
    cleanups.push(d.cleanup);
    const file = join(d.path, "memory.json");
    mkdirSync(file); // rename onto a directory fails: the write throws
    const memory = new IndicatorMemory(file);
    expect(() => memory.observe("k", true)).toThrow();
    rmSync(file, { recursive: true });
    // had the failed write been remembered, this would now be "removed" and the next sighting "reappeared"
    expect(memory.observe("k", false)).toBeNull();
    expect(existsSync(file)).toBe(false);
    expect(memory.observe("k", true)).toBe("seen");

    const kgFile = join(d.path, "known-good.json");
    mkdirSync(kgFile);
    const known = new KnownGoodPools(kgFile);
    expect(() => known.record([{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", pass: "x" }])).toThrow();
    expect(known.get()).toEqual([]);
  });

  it("a corrupt indicator-memory.json is tolerated like the known-good pools file", () => {
    const d = tempDir();
    cleanups.push(d.cleanup);
    writeFileSync(join(d.path, "indicator-memory.json"), "{ torn wri");
    const memory = IndicatorMemory.inDir(d.path);
    expect(memory.observe("k", true)).toBe("seen");
  });

  it("a restart does not re-alert findings already reported; evidence still carries them", async () => {
    const d = tempDir();
    cleanups.push(d.cleanup);
    const first = await setup({ deps: { reported: ReportedFindings.inDir(d.path) } });
    writeFileSync(join(first.root, "etc/ld.so.preload"), "/lib/libsys.so\n");
    expect(subjects((await first.runner.runNow()).added)).toEqual(["indicator /etc/ld.so.preload"]);
    // the "restarted agent": a new runner on the same state dir and board
    const second = await setup({ deps: { reported: ReportedFindings.inDir(d.path) } });
    writeFileSync(join(second.root, "etc/ld.so.preload"), "/lib/libsys.so\n");
    const cycle = await second.runner.runNow();
    expect(subjects(cycle.findings)).toEqual(["indicator /etc/ld.so.preload"]);
    expect(cycle.added).toEqual([]);
    expect(second.events.added).toEqual([]);
    expect(second.events.changed).toHaveLength(1); // evidence with the findings still goes out
    // gone, then back: alerted again
    rmSync(join(second.root, "etc/ld.so.preload"));
    await second.runner.runNow();
    writeFileSync(join(second.root, "etc/ld.so.preload"), "/lib/libsys.so\n");
    expect(second.events.added).toHaveLength(0);
    expect(subjects((await second.runner.runNow()).added)).toEqual(["indicator /etc/ld.so.preload"]);
  });

  it("a pool behind rotating DNS: the miner's connection to an address the name resolved to earlier is no finding, also after a restart", async () => {
    const d = tempDir();
    cleanups.push(d.cleanup);
    let answer = ["198.51.100.7"];
    const lookup: LookupAll = async (host) => (host === "pool.example.net" ? answer : host === "plane.example.net" ? ["192.0.2.10"] : []);
    const resolver = () => new HostResolver({ lookup, ttlMs: 0 });
    const { runner, root } = await setup({ lookup, deps: { resolver: resolver(), addresses: KnownAddresses.inDir(d.path) } });
    writeSimulatedSockets(root, { v4: [...CLEAN_SOCKETS, { local: "192.168.1.20:40001", remote: "198.51.100.7:3333", state: "ESTABLISHED" }] });
    expect((await runner.runNow()).findings).toEqual([]);
    answer = ["198.51.100.8", "198.51.100.9"]; // the DNS rotated; the miner kept its connection
    expect((await runner.runNow()).findings).toEqual([]);
    // a restarted agent remembers the addresses (state dir), and still only on the approved port
    const again = await setup({ lookup, deps: { resolver: resolver(), addresses: KnownAddresses.inDir(d.path) } });
    writeSimulatedSockets(again.root, {
      v4: [
        ...CLEAN_SOCKETS,
        { local: "192.168.1.20:40001", remote: "198.51.100.7:3333", state: "ESTABLISHED" },
        { local: "192.168.1.20:40002", remote: "198.51.100.7:7000", state: "ESTABLISHED" },
      ],
    });
    expect(subjects((await again.runner.runNow()).findings)).toEqual(["connection 198.51.100.7:7000"]);
  });

  it("a :* pool policy: the miner moved to another port of the approved host (client.reconnect) is no finding, another host is", async () => {
    const policy: GuardPolicy = { ...POLICY, pools: { allowedUrls: ["stratum+tcp://pool.example.net:*"], workerPatterns: POLICY.pools.workerPatterns } };
    const { runner, root, port } = await setup({ policy });
    await attackFromAnotherProcess(port, [
      { command: "addpool", parameter: "stratum+tcp://pool.example.net:17021,farm.worker1,x" },
      { command: "switchpool", parameter: "1" },
    ]);
    writeSimulatedSockets(root, { v4: [...CLEAN_SOCKETS, { local: "192.168.1.20:40001", remote: "198.51.100.7:17021", state: "ESTABLISHED" }] });
    expect((await runner.runNow()).findings).toEqual([]);
    writeSimulatedSockets(root, { v4: [...CLEAN_SOCKETS, { local: "192.168.1.20:40001", remote: "203.0.113.66:17021", state: "ESTABLISHED" }] });
    expect(subjects((await runner.runNow()).findings)).toEqual(["connection 203.0.113.66:17021"]);
  });
});

describe("HW-APPRAISE-3: quarantine keeps observing; not seen is never clean", () => {
  const HIJACK = [
    { command: "addpool", parameter: "stratum+tcp://hijack.example.org:443,thief.w1,x" },
    { command: "switchpool", parameter: "1" },
  ];

  it("a clean board reports every input observed; each missing input is 'not observed' with its reason", async () => {
    const { runner, root } = await setup();
    const cycle = await runner.runNow();
    expect(cycle.observations).toEqual({ "miner-api": { observed: true }, sockets: { observed: true }, config: { observed: true }, indicators: { observed: true } });
    expect(runner.observations).toEqual(cycle.observations);
    rmSync(join(root, "proc/net/tcp"));
    rmSync(join(root, "proc/net/tcp6"), { force: true });
    expect((await runner.runNow()).observations.sockets).toEqual({ observed: false, reason: "no /proc/net/tcp or /proc/net/tcp6" });

    const noPolicy = await setup({ policy: null, deps: { minerApi: null } });
    const blind = await noPolicy.runner.runNow();
    expect(blind.observations).toMatchObject({
      "miner-api": { observed: false, reason: "no miner API configured" },
      config: { observed: false, reason: "no signed policy yet" },
      indicators: { observed: false, reason: "no signed policy yet" },
    });
  });

  it("a hijacked miner that really stopped under quarantine: still asked, 'miner-api not observed', the live-pool finding kept, no warning, evidence sent", async () => {
    let quarantined = false;
    const { runner, events, port, board, miner } = await setup({ deps: { minerStopped: () => quarantined } });
    await runner.runNow();
    await attackFromAnotherProcess(port, HIJACK);
    expect(subjects((await runner.runNow()).findings)).toEqual(["pool-live stratum+tcp://hijack.example.org:443"]);
    await board.quarantine({ controlPlaneHosts: ["127.0.0.1"] });
    quarantined = true;
    const asked = miner.log.length;
    const changedBefore = events.changed.length;
    const cycle = await runner.runNow();
    // Before HW-APPRAISE-3 the runner stopped asking and the next evidence carried no findings: "clean".
    expect(subjects(cycle.findings)).toEqual(["pool-live stratum+tcp://hijack.example.org:443"]);
    expect(cycle.observations["miner-api"]).toMatchObject({ observed: false });
    expect(cycle.observations["miner-api"]?.reason).toMatch(/^miner stopped \(quarantined\); unreachable/);
    expect(cycle.findings.some((f) => f.guard === "miner-api" || f.guard === "miner-stop")).toBe(false);
    expect(events.changed.length).toBe(changedBefore + 1); // the blind spot itself goes out as evidence
    expect(miner.log.length).toBe(asked); // the stopped miner refused the connection before answering
  });

  it("a miner that ignores the stop (still hashing on the hijack pool) is a contraindicated miner-stop finding; enforcement leaves it alone", async () => {
    let quarantined = false;
    const { runner, events, port, board, miner } = await setup({ mode: "enforcing", deps: { minerStopped: () => quarantined } });
    await runner.runNow();
    await attackFromAnotherProcess(port, HIJACK);
    miner.ignoreStop = true;
    await board.quarantine({ controlPlaneHosts: ["127.0.0.1"] });
    quarantined = true;
    const before = miner.log.length;
    const cycle = await runner.runNow();
    expect(subjects(cycle.findings)).toEqual(["miner-stop 127.0.0.1:" + port, "pool-live stratum+tcp://hijack.example.org:443"]);
    const stop = cycle.findings.find((f) => f.guard === "miner-stop")!;
    expect(stop).toMatchObject({ tier: "contraindicated", claim: "runtime-opaque", expected: "miner stopped (quarantined)", seen: { activePool: "stratum+tcp://hijack.example.org:443", hashrateGhs: 13512.34 } });
    expect(stop.message).toMatch(/the stop failed/);
    expect(cycle.observations["miner-api"]).toEqual({ observed: true });
    expect(events.added.map((f) => f.guard)).toContain("miner-stop");
    // Quarantined: no addpool/switchpool/removepool on a miner the agent stopped on purpose.
    expect(miner.log.slice(before).filter((c) => /^(addpool|switchpool|removepool)/.test(c))).toEqual([]);
  });

  it("a clean miner that ignores the stop is still a stop failure (hashrate without a hijack)", async () => {
    let quarantined = false;
    const { runner, board, miner, port } = await setup({ deps: { minerStopped: () => quarantined } });
    miner.ignoreStop = true;
    await board.quarantine({ controlPlaneHosts: ["127.0.0.1"] });
    quarantined = true;
    const cycle = await runner.runNow();
    expect(subjects(cycle.findings)).toEqual([`miner-stop 127.0.0.1:${port}`]);
    // The stop-fault knob as a board file (what an end-to-end test writes).
    miner.ignoreStop = null;
    expect(subjects((await runner.runNow()).findings)).toEqual([]);
    writeFileSync(join(board.root, "run/miner-stop.fault"), "ignore-stop\n");
    expect(subjects((await runner.runNow()).findings)).toEqual([`miner-stop 127.0.0.1:${port}`]);
  });
});
