/**
 * The release custom metadata contract (shared/protocol/release.ts), read by the agent and checked by the plane:
 * one definition of models and versions for both sides .
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../errors/index.js";
import { parseReleaseCustom } from "./release.js";

const base = { hardwareModels: ["S19", "S19j Pro"], version: "2.1.0", referenceMeasurements: [{ path: "/firmware/bmminer", sha256: "a".repeat(64), size: 3 }] };

describe("release custom metadata (wire contract)", () => {
  it("parses a release, keeping the measurements; measurements are optional on the wire", () => {
    expect(parseReleaseCustom(base, "fw")).toEqual(base);
    expect(parseReleaseCustom({ hardwareModels: ["S19"], version: "2.1.0-rc.1+build.7" }, "fw")).toEqual({ hardwareModels: ["S19"], version: "2.1.0-rc.1+build.7", referenceMeasurements: [] });
  });

  it("refuses versions that are not strict SemVer 2.0.0, naming the field", () => {
    for (const version of ["1.0.0-01", "1.0.0-a..b", "1.0.0-rc.", "1.0.0-", "1.0.0+", "01.2.3", "1.2", "v1.2.3", " 1.2.3", 3, null]) {
      expect(() => parseReleaseCustom({ ...base, version }, "fw"), String(version)).toThrow(ValidationError);
      try {
        parseReleaseCustom({ ...base, version }, "fw");
      } catch (error) {
        expect((error as ValidationError).field).toBe("signed.targets.fw.custom.version");
      }
    }
  });

  it("refuses missing or malformed models and measurements", () => {
    const cases: Array<[unknown, string]> = [
      [undefined, "signed.targets.fw.custom"],
      [{ ...base, hardwareModels: [] }, "signed.targets.fw.custom.hardwareModels"],
      [{ ...base, hardwareModels: ["S19", "../x"] }, "signed.targets.fw.custom.hardwareModels"],
      [{ ...base, hardwareModels: Array.from({ length: 257 }, (_, i) => `M${i}`) }, "signed.targets.fw.custom.hardwareModels"],
      [{ ...base, referenceMeasurements: {} }, "signed.targets.fw.custom.referenceMeasurements"],
      [{ ...base, referenceMeasurements: [{ path: "/x", sha256: "A".repeat(64), size: 1 }] }, "signed.targets.fw.custom.referenceMeasurements.0.sha256"],
    ];
    for (const [custom, field] of cases) expect(() => parseReleaseCustom(custom, "fw"), field).toThrow(expect.objectContaining({ field }));
  });
});
