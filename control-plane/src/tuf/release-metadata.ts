/**
 * The custom metadata a release target carries (signed by the offline targets keys, read by plane and agent):
 * `custom: { hardwareModels: string[], version: semver, referenceMeasurements: [{path, sha256, size, claim?}] }`.
 */
import { ValidationError } from "../../../shared/errors/index.js";

/** Target names: one path segment, so `<sha256>.<name>` is a flat file name (no directories). */
export const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** Semantic version 2.0 (the agent's anti-rollback floor compares these). */
export const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const MODEL = /^[A-Za-z0-9][A-Za-z0-9._ +-]{0,63}$/;
const CLAIMS = ["configuration", "executables", "file-system"] as const;

export interface ReleaseMeasurement {
  path: string;
  sha256: string;
  size: number;
  claim?: (typeof CLAIMS)[number];
}

export interface ReleaseCustom {
  hardwareModels: string[];
  version: string;
  referenceMeasurements: ReleaseMeasurement[];
}

/** Validates (fail closed) the custom block of target `name`; errors name the field. */
export function parseReleaseCustom(custom: unknown, name: string): ReleaseCustom {
  const field = (f: string) => `signed.targets.${name}.custom.${f}`;
  if (typeof custom !== "object" || custom === null) throw new ValidationError(`target ${name} has no custom release metadata`, `signed.targets.${name}.custom`);
  const { hardwareModels, version, referenceMeasurements } = custom as Record<string, unknown>;
  if (!Array.isArray(hardwareModels) || hardwareModels.length === 0 || !hardwareModels.every((m) => typeof m === "string" && MODEL.test(m))) {
    throw new ValidationError(`target ${name}: hardwareModels must be a non-empty list of model names`, field("hardwareModels"));
  }
  if (typeof version !== "string" || !SEMVER.test(version)) throw new ValidationError(`target ${name}: version must be semver`, field("version"));
  if (!Array.isArray(referenceMeasurements)) throw new ValidationError(`target ${name}: referenceMeasurements must be a list`, field("referenceMeasurements"));
  const measurements = referenceMeasurements.map((m, i) => parseMeasurement(m, `${field("referenceMeasurements")}.${i}`));
  // Refused here, before anything is published, for the same reason reference-value registration refuses it:
  // a release the plane publishes must also become reference values (see reference-values.ts).
  const seen = new Set<string>();
  measurements.forEach((m, i) => {
    if (seen.has(m.path)) throw new ValidationError(`target ${name}: ${m.path} is listed twice`, `${field("referenceMeasurements")}.${i}.path`);
    seen.add(m.path);
  });
  return { hardwareModels: hardwareModels as string[], version, referenceMeasurements: measurements };
}

/** Accepts a reference measurement, or a `hashward-agent measure` entry ({path, kind, size, sha256}). */
export function parseMeasurement(value: unknown, field: string): ReleaseMeasurement {
  if (typeof value !== "object" || value === null) throw new ValidationError(`${field} must be an object`, field);
  const m = value as Record<string, unknown>;
  if (typeof m.path !== "string" || m.path.length === 0 || m.path.length > 1024) throw new ValidationError(`${field}.path must be a path`, `${field}.path`);
  // kind "missing" (or sha256 "") marks a path that must be absent.
  const sha256 = m.kind === "missing" ? "" : m.sha256;
  if (typeof sha256 !== "string" || !/^([0-9a-f]{64})?$/.test(sha256)) throw new ValidationError(`${field}.sha256 must be lowercase hex sha256 or ""`, `${field}.sha256`);
  if (typeof m.size !== "number" || !Number.isSafeInteger(m.size) || m.size < 0) throw new ValidationError(`${field}.size must be a non-negative integer`, `${field}.size`);
  const out: ReleaseMeasurement = { path: m.path, sha256, size: m.size };
  if (m.claim !== undefined) {
    if (!CLAIMS.includes(m.claim as never)) throw new ValidationError(`${field}.claim must be one of ${CLAIMS.join(", ")}`, `${field}.claim`);
    out.claim = m.claim as ReleaseMeasurement["claim"];
  }
  return out;
}
