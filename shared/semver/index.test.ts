import { describe, expect, it } from "vitest";
import { ValidationError } from "../errors/index.js";
import { compareSemVer, isSemVer } from "./index.js";

describe("compareSemVer", () => {
  it("orders by semver 2.0 precedence (semver.org 11)", () => {
    const ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0", "2.0.0"];
    for (let i = 0; i < ordered.length - 1; i++) {
      expect(compareSemVer(ordered[i]!, ordered[i + 1]!), `${ordered[i]} < ${ordered[i + 1]}`).toBe(-1);
      expect(compareSemVer(ordered[i + 1]!, ordered[i]!)).toBe(1);
    }
    expect(compareSemVer("1.2.3+build.5", "1.2.3")).toBe(0);
    expect(compareSemVer("99999999999999999999.0.0", "99999999999999999998.0.0")).toBe(1);
  });

  it("accepts the grammar's edge cases: zero, alphanumeric identifiers with digits, hyphens, build metadata with leading zeros", () => {
    for (const good of ["0.0.0", "1.0.0-0", "1.0.0-0a", "1.0.0-a-b.c--d", "1.0.0-rc.1+build.001", "1.0.0+001", "1.0.0-x.7.z.92"]) expect(isSemVer(good), good).toBe(true);
  });

  it("refuses what is not a semantic version instead of guessing", () => {
    // A regression: the plane published 1.0.0-01, 1.0.0-a..b and 1.0.0-rc., which every agent refused. Siblings: leading
    // zeros in every numeric part, empty identifiers in pre-release and build, prefixes, spaces, bad characters.
    const invalid = ["1.10", "v1.0.0", "=1.0.0", " 1.0.0", "1.0.0 ", "01.0.0", "1.00.0", "1.0.00", "1.0.0-", "", "1.0.0-01", "1.0.0-rc.01"];
    invalid.push("1.0.0-a..b", "1.0.0-rc.", "1.0.0-.rc", "1.0.0+", "1.0.0+a..b", "1.0.0+b.", "1.0.0-rc_1", "1.0.0-ß", "1.0.0-rc+", "1.0.0.0", "1", "-1.0.0");
    for (const bad of invalid) {
      expect(isSemVer(bad), bad).toBe(false);
      expect(() => compareSemVer(bad, "1.0.0")).toThrow(ValidationError);
    }
  });
});
