/**
 * A published release's reference measurements become approved reference values (source "release") for each
 * model it lists at its version, so a device running it appraises `trusted`.
 */
import type { Actor, ControlPlaneService } from "../service/index.js";
import type { TargetView } from "./repository.js";

export async function registerReleaseReferenceValues(service: ControlPlaneService, actor: Actor, targets: TargetView[]): Promise<string[]> {
  const ids: string[] = [];
  for (const target of targets) {
    if (target.referenceMeasurements.length === 0) continue;
    for (const model of target.hardwareModels) {
      const set = await service.registerReferenceValues(actor, { model, firmwareVersion: target.version, measurements: target.referenceMeasurements, source: "release" });
      ids.push(set.id);
    }
  }
  return ids;
}

/**
 * Registers the reference values of every published target whose model and version have no approved set. Run at start: publishing and
 * registering are two steps, and a crash between them must not leave a release that can never appraise trusted.
 */
export async function reconcileReleaseReferenceValues(
  service: ControlPlaneService,
  targets: TargetView[],
  logger: { warn(obj: object, msg: string): void },
): Promise<number> {
  const actor: Actor = { kind: "system", id: "release-reconcile" };
  let registered = 0;
  for (const target of targets) {
    if (target.referenceMeasurements.length === 0) continue;
    for (const model of target.hardwareModels) {
      const existing = await service.listReferenceValues({ model, firmwareVersion: target.version });
      // Any approved set counts: an operator may have replaced the release's values on purpose.
      if (existing.some((set) => set.status === "approved")) continue;
      await service.registerReferenceValues(actor, { model, firmwareVersion: target.version, measurements: target.referenceMeasurements, source: "release" });
      logger.warn({ target: target.name, model, version: target.version }, "registered missing reference values of a published release");
      registered++;
    }
  }
  return registered;
}
