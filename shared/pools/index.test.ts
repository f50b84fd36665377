import { describe, expect, it } from "vitest";
import { PoolAllowList, parsePoolRule, poolRuleEndpoint, readMinerPoolUrl } from "./index.js";

describe("readMinerPoolUrl: where cgminer connects for a URL", () => {
  it("adds stratum+tcp:// to a URL without a scheme (setup_url)", () => {
    expect(readMinerPoolUrl("pool.example.net:3333")).toEqual({ scheme: "stratum+tcp", host: "pool.example.net", port: 3333, path: "", xnsub: false });
  });

  it("reads scheme and host case-insensitively, drops a trailing slash, path and final root dot", () => {
    for (const url of ["STRATUM+TCP://Pool.Example.NET:3333", "stratum+tcp://pool.example.net:3333/", "stratum+tcp://pool.example.net.:3333", "stratum+tcp://pool.example.net:3333/anything"]) {
      expect(readMinerPoolUrl(url), url).toMatchObject({ scheme: "stratum+tcp", host: "pool.example.net", port: 3333 });
    }
  });

  it("defaults the port to 80 when there is none, and reads at most 5 port characters (extract_sockaddr)", () => {
    expect(readMinerPoolUrl("stratum+tcp://pool.example.net").port).toBe(80);
    expect(readMinerPoolUrl("stratum+tcp://pool.example.net:333344").port).toBe(33334);
    expect(readMinerPoolUrl("stratum+tcp://pool.example.net:33x").port).toBeNull();
    expect(readMinerPoolUrl("stratum+tcp://pool.example.net:").port).toBeNull();
    expect(readMinerPoolUrl("stratum+tcp://pool.example.net:0").port).toBeNull();
  });

  it("cuts the #xnsub tail and remembers it; any other fragment is cut too", () => {
    expect(readMinerPoolUrl("stratum+tcp://eu.nicehash.com:9200#xnsub")).toMatchObject({ host: "eu.nicehash.com", port: 9200, xnsub: true });
    expect(readMinerPoolUrl("stratum+tcp://eu.nicehash.com:9200#other")).toMatchObject({ port: 9200, xnsub: false });
  });

  it("sees a proxy prefix and user info the way the miner does", () => {
    expect(readMinerPoolUrl("socks5:10.0.0.9:1080|stratum+tcp://pool.example.net:3333")).toMatchObject({ host: "pool.example.net", port: 3333, proxy: "10.0.0.9:1080" });
    // cgminer takes the host up to the first ':' -> "user", and the port "pw@po": unusable.
    expect(readMinerPoolUrl("stratum+tcp://user:pw@pool.example.net:3333")).toMatchObject({ host: "user", port: null });
  });

  it("reads [IPv6]:port and keeps the stratum V2 authority key path", () => {
    expect(readMinerPoolUrl("stratum+tcp://[2001:DB8::1]:3333")).toMatchObject({ host: "2001:db8::1", port: 3333 });
    expect(readMinerPoolUrl("stratum2+tcp://v2.example.net:3336/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh/")).toMatchObject({ path: "/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh" });
  });
});

describe("parsePoolRule: the policy form", () => {
  it("accepts host:port, #xnsub, any port (:*), [IPv6] and stratum V2 paths", () => {
    for (const url of ["stratum+tcp://pool.example.net:3333", "stratum+tcp://eu.nicehash.com:9200#xnsub", "stratum+tcp://rental.example.net:*", "stratum+ssl://[2001:db8::1]:443", "stratum2+tcp://v2.example.net:3336/key"]) {
      expect(parsePoolRule(url), url).toMatchObject({ ok: true });
    }
    expect(parsePoolRule("stratum+tcp://rental.example.net:*")).toMatchObject({ rule: { port: "*" } });
  });

  it("refuses what is not a stratum pool with a host and a port, naming the problem", () => {
    const cases: [string, RegExp][] = [
      ["pool.example.net:3333", /must be a URL/],
      ["http://pool.example.net:3333", /scheme http/],
      ["stratum+tcp://pool.example.net", /must name a port/],
      ["stratum+tcp://pool.example.net:99999", /1-65535/],
      ["stratum+tcp://user:pw@pool.example.net:3333", /user or password/],
      ["stratum+tcp://pool.example.net:3333?x=1", /query/],
      ["stratum+tcp://pool.example.net:3333#frag", /fragment other than #xnsub/],
      ["stratum+tcp://:3333", /must name a host/],
      ["stratum+tcp://pool example:3333", /must name a host/],
    ];
    for (const [url, problem] of cases) expect(parsePoolRule(url), url).toMatchObject({ ok: false, problem: expect.stringMatching(problem) });
  });
});

describe("PoolAllowList: a policy judging what the miner reads", () => {
  const list = new PoolAllowList(["stratum+tcp://pool.example.net:3333", "stratum+tcp://eu.nicehash.com:9200#xnsub", "stratum+tcp://rental.example.net:*", "stratum2+tcp://v2.example.net:3336/key"]);

  it("a scheme-less config pool is the approved pool", () => {
    expect(list.allows("pool.example.net:3333")).toBe(true);
    expect(list.allows("POOL.example.net:3333/")).toBe(true);
  });

  it("the #xnsub tail is the same pool (with or without it)", () => {
    expect(list.allows("stratum+tcp://eu.nicehash.com:9200#xnsub")).toBe(true);
    expect(list.allows("eu.nicehash.com:9200#xnsub")).toBe(true);
    expect(list.allows("stratum+tcp://eu.nicehash.com:9200")).toBe(true);
  });

  it("any port on a :* host, and only that host", () => {
    expect(list.allows("stratum+tcp://rental.example.net:17021")).toBe(true);
    expect(list.allows("stratum+tcp://rental.example.net.evil.example:3333")).toBe(false);
  });

  it("refuses another port, another host, no port (80), a proxy, user info, another V2 key", () => {
    for (const url of ["stratum+tcp://pool.example.net:4444", "stratum+tcp://pool.example.net", "stratum+tcp://evil.example:3333", "socks5:10.0.0.9:1080|stratum+tcp://pool.example.net:3333", "stratum+tcp://x:y@pool.example.net:3333", "stratum2+tcp://v2.example.net:3336/other", "stratum+ssl://pool.example.net:3333", "pool.example.net:3333x", ""]) {
      expect(list.allows(url), url).toBe(false);
    }
  });

  it("gives the connection guard each rule's destination", () => {
    expect(list.rules.map(poolRuleEndpoint)).toEqual([{ host: "pool.example.net", port: 3333 }, { host: "eu.nicehash.com", port: 9200 }, { host: "rental.example.net" }, { host: "v2.example.net", port: 3336 }]);
  });
});
