import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDirPool } from "../../test/support/temp-dir.js";
import { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { jsonStateFile } from "./json-state.js";

const schema = z.strictObject({ seq: z.number().int() });

describe("jsonStateFile", () => {
  const dirs = tempDirPool("json-state");
  let dir: string;
  beforeEach(() => void (dir = dirs.make()));
  afterEach(() => dirs.cleanup());

  it("a missing file loads as undefined; a saved one loads back, written with the mode and indentation asked for", () => {
    const file = jsonStateFile(join(dir, "state.json"), schema, { mode: 0o640, indent: 2 });
    expect(file.load("with reset sequence numbers")).toBeUndefined();
    expect(file.loadHint()).toBeUndefined();
    file.save({ seq: 7 });
    expect(file.load("with reset sequence numbers")).toEqual({ seq: 7 });
    expect(readFileSync(file.path, "utf8")).toBe('{\n  "seq": 7\n}\n');
    expect(statSync(file.path).mode & 0o777).toBe(0o640);
  });

  it("a corrupt trusted file refuses with a ConfigError naming the file and what a reset would cost; a corrupt hint is forgotten", () => {
    const path = join(dir, "state.json");
    const file = jsonStateFile(path, schema);
    for (const text of ["{not json", '{"seq":"x"}', '{"seq":1,"extra":true}']) {
      writeFileSync(path, text);
      expect(() => file.load("with reset sequence numbers")).toThrow(ConfigError);
      expect(() => file.load("with reset sequence numbers")).toThrow(`stateDir: ${path} is corrupt; refusing to start with reset sequence numbers`);
      expect(file.loadHint()).toBeUndefined();
    }
  });

  it("refuses to save a value off the schema and keeps the old file", () => {
    const file = jsonStateFile(join(dir, "state.json"), schema);
    file.save({ seq: 1 });
    expect(() => file.save({ seq: 1.5 })).toThrow();
    expect(file.load("")).toEqual({ seq: 1 });
  });
});
