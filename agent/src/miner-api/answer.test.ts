import { describe, expect, it } from "vitest";
import { MAX_ANSWER_DEPTH, MinerApiMalformedError, parseCgminerAnswer } from "./index.js";

const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
const pools = (user: Buffer | string) =>
  Buffer.concat([Buffer.from('{"STATUS":[{"STATUS":"S","When":1,"Code":7,"Msg":"1 Pool(s)","Description":"cgminer 4.11.1"}],"POOLS":[{"POOL":0,"URL":"stratum+tcp://pool.example.net:3333","User":"'), Buffer.from(user), Buffer.from('","Stratum Active":true}],"id":1}')]);
const user = (raw: Buffer) => ((parseCgminerAnswer(raw, "pools")["POOLS"] as { User: string }[])[0]!).User;

describe("parseCgminerAnswer: the bytes cgminer really sends", () => {
  it("keeps a raw TAB inside a string (cgminer escapes only \" and \\)", () => {
    expect(user(pools("x\ty"))).toBe("x\ty");
  });

  it("keeps every other raw control byte 0x01-0x1F", () => {
    for (let b = 1; b < 0x20; b++) expect(user(pools(bytes("a", [b], "b"))), `byte ${b}`).toBe(`a${String.fromCharCode(b)}b`);
  });

  it("reads non-UTF-8 bytes as U+FFFD (never equal to an approved name)", () => {
    expect(user(pools(bytes("rig", [0xff, 0xfe], "7")))).toBe("rig\uFFFD\uFFFD7");
    expect(user(pools(bytes("f", [0xc3], "x")))).toBe("f\uFFFDx");
  });

  it("reads cgminer's escapes \\\" and \\\\, and a lone backslash from an unescaped field as itself", () => {
    expect(user(pools('a\\"b\\\\c'))).toBe('a"b\\c');
    expect(user(pools("dom\\x"))).toBe("dom\\x");
  });

  it("reads bmminer's `}{` between array objects, and joined-command answers", () => {
    const stats = parseCgminerAnswer(bytes('{"STATUS":[{"STATUS":"S"}],"STATS":[{"Type":"S9"}{"fan1":3600} {"fan2":1}],"id":1}'), "stats");
    expect(stats["STATS"]).toEqual([{ Type: "S9" }, { fan1: 3600 }, { fan2: 1 }]);
    const joined = parseCgminerAnswer(bytes('{"summary":[{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"Elapsed":5}],"id":1}],"pools":[{"STATUS":[{"STATUS":"S"}],"POOLS":[],"id":1}],"id":1}'), "summary+pools");
    expect(Object.keys(joined)).toEqual(["summary", "pools", "id"]);
  });

  it("refuses a truncated answer (a NUL mid-answer, a cut string, an open bracket) instead of completing it", () => {
    const full = pools("farm.rig1");
    for (const cut of [full.length - 1, full.indexOf(Buffer.from("farm")) + 2, 10, 1]) {
      expect(() => parseCgminerAnswer(full.subarray(0, cut), "pools"), `cut at ${cut}`).toThrow(MinerApiMalformedError);
    }
    expect(() => parseCgminerAnswer(bytes('{"STATUS":[{"STATUS":"S"}],"POOLS":[{"User":"a\\'), "pools")).toThrow(/truncated/);
  });

  it("refuses what is not JSON, unbalanced brackets, `}{` outside an array, trailing garbage and deep nesting", () => {
    for (const text of ["STATUS=S,When=1,Code=7|", '{"a":1}]', '{"a":{}{"b":1}}', '{"a":1} x', "[1,2]", "", "nan"]) {
      expect(() => parseCgminerAnswer(bytes(text), "pools"), text).toThrow(MinerApiMalformedError);
    }
    const deep = `${'{"a":['.repeat(MAX_ANSWER_DEPTH)}1${"]}".repeat(MAX_ANSWER_DEPTH)}`;
    expect(() => parseCgminerAnswer(bytes(deep), "pools")).toThrow(/nested deeper/);
  });
});
