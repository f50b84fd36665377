import { describe, expect, it } from "vitest";
import { parseCli, UsageError } from "./index.js";

describe("cli", () => {
  it.each([
    [[], { name: "help" }],
    [["help"], { name: "help" }],
    [["--version"], { name: "version" }],
    [["run", "--config", "a.json"], { name: "run", configFile: "a.json" }],
    [["measure", "--config=b.json"], { name: "measure", configFile: "b.json" }],
    [["run", "-c", "c.json"], { name: "run", configFile: "c.json" }],
  ])("parses %j", (argv, expected) => {
    expect(parseCli(argv)).toEqual(expected);
  });

  it.each([
    [["frobnicate"], "frobnicate"],
    [["--frob"], "--frob"],
    [["run", "--config", "a.json", "--verbose"], "--verbose"],
    [["run"], "--config"],
    [["measure", "--config"], "--config"],
    [["run", "--config", "--verbose"], "--config"],
    [["run", "--config="], "--config"],
    [["run", "--config", "a.json", "extra"], "extra"],
  ])("refuses %j naming %s", (argv, named) => {
    expect(() => parseCli(argv)).toThrow(UsageError);
    expect(() => parseCli(argv)).toThrow(named);
  });
});
