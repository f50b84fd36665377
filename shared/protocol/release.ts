/**
 * The release custom metadata: the `custom` block of a TUF target (signed by the offline targets keys), written by
 * the release CLI, checked by the plane at upload, read by the agent before it installs (HW-UPD-3). One definition
 * for both sides; the plane adds stricter checks on top (control-plane/src/tuf/release-metadata.ts).
 *
 * `custom: { hardwareModels: [model, ...], version: strict SemVer 2.0.0 (shared/semver),
 *            referenceMeasurements?: [{ path, sha256: 64 lowercase hex or "" (must be absent), size: bytes, claim? }] }`
 * Unknown extra fields are kept (a later release tool may add some; the signature covers them).
 */
import { ValidationError } from "../errors/index.js";
import { isSemVer } from "../semver/index.js";

/** Target names: one path segment, so `<sha256>.<name>` is a flat file name (no directories). */
export const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** Hardware model names (`S19`, `S19j Pro`, ...). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._ +-]{0,63}$/;
export const MAX_RELEASE_MODELS = 256;
/** The appraisal claims a reference measurement may be filed under. */
export const RELEASE_CLAIMS = ["configuration", "executables", "file-system"] as const;

export interface ReleaseMeasurement {
  path: string;
  /** Lowercase hex SHA-256; "" means the path must be absent. */
  sha256: string;
  /** Bytes. */
  size: number;
  claim?: (typeof RELEASE_CLAIMS)[number];
}

export interface ReleaseCustom {
  hardwareModels: string[];
  version: string;
  /** [] when the target carries none. */
  referenceMeasurements: ReleaseMeasurement[];
}

/**
 * A short, never-throwing description of a refused value for an error message. JSON.stringify would overflow the
 * stack on a value nested thousands deep (found by fuzzing, HW-FUZZ-1), turning a ValidationError into a crash.
 */
function describeValue(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value.slice(0, 80)) : value === null || typeof value !== "object" ? String(value) : Array.isArray(value) ? "(a list)" : "(an object)";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parses (fail closed) the custom block of target `name`. Throws ValidationError whose `field` is the dotted path
 * (`signed.targets.<name>.custom.<field>`) of the first bad field.
 */
export function parseReleaseCustom(custom: unknown, name: string): ReleaseCustom {
  const field = (f: string) => `signed.targets.${name}.custom.${f}`;
  if (!isRecord(custom)) throw new ValidationError(`target ${name} has no custom release metadata`, `signed.targets.${name}.custom`);
  const { hardwareModels, version, referenceMeasurements } = custom;
  if (
    !Array.isArray(hardwareModels) ||
    hardwareModels.length === 0 ||
    hardwareModels.length > MAX_RELEASE_MODELS ||
    !hardwareModels.every((m) => typeof m === "string" && MODEL_NAME.test(m))
  ) {
    throw new ValidationError(`target ${name}: hardwareModels must be a list of 1 to ${MAX_RELEASE_MODELS} model names matching ${MODEL_NAME.source}`, field("hardwareModels"));
  }
  // HW-UPD-3: the one definition of a version (strict SemVer 2.0.0), the same the agent's floor compares.
  if (typeof version !== "string" || !isSemVer(version)) {
    throw new ValidationError(`target ${name}: version ${describeValue(version)} must be a semantic version (SemVer 2.0.0, e.g. 2.1.0 or 2.1.0-rc.1)`, field("version"));
  }
  if (referenceMeasurements !== undefined && !Array.isArray(referenceMeasurements)) {
    throw new ValidationError(`target ${name}: referenceMeasurements must be a list`, field("referenceMeasurements"));
  }
  const measurements = (referenceMeasurements ?? []).map((m, i) => parseMeasurement(m, `${field("referenceMeasurements")}.${i}`));
  return { hardwareModels: hardwareModels as string[], version, referenceMeasurements: measurements };
}

/** Accepts a reference measurement, or a `hashward-agent measure` entry ({path, kind, size, sha256}); errors name `field`. */
export function parseMeasurement(value: unknown, field: string): ReleaseMeasurement {
  if (!isRecord(value)) throw new ValidationError(`${field} must be an object`, field);
  const m = value;
  if (typeof m.path !== "string" || m.path.length === 0 || m.path.length > 1024) throw new ValidationError(`${field}.path must be a path`, `${field}.path`);
  // kind "missing" (or sha256 "") marks a path that must be absent.
  const sha256 = m.kind === "missing" ? "" : m.sha256;
  if (typeof sha256 !== "string" || !/^([0-9a-f]{64})?$/.test(sha256)) throw new ValidationError(`${field}.sha256 must be lowercase hex sha256 or ""`, `${field}.sha256`);
  if (typeof m.size !== "number" || !Number.isSafeInteger(m.size) || m.size < 0) throw new ValidationError(`${field}.size must be a non-negative integer`, `${field}.size`);
  const out: ReleaseMeasurement = { path: m.path, sha256, size: m.size };
  if (m.claim !== undefined) {
    if (!RELEASE_CLAIMS.includes(m.claim as never)) throw new ValidationError(`${field}.claim must be one of ${RELEASE_CLAIMS.join(", ")}`, `${field}.claim`);
    out.claim = m.claim as ReleaseMeasurement["claim"];
  }
  return out;
}
