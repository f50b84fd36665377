/**
 * The release custom metadata: the `custom` block of a TUF target (signed by the offline targets keys), written by
 * the release CLI, checked by the plane at upload, read by the agent before it installs (HW-UPD-3). One definition
 * for both sides; the plane adds stricter checks on top (control-plane/src/tuf/release-metadata.ts).
 *
 * `custom: { hardwareModels: [model, ...], version: strict SemVer 2.0.0 (shared/semver),
 *            referenceMeasurements?: [{ path, sha256: 64 lowercase hex or "" (must be absent), size: bytes, claim? }] }`
 * Unknown extra fields are kept (a later release tool may add some; the signature covers them).
 */
import { z } from "zod";
import { describeZodError, firstZodIssue, ValidationError } from "../errors/index.js";
import { isSemVer } from "../semver/index.js";
import { sha256Schema } from "./schemas.js";

/** Target names: one path segment, so `<sha256>.<name>` is a flat file name (no directories). */
export const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** Hardware model names (`S19`, `S19j Pro`, ...). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._ +-]{0,63}$/;
export const MAX_RELEASE_MODELS = 256;
/** The appraisal claims a reference measurement may be filed under. */
export const RELEASE_CLAIMS = ["configuration", "executables", "file-system"] as const;

/**
 * One reference measurement: the one definition for release metadata (`custom.referenceMeasurements[]`), the
 * operator API's reference value registration (control-plane/src/http/schemas.ts adds `.strict()` and OpenAPI on
 * top) and the plane's stored reference values. `kind` is accepted so `hashward-agent measure` output (its
 * measurementSchema entries) can be used as is; `kind: "missing"` means the path must be absent, like sha256 "".
 *   path    the device path (1-1024 characters)
 *   sha256  lowercase hex SHA-256; "" = must be absent
 *   size    bytes (a safe integer >= 0)
 *   claim   the appraisal claim to file it under (absent: derived from the path)
 */
export const referenceMeasurementSchema = z.object({
  path: z.string().min(1).max(1024),
  sha256: z.union([sha256Schema, z.literal("")]),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  claim: z.enum(RELEASE_CLAIMS).optional(),
  kind: z.enum(["file", "block", "missing"]).optional(),
});

/** A parsed reference measurement (`kind` folded into `sha256`). */
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

/**
 * Accepts a reference measurement, or a `hashward-agent measure` entry ({path, kind, size, sha256}), by
 * referenceMeasurementSchema; throws ValidationError naming `field` and the bad sub-field.
 */
export function parseMeasurement(value: unknown, field: string): ReleaseMeasurement {
  // kind "missing" (or sha256 "") marks a path that must be absent.
  const folded = isRecord(value) && value.kind === "missing" ? { ...value, sha256: "" } : value;
  const parsed = referenceMeasurementSchema.safeParse(folded);
  if (!parsed.success) {
    const { field: at } = firstZodIssue(parsed.error, [field]);
    throw new ValidationError(describeZodError(parsed.error, [field]), at, { cause: parsed.error });
  }
  const m = parsed.data;
  const out: ReleaseMeasurement = { path: m.path, sha256: m.sha256, size: m.size };
  if (m.claim !== undefined) out.claim = m.claim;
  return out;
}

/** The first measurement whose path an earlier one already lists (a reference value names each path once), or null. */
export function firstRepeatedPath(measurements: readonly { path: string }[]): { index: number; path: string } | null {
  const seen = new Set<string>();
  for (const [index, m] of measurements.entries()) {
    if (seen.has(m.path)) return { index, path: m.path };
    seen.add(m.path);
  }
  return null;
}
