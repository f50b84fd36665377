/**
 * The one definition of a version for plane and agent (HW-UPD-3): strict Semantic Versioning 2.0.0
 * (semver.org, the grammar of section 2, 9 and 10: MAJOR.MINOR.PATCH, numeric identifiers without leading zeros,
 * no empty identifiers, pre-release and build identifiers of [0-9A-Za-z-]) and its precedence (section 11).
 * The release CLI, the plane's upload check and the agent's anti-rollback floor all use it, so the plane never
 * publishes a version (`1.0.0-01`, `1.0.0-a..b`, `1.0.0-rc.`) that every agent would then refuse.
 *
 * Own code rather than the `semver` npm package: its `parse`/`valid` accept a leading `v`/`=` and surrounding
 * whitespace, and cap numbers at 2^53; here a version is exactly the semver.org grammar, compared with BigInt.
 * Build metadata (`+...`) is ignored for precedence, as the spec says; a version that does not parse is refused
 * rather than guessed at, because a lenient parse could let "1.10" sort below "1.9".
 */
import { ValidationError } from "../errors/index.js";

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export interface SemVer {
  major: bigint;
  minor: bigint;
  patch: bigint;
  prerelease: string[];
}

/** True when `text` is a strict SemVer 2.0.0 version of at most 256 characters. */
export function isSemVer(text: string): boolean {
  return text.length <= 256 && SEMVER.test(text);
}

/** Parses a strict SemVer 2.0.0 version; throws ValidationError naming `field` when it is not one. */
export function parseSemVer(text: string, field = "version"): SemVer {
  const m = text.length <= 256 ? SEMVER.exec(text) : null;
  if (!m) throw new ValidationError(`${field}: ${JSON.stringify(text.slice(0, 80))} is not a semantic version (MAJOR.MINOR.PATCH)`, field);
  return { major: BigInt(m[1]!), minor: BigInt(m[2]!), patch: BigInt(m[3]!), prerelease: m[4] ? m[4].split(".") : [] };
}

function compareIdentifiers(a: string, b: string): number {
  const an = /^\d+$/.test(a);
  const bn = /^\d+$/.test(b);
  if (an && bn) return BigInt(a) === BigInt(b) ? 0 : BigInt(a) < BigInt(b) ? -1 : 1;
  if (an) return -1; // numeric identifiers have lower precedence than alphanumeric ones
  if (bn) return 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

/** -1, 0 or 1 by semver precedence. Throws ValidationError when either is not a semantic version. */
export function compareSemVer(a: string, b: string): number {
  const x = parseSemVer(a);
  const y = parseSemVer(b);
  for (const key of ["major", "minor", "patch"] as const) {
    if (x[key] !== y[key]) return x[key] < y[key] ? -1 : 1;
  }
  // A pre-release sorts below its release: 1.0.0-rc.1 < 1.0.0.
  if (x.prerelease.length === 0 || y.prerelease.length === 0) {
    return x.prerelease.length === y.prerelease.length ? 0 : x.prerelease.length === 0 ? 1 : -1;
  }
  for (let i = 0; i < Math.max(x.prerelease.length, y.prerelease.length); i++) {
    const p = x.prerelease[i];
    const q = y.prerelease[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const c = compareIdentifiers(p, q);
    if (c !== 0) return c;
  }
  return 0;
}
