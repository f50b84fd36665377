/**
 * The plane's check of release custom metadata: the wire definition in shared/protocol/release.ts (the one the
 * agent reads, versions by shared/semver) plus what the plane needs on top: reference measurements are required
 * and list each path once, because a release the plane publishes also becomes reference values
 * (see reference-values.ts).
 */
import { ValidationError } from "../../../shared/errors/index.js";
import { firstRepeatedPath, parseReleaseCustom as parseWireReleaseCustom, type ReleaseCustom } from "../../../shared/protocol/release.js";

export { MODEL_NAME, parseMeasurement, RELEASE_CLAIMS, TARGET_NAME, type ReleaseCustom, type ReleaseMeasurement } from "../../../shared/protocol/release.js";
export { isSemVer } from "../../../shared/semver/index.js";

/** Validates (fail closed) the custom block of target `name` for publishing; errors name the field. */
export function parseReleaseCustom(custom: unknown, name: string): ReleaseCustom {
  const parsed = parseWireReleaseCustom(custom, name);
  const field = `signed.targets.${name}.custom.referenceMeasurements`;
  if (!Array.isArray((custom as { referenceMeasurements?: unknown }).referenceMeasurements)) {
    throw new ValidationError(`target ${name}: referenceMeasurements must be a list`, field);
  }
  // Refused here, before anything is published, for the same reason reference-value registration refuses it.
  const twice = firstRepeatedPath(parsed.referenceMeasurements);
  if (twice) throw new ValidationError(`target ${name}: ${twice.path} is listed twice`, `${field}.${twice.index}.path`);
  return parsed;
}
