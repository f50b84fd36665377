/**
 * HW-FUZZ-1 on the miner config files (bmminer.conf / cgminer.conf, read by the pool guard): real-looking files
 * mutated byte-wise, arbitrary JSON, hostile pool entries (toString/valueOf keys, objects where strings belong) and
 * 50,000-deep nesting. Documented outcome: parseMinerConfig never throws; an unreadable file is { ok: false }.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseMinerConfig } from "../agent/src/guards/pools.js";
import { bounded, deeplyNested, fuzz, mutatedBytes, sameMeaning } from "./support.js";

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8");

// --- miner config files ----------------------------------------------------------------------------------------

const BMMINER_CONF = JSON.stringify(
  {
    pools: [
      { url: "stratum+tcp://pool.example.net:3333", user: "farm.rig1", pass: "x" },
      { url: "stratum+tcp://backup.example.net:443", user: "farm.rig1", pass: "x" },
    ],
    "api-listen": true,
    "api-network": true,
    "api-groups": "A:stats:pools:devs:summary:version",
    "api-allow": "A:0/0,W:*",
    "bitmain-use-vil": true,
    "bitmain-freq": "650",
    "bitmain-voltage": "0725",
    "multi-version": "1",
  },
  null,
  "\t",
);

describe("HW-FUZZ-1: miner config files (parseMinerConfig)", () => {
  const configText = fc.oneof(
    mutatedBytes(Buffer.from(BMMINER_CONF)).map(text),
    fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v)),
    fc.record({ pools: fc.array(fc.dictionary(fc.constantFrom("url", "user", "pass", "toString", "valueOf"), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }), { maxLength: 4 }), "api-allow": fc.jsonValue({ maxDepth: 2 }), include: fc.jsonValue({ maxDepth: 2 }) }).map((v) => JSON.stringify(v)),
    fc.integer({ min: 1, max: 50_000 }).map((d) => `{"pools":[{"url":${deeplyNested(d, '"x"')}}]}`),
    fc.string({ unit: "binary", maxLength: 200 }),
  );
  it("never throws: an unreadable config is { ok: false } with a reason; a readable one re-parses to the same meaning", () => {
    fuzz(
      "miner config (bmminer.conf/cgminer.conf)",
      fc.property(configText, (content) => {
        const first = bounded(() => parseMinerConfig("/config/bmminer.conf", content), []);
        if (!first.ok) return;
        const parsed = first.value;
        if (!parsed.ok) {
          expect(parsed.error.length).toBeGreaterThan(0);
          return;
        }
        const again = parseMinerConfig("/config/bmminer.conf", JSON.stringify(parsed.raw));
        expect(sameMeaning(again, parsed)).toBe(true);
      }),
    );
  });
});


// Crash found by this campaign: a config parsed, but a 50,000-deep junk key made re-encoding it (what enforcement
// does to restore pools, HW-GUARD-6) overflow the stack. Fixed in parseMinerConfig (HW-GUARD-1).
describe("regression: deeply nested miner config files", () => {
  it.each([
    ["a junk key", (deep: string) => `{"pools":[{"url":"stratum+tcp://evil.example:3333","user":"x","pass":"x"}],"junk":${deep}}`],
    ["a pool url", (deep: string) => `{"pools":[{"url":${deep}}]}`],
    ["the pools array", (deep: string) => `{"pools":${deep}}`],
  ])("%s nested 50,000 deep is { ok: false } naming the depth, never a throw", (_what, make) => {
    const deep = "[".repeat(50_000) + "]".repeat(50_000);
    const parsed = parseMinerConfig("/config/bmminer.conf", make(deep));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toMatch(/nested deeper than 2048/);
  });
  it("a config nested 2,000 deep (within cgminer's limit) parses and re-encodes", () => {
    const deep = "[".repeat(2_000) + "]".repeat(2_000);
    const parsed = parseMinerConfig("/config/bmminer.conf", `{"pools":[{"url":"stratum+tcp://pool.example.net:3333","user":"a","pass":"x"}],"junk":${deep}}`);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(() => JSON.stringify(parsed.raw)).not.toThrow();
  });
});

// Found by this campaign (10,000 cases): String() on an object whose toString is not a function threw a TypeError.
it.each(['{"pools":[],"include":{"toString":""}}', '{"include":{"valueOf":1,"toString":2}}', '{"include":[{"toString":""}]}', '{"include":null}'])(
  "regression: %s is parsed (an include the guard cannot judge is a problem sentence), never a throw",
  (content) => {
    const parsed = parseMinerConfig("/config/bmminer.conf", content);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(parsed.problems.join(" ")).toMatch(/include/);
  },
);
