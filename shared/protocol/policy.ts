/**
 * The `set-policy` command's payload: `params: { policy: GuardPolicy }` (control-plane/src/policy builds it,
 * agent/src/policy stores it, agent/src/guards enforce it). One definition and one set of limits for both sides;
 * the plane's operator input schemas (control-plane/src/policy/schemas.ts) only add stricter checks on top of these
 * (anchored worker patterns, stratum URLs, host syntax, indicator field combinations, `.strict()` bodies), so
 * everything the plane accepts and sends, every agent accepts (a test, test/contract, holds both to it).
 *
 * Objects are not strict on the wire: a later plane may add a field, which an older agent ignores (HW-POL-1 still
 * refuses an older version). The whole policy must fit one MQTT payload (MAX_PAYLOAD_BYTES, shared/protocol/schemas.ts).
 *
 *   policy: { version: positive integer, strictly increasing per device (HW-POL-1),
 *             pools: { allowedUrls: [stratum URL rule, shared/pools], workerPatterns: [regex source, whole name] },
 *             network: { allowedHosts: [host | host:port | [IPv6]:port] },
 *             indicators: [Indicator, shared/protocol/indicators.ts] }
 */
import { z } from "zod";
import { INDICATOR_KINDS, MAX_ALLOWED_SHA256, MAX_SCAN_DEPTH, MAX_SCAN_PATHS } from "./indicators.js";

/** Pool URLs one policy may approve. */
export const MAX_POOL_URLS = 32;
/** Characters of one pool URL rule. */
export const MAX_POOL_URL_CHARS = 512;
/** Worker name patterns one pool policy may carry. */
export const MAX_WORKER_PATTERNS = 32;
/** Characters of one regular expression source (worker patterns, indicator patterns). */
export const MAX_PATTERN_CHARS = 256;
/** Hosts one network allowlist may carry. */
export const MAX_ALLOWED_HOSTS = 256;
/** Characters of one allowed host (a 253-character name, `:` and a port). */
export const MAX_HOST_CHARS = 260;
/** Indicators one policy may carry. */
export const MAX_INDICATORS = 256;
/** Characters of an indicator path. */
export const MAX_DEVICE_PATH_CHARS = 1024;

/**
 * A regular expression source the agent matches against a whole name (`^(?:source)$`, case as the indicator
 * says). Refused unless it compiles that way.
 */
export const wireRegexSourceSchema = z
  .string()
  .min(1)
  .max(MAX_PATTERN_CHARS)
  .refine((source) => {
    try {
      new RegExp(`^(?:${source})$`);
      return true;
    } catch {
      return false;
    }
  }, "must be a valid regular expression");

const devicePath = z.string().min(1).max(MAX_DEVICE_PATH_CHARS).startsWith("/");
const severity = z.enum(["warning", "critical"]);

/** One malware indicator (kinds and their fields: shared/protocol/indicators.ts). */
export const wireIndicatorSchema = z.object({
  id: z.string().min(1).max(128),
  kind: z.enum(INDICATOR_KINDS),
  /** file-present / reappearing-file / file-size-above: the file; unexpected-executable / named-file: a file or a directory; hosts-entry: the hosts file (default /etc/hosts). */
  path: devicePath.optional(),
  /** hosts-entry: host names that must not appear; unexpected-executable / named-file in a directory: file names flagged. */
  pattern: wireRegexSourceSchema.optional(),
  severity,
  description: z.string().max(1024),
  // Additive (older agents ignore them, older policies lack them):
  /** unexpected-executable / named-file: more files or directories to scan besides `path` (/usr/bin, /tmp, /config). */
  paths: z.array(devicePath).max(MAX_SCAN_PATHS).optional(),
  /** unexpected-executable / named-file: levels of subdirectories scanned below each directory (default 0; HW-GUARD-9). */
  maxDepth: z.number().int().min(0).max(MAX_SCAN_DEPTH).optional(),
  /**
   * unexpected-executable: the digests of the executables the device's approved reference values name (HW-GUARD-8).
   * Present: only an executable whose sha256 is not listed is flagged. Absent: every executable found is.
   */
  allowedSha256: z.array(z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256")).max(MAX_ALLOWED_SHA256).optional(),
  /** Set by the plane on indicators whose allowedSha256 came from the reference values (informational). */
  allowReferenceValues: z.boolean().optional(),
  /** file-size-above: the largest size, in bytes, a clean file has. */
  maxBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /** reappearing-file: the tier of a sighting that is not a return (default `severity`). */
  presentSeverity: severity.optional(),
});
export type WireIndicator = z.infer<typeof wireIndicatorSchema>;

export const wirePoolPolicySchema = z.object({
  allowedUrls: z.array(z.string().min(1).max(MAX_POOL_URL_CHARS)).max(MAX_POOL_URLS),
  /** Regex sources: the whole worker name must match one. */
  workerPatterns: z.array(wireRegexSourceSchema).max(MAX_WORKER_PATTERNS),
});

export const wireNetworkPolicySchema = z.object({ allowedHosts: z.array(z.string().min(1).max(MAX_HOST_CHARS)).max(MAX_ALLOWED_HOSTS) });

/** The guard policy a device enforces (`set-policy` params.policy). */
export const wireGuardPolicySchema = z.object({
  version: z.number().int().positive(),
  pools: wirePoolPolicySchema,
  network: wireNetworkPolicySchema,
  indicators: z.array(wireIndicatorSchema).max(MAX_INDICATORS),
});
export type WireGuardPolicy = z.infer<typeof wireGuardPolicySchema>;

/** `set-policy` command params. */
export const wireSetPolicyParamsSchema = z.object({ policy: wireGuardPolicySchema });
