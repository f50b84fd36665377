/**
 * Malware indicator kinds and bounds: the part of the `set-policy` payload (`policy.indicators[]`) that both the
 * plane (control-plane/src/policy/schemas.ts, stricter checks on operator input) and the agent
 * (agent/src/policy, agent/src/guards/indicators.ts) read. One list of kinds and one set of bounds, so the two
 * programs cannot drift. Rules HW-GUARD-5 (indicators are data), HW-GUARD-8 (reference digests),
 * HW-GUARD-9 (bounded recursive scans).
 *
 * Kinds (what the agent looks for; `severity` critical -> contraindicated, warning -> warning):
 *  - file-present:          `path` exists.
 *  - reappearing-file:      `path` exists; when it was seen, went away and came back, it is a reappearance.
 *                           `presentSeverity` (default `severity`) is the tier of a sighting that is not a return.
 *  - hosts-entry:           a host name in `path` (default /etc/hosts) matches the anchored, case-insensitive `pattern`.
 *  - unexpected-executable: executable files at `path`/`paths` (directories scanned `maxDepth` levels deep, default
 *                           0 = direct entries only) whose name matches `pattern` (absent: any) and whose sha256 is
 *                           not in `allowedSha256` (absent: every executable).
 *  - file-size-above:       the regular file `path` is larger than `maxBytes` bytes (a trojaned system binary).
 *  - named-file:            any entry under `path`/`paths` (recursed `maxDepth` levels) whose NAME matches the
 *                           anchored, case-sensitive `pattern` (a known-bad file name dropped anywhere).
 */

export const INDICATOR_KINDS = ["file-present", "hosts-entry", "unexpected-executable", "reappearing-file", "file-size-above", "named-file"] as const;
export type IndicatorKind = (typeof INDICATOR_KINDS)[number];

/** Kinds that scan directories (`paths`, `maxDepth`). */
export const SCANNING_INDICATOR_KINDS: readonly IndicatorKind[] = ["unexpected-executable", "named-file"];

/** At most this many files or directories in `paths` (the whole policy must fit one MQTT payload). */
export const MAX_SCAN_PATHS = 16;
/** At most this many digests in `allowedSha256`. */
export const MAX_ALLOWED_SHA256 = 2048;
/** HW-GUARD-9: the deepest recursion a policy may ask for (levels of subdirectories below a scanned root). */
export const MAX_SCAN_DEPTH = 8;
