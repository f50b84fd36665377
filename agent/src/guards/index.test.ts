import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedBoard } from "../platform/index.js";
import { policySchema, type GuardPolicy } from "../policy/index.js";
import { formatProcNetTcp } from "../sim-miner/index.js";
import { tempDir } from "../testing/index.js";
import {
  apiExposureGuard,
  connectionGuard,
  findingKey,
  HostResolver,
  IndicatorMemory,
  indicatorGuard,
  listeningGuard,
  normalizeIp,
  parseEndpoint,
  parseMinerConfig,
  parseProcNetTcp,
  platformReader,
  poolConfigGuard,
  poolLiveGuard,
  wideApiAllowEntries,
} from "./index.js";

const policy: GuardPolicy = {
  version: 1,
  pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["farm\\.worker\\d+"] },
  network: { allowedHosts: ["ntp.example.net:123", "10.9.9.9"] },
  indicators: [],
};

describe("/proc/net/tcp parsing", () => {
  it("decodes little-endian IPv4, IPv6 words, ports and states", () => {
    const v4 = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000:0FBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0",
      "   1: 1401A8C0:9C40 420071CB:1B58 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 100 0 0 10 0",
      "garbage line",
    ].join("\n");
    expect(parseProcNetTcp(v4)).toEqual([
      { family: 4, localIp: "0.0.0.0", localPort: 4028, remoteIp: "0.0.0.0", remotePort: 0, state: "LISTEN" },
      { family: 4, localIp: "192.168.1.20", localPort: 40000, remoteIp: "203.113.0.66", remotePort: 7000, state: "ESTABLISHED" },
    ]);
    // ::1 and ::ffff:203.0.113.66 as the kernel prints them (each 32-bit word little-endian)
    const v6 = "   0: 00000000000000000000000001000000:0016 0000000000000000FFFF0000427100CB:0050 01 00000000:00000000\n";
    expect(parseProcNetTcp(v6)).toEqual([{ family: 6, localIp: "0:0:0:0:0:0:0:1", localPort: 22, remoteIp: "203.0.113.66", remotePort: 80, state: "ESTABLISHED" }]);
  });

  it("round-trips the simulated formatter", () => {
    const sockets = parseProcNetTcp(
      formatProcNetTcp([{ local: "[2001:db8::5]:40000", remote: "[2001:db8::66]:7000", state: "ESTABLISHED" }, { local: "[::]:22", state: "LISTEN" }], 6),
    );
    expect(sockets).toEqual([
      { family: 6, localIp: normalizeIp("2001:db8::5"), localPort: 40000, remoteIp: normalizeIp("2001:db8::66"), remotePort: 7000, state: "ESTABLISHED" },
      { family: 6, localIp: "0:0:0:0:0:0:0:0", localPort: 22, remoteIp: "0:0:0:0:0:0:0:0", remotePort: 0, state: "LISTEN" },
    ]);
  });

  it("normalises addresses and parses endpoints", () => {
    expect(normalizeIp("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(normalizeIp("2001:DB8::1")).toBe("2001:db8:0:0:0:0:0:1");
    expect(parseEndpoint("stratum+tcp://Pool.Example.net:3333")).toEqual({ host: "pool.example.net", port: 3333 });
    expect(parseEndpoint("https://plane.example")).toEqual({ host: "plane.example", port: 443 });
    expect(parseEndpoint("[2001:db8::1]:7000")).toEqual({ host: "2001:db8::1", port: 7000 });
    expect(parseEndpoint("auth.minerlink.com")).toEqual({ host: "auth.minerlink.com" });
    expect(parseEndpoint("not a host")).toBeNull();
  });

  it("resolver: caches answers, times out, keeps the last good answer through an outage", async () => {
    let calls = 0;
    let now = 0;
    let mode: "ok" | "fail" | "hang" = "ok";
    const resolver = new HostResolver({
      now: () => now,
      ttlMs: 1000,
      negativeTtlMs: 500,
      timeoutMs: 50,
      lookup: async () => {
        calls += 1;
        if (mode === "fail") throw new Error("SERVFAIL");
        if (mode === "hang") return new Promise<string[]>(() => undefined);
        return ["198.51.100.7", "::ffff:198.51.100.8"];
      },
    });
    expect(await resolver.resolve("pool.example.net")).toEqual(["198.51.100.7", "198.51.100.8"]);
    expect(await resolver.resolve("POOL.example.net")).toEqual(["198.51.100.7", "198.51.100.8"]);
    expect(calls).toBe(1);
    expect(await resolver.resolve("10.0.0.1")).toEqual(["10.0.0.1"]);
    now = 2000;
    mode = "hang";
    expect(await resolver.resolve("pool.example.net")).toEqual(["198.51.100.7", "198.51.100.8"]);
    mode = "fail";
    expect(await resolver.resolve("other.example")).toEqual([]);
  });
});

describe("pool guards", () => {
  const config = (pools: unknown, extra: Record<string, unknown> = {}) => parseMinerConfig("/config/cgminer.conf", JSON.stringify({ pools, ...extra }));

  it("a clean config yields nothing; a rewritten URL or worker names the exact difference", () => {
    expect(poolConfigGuard([config([{ url: "stratum+tcp://POOL.example.net:3333/", user: "farm.worker7", pass: "x" }])], policy)).toEqual([]);
    const findings = poolConfigGuard(
      [config([{ url: "stratum+tcp://pool.example.net:3333", user: "thief.1", pass: "x" }, { url: "stratum+tcp://evil.example:3333", user: "farm.worker1", pass: "x" }])],
      policy,
    );
    expect(findings).toEqual([
      expect.objectContaining({ guard: "pool-config", claim: "configuration", tier: "contraindicated", subject: "/config/cgminer.conf#pools[0]", expected: { workerPatterns: ["farm\\.worker\\d+"] }, seen: { url: "stratum+tcp://pool.example.net:3333", user: "thief.1" } }),
      expect.objectContaining({ subject: "/config/cgminer.conf#pools[1]", expected: { allowedUrls: policy.pools.allowedUrls }, seen: { url: "stratum+tcp://evil.example:3333", user: "farm.worker1" } }),
    ]);
  });

  it("worker patterns are anchored", () => {
    const f = poolConfigGuard([config([{ url: "stratum+tcp://pool.example.net:3333", user: "evil.farm.worker1.x", pass: "" }])], policy);
    expect(f).toHaveLength(1);
  });

  it("an unparseable config is a warning", () => {
    expect(poolConfigGuard([parseMinerConfig("/config/bmminer.conf", "{nope")], policy)).toEqual([expect.objectContaining({ tier: "warning", subject: "/config/bmminer.conf" })]);
  });

  const contraindicated = (findings: ReturnType<typeof poolConfigGuard>) => findings.filter((f) => f.tier === "contraindicated").map((f) => [f.subject, f.seen]);
  const raw = (obj: Record<string, unknown>) => parseMinerConfig("/config/cgminer.conf", JSON.stringify(obj));

  it("reads pool URLs as cgminer does: no scheme = stratum+tcp, #xnsub, host case, final dot", () => {
    const nicehash: GuardPolicy = { ...policy, pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333", "stratum+tcp://sha256.eu.nicehash.com:9200#xnsub"], workerPatterns: [] } };
    for (const url of ["pool.example.net:3333", "POOL.EXAMPLE.NET:3333", "pool.example.net.:3333", "stratum+tcp://sha256.eu.nicehash.com:9200#xnsub", "sha256.eu.nicehash.com:9200#xnsub"]) {
      expect(poolConfigGuard([config([{ url, user: "farm.worker1", pass: "x" }])], nicehash), url).toEqual([]);
    }
    // what the miner would really connect to differs: port 80 when none, another port, a proxy, user info
    for (const url of ["pool.example.net", "pool.example.net:4444", "socks5:10.0.0.9:1080|pool.example.net:3333", "stratum+tcp://me:pw@pool.example.net:3333"]) {
      expect(contraindicated(poolConfigGuard([config([{ url, user: "farm.worker1", pass: "x" }])], nicehash)), url).toHaveLength(1);
    }
  });

  it("a policy URL with :* approves any port on that host only (client.reconnect to another port)", () => {
    const rental: GuardPolicy = { ...policy, pools: { allowedUrls: ["stratum+tcp://rental.example.net:*"], workerPatterns: [] } };
    expect(poolConfigGuard([config([{ url: "stratum+tcp://rental.example.net:17021", user: "u", pass: "x" }])], rental)).toEqual([]);
    expect(poolLiveGuard([{ index: 0, url: "stratum+tcp://rental.example.net:4444", user: "u", status: "Alive", priority: 0, active: true }], rental)).toEqual([]);
    expect(poolLiveGuard([{ index: 0, url: "stratum+tcp://evil.example:4444", user: "u", status: "Alive", priority: 0, active: true }], rental)).toHaveLength(1);
  });

  it("reads every form cgminer's parse_config accepts: top-level keys, arrays, quota, userpass, nested objects", () => {
    const evil = { url: "stratum+tcp://evil.example:3333", user: "thief.1" };
    const forms: [string, Record<string, unknown>][] = [
      ["top-level keys with an empty pools array", { url: evil.url, user: evil.user, pass: "x", pools: [] }],
      ["array-valued url/user/pass", { url: [evil.url], user: [evil.user], pass: ["x"] }],
      ["quota;URL and userpass", { quota: `1;${evil.url}`, userpass: `${evil.user}:x` }],
      ["a pool object with array values", { pools: [{ url: [evil.url], user: [evil.user], pass: "x" }] }],
      ["a number where a string goes", { pools: [{ url: evil.url, user: evil.user, pass: 7 }] }],
    ];
    for (const [label, obj] of forms) {
      expect(contraindicated(poolConfigGuard([raw(obj)], policy)), label).toEqual([["/config/cgminer.conf#pools[0]", evil]]);
    }
    // Top-level url comes before the pools array (cgminer's option table puts --pools last), users pair by order.
    const mixed = raw({ pools: [{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", pass: "x" }], url: evil.url, user: evil.user, pass: "x" });
    expect(mixed).toMatchObject({ ok: true, pools: [{ url: evil.url, user: evil.user }, { url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1" }], poolOrigins: ["url", "pools[0].url"] });
    expect(contraindicated(poolConfigGuard([mixed], policy))).toEqual([["/config/cgminer.conf#pools[0]", evil]]);
  });

  it("flags what it cannot judge as a warning, never as clean: include, wrong types", () => {
    for (const obj of [{ pools: [], include: "/tmp/x.conf" }, { url: true }, { pools: [{ url: null }] }, { pools: "stratum+tcp://evil.example:3333" }, { pools: [[{ url: "x" }]] }]) {
      expect(poolConfigGuard([raw(obj)], policy).filter((f) => f.subject === "/config/cgminer.conf#unjudged"), JSON.stringify(obj)).toEqual([expect.objectContaining({ tier: "warning", guard: "pool-config" })]);
    }
  });

  it("live pools: every unapproved pool, marked active when it hashes", () => {
    const live = [
      { index: 0, url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", status: "Alive", priority: 1, active: false },
      { index: 1, url: "stratum+tcp://evil.example:3333", user: "thief", status: "Alive", priority: 0, active: true },
    ];
    expect(poolLiveGuard(live, policy)).toEqual([expect.objectContaining({ guard: "pool-live", subject: "stratum+tcp://evil.example:3333", seen: { url: "stratum+tcp://evil.example:3333", user: "thief", active: true } })]);
  });
});

describe("API exposure guard", () => {
  const cfg = (extra: Record<string, unknown>) => parseMinerConfig("/config/bmminer.conf", JSON.stringify({ pools: [], "api-listen": true, ...extra }));
  it("flags anything wider than localhost, and api-network without api-allow", () => {
    expect(wideApiAllowEntries("W:127.0.0.1")).toEqual([]);
    expect(wideApiAllowEntries("A:0/0,W:*")).toEqual(["A:0/0", "W:*"]);
    expect(apiExposureGuard([cfg({ "api-allow": "W:127.0.0.1" })])).toEqual([]);
    expect(apiExposureGuard([cfg({ "api-allow": "R:10.0.0.0/8,W:127.0.0.1" })])).toEqual([expect.objectContaining({ guard: "api-exposure", tier: "warning", expected: "W:127.0.0.1", seen: "R:10.0.0.0/8,W:127.0.0.1" })]);
    expect(apiExposureGuard([cfg({ "api-network": true })])).toHaveLength(1);
    expect(apiExposureGuard([cfg({ "api-listen": false, "api-allow": "A:0/0" })])).toEqual([]);
  });

  it("reads api-allow in every form (array, inside a pool object) and knows what is loopback only", () => {
    expect(apiExposureGuard([cfg({ "api-allow": ["W:0/0"] })])).toEqual([expect.objectContaining({ guard: "api-exposure", seen: "W:0/0" })]);
    expect(apiExposureGuard([cfg({ "api-allow": ["W:127.0.0.1", "W:0/0"] })])).toHaveLength(1);
    expect(apiExposureGuard([cfg({ pools: [{ url: "stratum+tcp://pool.example.net:3333", "api-allow": "W:0/0" }] })])).toHaveLength(1);
    for (const local of ["W:127.0.0.1/8", "W:127.0.0.1", "W:127.1", "R:127.0.0.0/24", "W:::1", "W:::1/128", "W:::ffff:127.0.0.1/104", "localhost"]) {
      expect(wideApiAllowEntries(local), local).toEqual([]);
    }
    for (const wide of ["W:127.0.0.1/7", "W:10.0.0.1/0", "W:0/0", "W:192.168.1.0/24", "W:::/0", "W:::1/64", "W:*", "W:pool.example.net", "W:127.0.0.1/33"]) {
      expect(wideApiAllowEntries(wide), wide).toEqual([wide]);
    }
  });
});

describe("connection and listening guards", () => {
  const sockets = parseProcNetTcp(
    formatProcNetTcp(
      [
        { local: "0.0.0.0:4028", state: "LISTEN" },
        { local: "0.0.0.0:8888", state: "LISTEN" },
        { local: "127.0.0.1:5555", state: "LISTEN" },
        { local: "192.168.1.20:4028", remote: "192.168.1.99:51000", state: "ESTABLISHED" }, // inbound API client
        { local: "192.168.1.20:40001", remote: "198.51.100.7:3333", state: "ESTABLISHED" }, // the pool
        { local: "192.168.1.20:40002", remote: "10.9.9.9:443", state: "ESTABLISHED" }, // allowlisted by IP
        { local: "192.168.1.20:40003", remote: "203.0.113.66:7000", state: "ESTABLISHED" }, // Antbleed
        { local: "192.168.1.20:40004", remote: "203.0.113.66:7000", state: "ESTABLISHED" },
        { local: "192.168.1.20:40005", remote: "198.51.100.7:4444", state: "ESTABLISHED" }, // pool IP, wrong port
        { local: "127.0.0.1:40006", remote: "127.0.0.1:4028", state: "ESTABLISHED" },
      ],
      4,
    ),
  );
  const approved = [
    { label: "pool.example.net:3333", ips: ["198.51.100.7"], port: 3333 },
    { label: "10.9.9.9", ips: ["10.9.9.9"] },
  ];

  it("reports each unknown outbound destination once", () => {
    const f = connectionGuard(sockets, approved);
    expect(f.map((x) => x.subject)).toEqual(["203.0.113.66:7000", "198.51.100.7:4444"]);
    expect(f[0]).toMatchObject({ guard: "connection", claim: "runtime-opaque", tier: "contraindicated", expected: ["10.9.9.9", "pool.example.net:3333"] });
  });

  it("a backdoor listening on 127.0.0.1:P and connecting out from the LAN IP on port P is outbound, not inbound", () => {
    const table = parseProcNetTcp(
      formatProcNetTcp(
        [
          { local: "127.0.0.1:7777", state: "LISTEN" }, // the backdoor's own loopback listener
          { local: "192.168.1.20:7777", remote: "203.0.113.66:7000", state: "ESTABLISHED" }, // its phone-home, same port
          { local: "192.168.1.20:4028", state: "LISTEN" }, // a listener on one address...
          { local: "192.168.1.21:4028", remote: "203.0.113.67:80", state: "ESTABLISHED" }, // ...does not cover another
          { local: "192.168.1.20:4028", remote: "192.168.1.99:51000", state: "ESTABLISHED" }, // inbound to it
        ],
        4,
      ),
    );
    expect(connectionGuard(table, approved).map((x) => x.subject)).toEqual(["203.0.113.66:7000", "203.0.113.67:80"]);
    // A wildcard listener covers every local address of its family, and an IPv6 [::] one the v4-mapped sockets it accepts.
    const wildcard = parseProcNetTcp(formatProcNetTcp([{ local: "0.0.0.0:7777", state: "LISTEN" }, { local: "192.168.1.20:7777", remote: "203.0.113.66:7000", state: "ESTABLISHED" }], 4));
    expect(connectionGuard(wildcard, approved)).toEqual([]);
    const v6 = parseProcNetTcp(formatProcNetTcp([{ local: "[::]:22", state: "LISTEN" }, { local: "[::ffff:192.168.1.20]:22", remote: "[::ffff:192.168.1.99]:51000", state: "ESTABLISHED" }], 6));
    expect(connectionGuard(v6, approved)).toEqual([]);
  });

  it("reports an outbound connection attempt (SYN_SENT, state 02) too, as the same finding once it connects", () => {
    const attempt = parseProcNetTcp(formatProcNetTcp([{ local: "0.0.0.0:7000", state: "LISTEN" }, { local: "192.168.1.20:7000", remote: "203.0.113.66:7000", state: "SYN_SENT" }], 4));
    expect(attempt[1]?.state).toBe("SYN_SENT");
    const [f] = connectionGuard(attempt, approved);
    expect(f).toMatchObject({ guard: "connection", tier: "contraindicated", subject: "203.0.113.66:7000" });
    expect(f!.message).toContain("SYN_SENT");
    const established = parseProcNetTcp(formatProcNetTcp([{ local: "192.168.1.20:40000", remote: "203.0.113.66:7000", state: "ESTABLISHED" }], 4));
    expect(findingKey(connectionGuard(established, approved)[0]!)).toBe(findingKey(f!));
  });

  it("reports unexpected non-loopback listeners", () => {
    expect(listeningGuard(sockets, [22, 80, 4028])).toEqual([expect.objectContaining({ guard: "listening-port", tier: "warning", subject: "0.0.0.0:8888", seen: 8888 })]);
  });
});

describe("indicator guard", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));

  it("matches file-present, hosts-entry, unexpected-executable and reappearing-file indicators", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const root = join(dir.path, "board");
    mkdirSync(join(root, "etc"), { recursive: true });
    mkdirSync(join(root, "usr/bin"), { recursive: true });
    writeFileSync(join(root, "etc/hosts"), "127.0.0.1 localhost\n203.0.113.66 auth.minerlink.com # Antbleed\n10.0.0.1 pool.evil.example\n");
    writeFileSync(join(root, "usr/bin/build"), "#!/bin/sh\n");
    chmodSync(join(root, "usr/bin/build"), 0o755);
    writeFileSync(join(root, "usr/bin/readme"), "text\n");
    const board = platformReader(new SimulatedBoard(root));
    const memory = new IndicatorMemory(join(dir.path, "memory.json"));
    const indicators: GuardPolicy["indicators"] = [
      { id: "antbuild-preload", kind: "file-present", path: "/etc/ld.so.preload", severity: "critical", description: "Antbuild preload" },
      { id: "antbleed", kind: "hosts-entry", pattern: ".*minerlink\\.com", severity: "critical", description: "Antbleed host" },
      { id: "build", kind: "unexpected-executable", path: "/usr/bin", pattern: "build|ntpd2", severity: "critical", description: "Antbuild binary" },
      { id: "cron", kind: "reappearing-file", path: "/etc/cron.hourly/x", severity: "warning", description: "dropper" },
    ];
    expect(indicatorGuard(indicators, board, memory).map((f) => f.subject)).toEqual(["/etc/hosts: auth.minerlink.com", "/usr/bin/build"]);
    writeFileSync(join(root, "etc/ld.so.preload"), "/usr/lib/libsys.so\n");
    mkdirSync(join(root, "etc/cron.hourly"));
    writeFileSync(join(root, "etc/cron.hourly/x"), "x");
    const second = indicatorGuard(indicators, board, memory);
    expect(second.find((f) => f.subject === "/etc/ld.so.preload")).toMatchObject({ guard: "indicator", claim: "file-system", tier: "contraindicated", seen: "present" });
    expect(second.find((f) => f.subject === "/etc/cron.hourly/x")).toMatchObject({ tier: "warning", seen: "seen" });
    // removed, then back: "reappeared", remembered across a restart (a new memory on the same file)
    rmSync(join(root, "etc/cron.hourly/x"));
    expect(indicatorGuard(indicators, board, memory).some((f) => f.subject === "/etc/cron.hourly/x")).toBe(false);
    writeFileSync(join(root, "etc/cron.hourly/x"), "x");
    expect(indicatorGuard(indicators, board, new IndicatorMemory(join(dir.path, "memory.json"))).find((f) => f.subject === "/etc/cron.hourly/x")).toMatchObject({ seen: "reappeared" });
  });

  it("indicators naming the same file read it once per cycle; an edit shows in the next cycle", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const root = join(dir.path, "board");
    mkdirSync(join(root, "etc"), { recursive: true });
    writeFileSync(join(root, "etc/hosts"), "127.0.0.1 localhost\n");
    const reader = platformReader(new SimulatedBoard(root));
    const reads: string[] = [];
    const board = { ...reader, readText: (path: string, maxBytes: number) => (reads.push(path), reader.readText(path, maxBytes)) };
    const indicators: GuardPolicy["indicators"] = [
      { id: "antbleed", kind: "hosts-entry", pattern: ".*minerlink\\.com", severity: "critical", description: "Antbleed host" },
      { id: "pool-hijack", kind: "hosts-entry", pattern: "pool\\..*", severity: "critical", description: "pool name hijack" },
    ];
    expect(indicatorGuard(indicators, board, new IndicatorMemory(null))).toEqual([]);
    expect(reads).toEqual(["/etc/hosts"]);
    writeFileSync(join(root, "etc/hosts"), "127.0.0.1 localhost\n203.0.113.66 auth.minerlink.com pool.example.net\n");
    expect(indicatorGuard(indicators, board, new IndicatorMemory(null)).map((f) => f.subject)).toEqual(["/etc/hosts: auth.minerlink.com", "/etc/hosts: pool.example.net"]);
    expect(reads).toEqual(["/etc/hosts", "/etc/hosts"]);
  });

  it("HW-GUARD-8: executables whose sha256 is not in the reference values are reported with {path, sha256, size}", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const root = join(dir.path, "board");
    for (const d of ["usr/bin", "tmp", "config"]) mkdirSync(join(root, d), { recursive: true });
    const exe = (path: string, body: string) => {
      writeFileSync(join(root, path), body);
      chmodSync(join(root, path), 0o755);
    };
    exe("usr/bin/bmminer", "the vendor's miner");
    exe("usr/bin/build", "antbuild trojan");
    exe("tmp/.x", "dropped payload");
    writeFileSync(join(root, "usr/bin/readme"), "not executable");
    symlinkSync("bmminer", join(root, "usr/bin/cgminer")); // links are not files: their target is judged
    const sha = (body: string) => createHash("sha256").update(body).digest("hex");
    const board = platformReader(new SimulatedBoard(root));
    const indicator: GuardPolicy["indicators"][number] = {
      id: "not-in-reference",
      kind: "unexpected-executable",
      paths: ["/usr/bin", "/tmp", "/config", "/nonexistent"],
      allowedSha256: [sha("the vendor's miner")],
      allowReferenceValues: true,
      severity: "critical",
      description: "executable not in the reference values",
    };
    const found = indicatorGuard([indicator], board, new IndicatorMemory(null));
    expect(found.map((f) => f.subject)).toEqual(["/usr/bin/build", "/tmp/.x"]);
    expect(found[0]).toMatchObject({
      guard: "indicator",
      claim: "executables",
      tier: "contraindicated",
      expected: { indicator: "not-in-reference", kind: "unexpected-executable" },
      seen: { path: "/usr/bin/build", sha256: sha("antbuild trojan"), size: "antbuild trojan".length },
    });
    // the same executable with an allowed digest anywhere is fine; an edit makes it unknown again
    writeFileSync(join(root, "usr/bin/build"), "the vendor's miner");
    expect(indicatorGuard([indicator], board, new IndicatorMemory(null)).map((f) => f.subject)).toEqual(["/tmp/.x"]);
    writeFileSync(join(root, "usr/bin/bmminer"), "patched miner");
    expect(indicatorGuard([indicator], board, new IndicatorMemory(null)).map((f) => f.subject)).toEqual(["/usr/bin/bmminer", "/tmp/.x"]);
    // the policy schema stays additive: an older indicator without the new fields still parses, and so does this one
    const base = { version: 1, pools: { allowedUrls: [], workerPatterns: [] }, network: { allowedHosts: [] } };
    expect(policySchema.parse({ ...base, indicators: [indicator] }).indicators[0]).toEqual(indicator);
    expect(policySchema.parse({ ...base, indicators: [{ id: "old", kind: "unexpected-executable", path: "/tmp", severity: "critical", description: "old" }] }).indicators[0]).not.toHaveProperty("allowedSha256");
    expect(() => policySchema.parse({ ...base, indicators: [{ ...indicator, allowedSha256: ["NOT-A-DIGEST"] }] })).toThrow();
  });

  it("HW-GUARD-9: named-file and unexpected-executable recurse maxDepth levels, never through a symbolic link", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const root = join(dir.path, "board");
    mkdirSync(join(root, "config/a/b"), { recursive: true });
    mkdirSync(join(dir.path, "outside"), { recursive: true });
    writeFileSync(join(root, "config/bNminer.conf"), "{}");
    writeFileSync(join(root, "config/a/b/bNminer.conf"), "{}");
    writeFileSync(join(root, "config/a/b/run"), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(join(dir.path, "outside/bNminer.conf"), "{}");
    writeFileSync(join(dir.path, "outside/run"), "#!/bin/sh\n", { mode: 0o755 });
    symlinkSync(join(dir.path, "outside"), join(root, "config/link"));
    const board = platformReader(new SimulatedBoard(root));
    const named = (maxDepth: number): GuardPolicy["indicators"][number] => ({ id: "names", kind: "named-file", paths: ["/config"], pattern: "bNminer\\.conf", maxDepth, severity: "critical", description: "Nightswitcher" });
    const exe = (maxDepth: number): GuardPolicy["indicators"][number] => ({ id: "exe", kind: "unexpected-executable", paths: ["/config"], maxDepth, severity: "critical", description: "payload" });
    const subjects = (i: GuardPolicy["indicators"][number]) => indicatorGuard([i], board, new IndicatorMemory(null)).map((f) => f.subject);
    expect(subjects(named(0))).toEqual(["/config/bNminer.conf"]);
    expect(subjects(named(1))).toEqual(["/config/bNminer.conf"]);
    expect(subjects(named(2))).toEqual(["/config/a/b/bNminer.conf", "/config/bNminer.conf"]);
    expect(subjects(exe(1))).toEqual([]);
    expect(subjects(exe(8))).toEqual(["/config/a/b/run"]);
    // a root that is itself a link to a directory (BusyBox: /var -> /tmp/var) is scanned through the link
    symlinkSync("config", join(root, "var"));
    expect(subjects({ ...named(2), paths: ["/var"] })).toEqual(["/var/a/b/bNminer.conf", "/var/bNminer.conf"]);
  });

  it("HW-GUARD-9: a scan of a big tree stays within its caps, and a scan cut short is a warning, never clean", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const root = join(dir.path, "board");
    // 40 directories x 50 files, every file an executable of 100 bytes, one of them dropped at the end
    for (let d = 0; d < 40; d++) {
      mkdirSync(join(root, `var/d${String(d).padStart(2, "0")}`), { recursive: true });
      for (let f = 0; f < 50; f++) writeFileSync(join(root, `var/d${String(d).padStart(2, "0")}/f${f}`), "x".repeat(100), { mode: 0o755 });
    }
    const inner = platformReader(new SimulatedBoard(root));
    const calls = { stat: 0, list: 0, listed: 0, hashedBytes: 0 };
    const board: typeof inner = {
      readText: (p, max) => inner.readText(p, max),
      stat: (p) => (calls.stat++, inner.stat(p)),
      list: (p, max) => {
        calls.list++;
        const names = inner.list(p, max);
        calls.listed += names?.length ?? 0;
        return names;
      },
      sha256: (p, max) => {
        calls.hashedBytes += inner.stat(p)?.size ?? 0;
        return inner.sha256!(p, max);
      },
    };
    const allowed = createHash("sha256").update("x".repeat(100)).digest("hex");
    const indicators: GuardPolicy["indicators"] = [
      { id: "exe", kind: "unexpected-executable", paths: ["/var"], maxDepth: 8, allowedSha256: [allowed], severity: "critical", description: "payload" },
      { id: "names", kind: "named-file", paths: ["/var"], pattern: "bNminer\\.conf", maxDepth: 8, severity: "critical", description: "Nightswitcher" },
    ];
    const incomplete = (cap: string) => [
      expect.objectContaining({ subject: "/var", tier: "warning", expected: { indicator: "exe", kind: "unexpected-executable" }, seen: { scan: "incomplete", cap } }),
      expect.objectContaining({ subject: "/var", tier: "warning", expected: { indicator: "names", kind: "named-file" }, seen: { scan: "incomplete", cap } }),
    ];
    // entries looked at: at most the cycle's budget (plus one stat per scanned root), shared by both indicators
    const byEntries = { maxEntries: 500, maxHashBytes: 1_000_000, maxDirEntries: 4096 };
    expect(indicatorGuard(indicators, board, new IndicatorMemory(null), undefined, byEntries)).toEqual(incomplete("entries per cycle"));
    expect(calls.stat).toBeLessThanOrEqual(byEntries.maxEntries + indicators.length);
    // entries read from one directory: at most the cap + 1 (to know there were more)
    Object.assign(calls, { stat: 0, list: 0, listed: 0 });
    expect(indicatorGuard(indicators, board, new IndicatorMemory(null), undefined, { maxEntries: 100_000, maxHashBytes: 1_000_000, maxDirEntries: 30 })).toEqual(incomplete("entries per directory"));
    expect(calls.listed).toBeLessThanOrEqual(calls.list * 31);
    // the bytes hashed per cycle are capped too
    calls.hashedBytes = 0;
    const byHash = indicatorGuard([indicators[0]!], board, new IndicatorMemory(null), undefined, { maxEntries: 100_000, maxHashBytes: 1_000, maxDirEntries: 4096 });
    expect(byHash).toEqual([expect.objectContaining({ subject: "/var", tier: "warning", seen: { scan: "incomplete", cap: "bytes hashed per cycle" } })]);
    expect(calls.hashedBytes).toBeLessThanOrEqual(1_000);
    // within the caps the whole tree is judged: all 2000 files are known, nothing is reported
    calls.hashedBytes = 0;
    expect(indicatorGuard(indicators, board, new IndicatorMemory(null), undefined, { maxEntries: 10_000, maxHashBytes: 1_000_000, maxDirEntries: 4096 })).toEqual([]);
    expect(calls.hashedBytes).toBe(2000 * 100);
  });

  it("finding identity ignores the message", () => {
    const base = { guard: "connection", claim: "runtime-opaque", tier: "contraindicated", subject: "a", seen: "a", message: "one" } as const;
    expect(findingKey(base)).toBe(findingKey({ ...base, message: "two" }));
    expect(findingKey(base)).not.toBe(findingKey({ ...base, seen: "b" }));
  });
});
