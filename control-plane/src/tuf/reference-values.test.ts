import { describe, expect, it } from "vitest";
import type { ControlPlaneService, ReferenceValueSet } from "../service/index.js";
import { reconcileReleaseReferenceValues } from "./reference-values.js";
import type { TargetView } from "./repository.js";

function fakeService(existing: Array<Pick<ReferenceValueSet, "model" | "firmwareVersion" | "status">>) {
  const registered: Array<{ model: string; firmwareVersion: string; source?: string }> = [];
  const service = {
    listReferenceValues: async ({ model, firmwareVersion }: { model?: string; firmwareVersion?: string }) =>
      existing.filter((set) => set.model === model && set.firmwareVersion === firmwareVersion) as ReferenceValueSet[],
    registerReferenceValues: async (_actor: unknown, input: { model: string; firmwareVersion: string; source?: string }) => {
      registered.push({ model: input.model, firmwareVersion: input.firmwareVersion, source: input.source });
      return { id: `rv_${registered.length}` } as ReferenceValueSet;
    },
  } as unknown as ControlPlaneService;
  return { service, registered };
}

const target = (name: string, version: string, models: string[]): TargetView =>
  ({ name, version, hardwareModels: models, referenceMeasurements: [{ path: "/firmware/bmminer", sha256: "a".repeat(64), size: 1 }] }) as TargetView;

describe("reconcileReleaseReferenceValues", () => {
  it("registers a published release's values only where no approved set exists for the model and version", async () => {
    const { service, registered } = fakeService([
      { model: "S19", firmwareVersion: "2.0.0", status: "approved" },
      { model: "S19j", firmwareVersion: "2.0.0", status: "superseded" },
    ]);
    const count = await reconcileReleaseReferenceValues(service, [target("fw-2", "2.0.0", ["S19", "S19j"])], { warn: () => {} });
    expect(count).toBe(1);
    expect(registered).toEqual([{ model: "S19j", firmwareVersion: "2.0.0", source: "release" }]);
  });
});
