import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../shared/index.js";
import { compareSemVer, isSemVer } from "./semver.js";

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

  it("refuses what is not a semantic version instead of guessing", () => {
    for (const bad of ["1.10", "v1.0.0", "01.0.0", "1.0.0-", "", "1.0.0-01"]) {
      expect(isSemVer(bad), bad).toBe(false);
      expect(() => compareSemVer(bad, "1.0.0")).toThrow(ValidationError);
    }
  });
});
