/**
 * The guard policy's shapes and their validation, used by the service (any caller) and the HTTP routes alike.
 * Rule HW-POLICY-1: a policy is refused before anything is stored unless every pool URL is a stratum URL with a
 * host and a port (or `:*`, any port; optional `#xnsub`; shared/pools is the one definition the agent matches
 * with), every worker pattern is an anchored regular expression that compiles, every allowed host is a
 * host or host:port, and every indicator names what it needs (a path or a pattern) — errors name the field.
 */
import { ipFamily } from "../../../shared/net/index.js";
import { z } from "zod";
import { parsePoolRule } from "../../../shared/pools/index.js";
import { countsFitTheWindow, farmAlertThresholdFields, farmAlertThresholdsSchema, type FarmAlertThresholds } from "../alerts/thresholds.js";
import {
  deviceIdSchema,
  type IndicatorKind,
  MAX_ALLOWED_HOSTS,
  MAX_INDICATORS,
  MAX_PATTERN_CHARS,
  MAX_POOL_URLS,
  MAX_WORKER_PATTERNS,
  SCANNING_INDICATOR_KINDS,
  wireGuardPolicySchema,
  wireIndicatorSchema,
  wireNetworkPolicySchema,
  wirePoolPolicySchema,
  wireRegexSourceSchema,
  wireSetPolicyParamsSchema,
} from "../../../shared/protocol/index.js";

export const POLICY_KINDS = ["pools", "network", "indicators", "farm-alerts"] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];
/**
 * Kinds the plane applies itself and never sends to devices: changing them issues no set-policy (HW-ALERT-3,
 * farm-alert thresholds judge the telemetry the plane receives).
 */
export const PLANE_SIDE_POLICY_KINDS: readonly PolicyKind[] = ["farm-alerts"];

// The limits are the wire contract's (shared/protocol/policy.ts), the same the agent enforces.
export { MAX_ALLOWED_HOSTS, MAX_INDICATORS, MAX_PATTERN_CHARS, MAX_POOL_URLS, MAX_WORKER_PATTERNS } from "../../../shared/protocol/index.js";
export const MAX_SCOPE_DEVICES = 10_000;

export { POOL_URL_SCHEMES } from "../../../shared/pools/index.js";

/**
 * HW-POLICY-1: one pool URL definition shared with the agent's guards (shared/pools): `scheme://host:port`,
 * `...#xnsub` (NiceHash) or `scheme://host:*` (any port on an approved host, for pools that move miners with
 * client.reconnect); no credentials, query or other fragment.
 */
function poolUrlProblem(value: string): string | null {
  const parsed = parsePoolRule(value);
  return parsed.ok ? null : parsed.problem;
}

/** `^` at the start and an unescaped `$` at the end: the agent matches the whole worker name, not a part of it. */
export function isAnchored(source: string): boolean {
  if (!source.startsWith("^") || !source.endsWith("$")) return false;
  let backslashes = 0;
  for (let i = source.length - 2; i >= 0 && source[i] === "\\"; i--) backslashes++;
  return backslashes % 2 === 0;
}

function compileProblem(source: string): string | null {
  try {
    new RegExp(source);
    return null;
  } catch (error) {
    return `does not compile as a regular expression: ${(error as Error).message}`;
  }
}

const refineWith =
  (problem: (value: string) => string | null) =>
  (value: string, ctx: z.RefinementCtx): void => {
    const message = problem(value);
    if (message) ctx.addIssue({ code: "custom", message });
  };

// Operator input: each schema is the wire schema the agent parses (shared/protocol/policy.ts) with the plane's
// stricter checks added on top, never a second copy of the limits.
export const poolUrlSchema = z.string().trim().pipe(wirePoolPolicySchema.shape.allowedUrls.element).superRefine(refineWith(poolUrlProblem));

export const workerPatternSchema = z
  .string()
  .min(2)
  .pipe(wireRegexSourceSchema)
  .superRefine(refineWith((value) => (isAnchored(value) ? compileProblem(value) : "must be anchored: start with ^ and end with $")));

const regexSourceSchema = wireRegexSourceSchema.superRefine(refineWith(compileProblem));

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function hostProblem(value: string): string | null {
  const bad = "must be a host name, an IP address, host:port or [IPv6]:port";
  if (ipFamily(value) === 6) return null; // bare or bracketed, without a port
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(value);
  let host: string;
  let port: string | undefined;
  if (bracketed) {
    if (ipFamily(bracketed[1] ?? "") !== 6) return bad;
    host = bracketed[1] ?? "";
    port = bracketed[2];
  } else {
    const colon = value.lastIndexOf(":");
    host = colon === -1 ? value : value.slice(0, colon);
    port = colon === -1 ? undefined : value.slice(colon + 1);
    if (!HOSTNAME.test(host)) return bad;
  }
  if (port !== undefined && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) return "port must be 1-65535";
  return null;
}

export const allowedHostSchema = z.string().trim().pipe(wireNetworkPolicySchema.shape.allowedHosts.element).superRefine(refineWith(hostProblem));

export { INDICATOR_KINDS, MAX_ALLOWED_SHA256, MAX_SCAN_DEPTH, MAX_SCAN_PATHS } from "../../../shared/protocol/index.js";

const absolutePath = z.string().min(2).regex(/^\/[^\0]*$/, "must be an absolute path").pipe(wireIndicatorSchema.shape.path.unwrap());

/** Which kinds take which optional fields; any other combination is refused naming the field (HW-POLICY-1). */
const FIELD_KINDS = {
  paths: SCANNING_INDICATOR_KINDS,
  maxDepth: SCANNING_INDICATOR_KINDS,
  allowedSha256: ["unexpected-executable"],
  allowReferenceValues: ["unexpected-executable"],
  maxBytes: ["file-size-above"],
  presentSeverity: ["reappearing-file"],
} as const satisfies Record<string, readonly IndicatorKind[]>;

/**
 * The wire indicator (shared/protocol/policy.ts, what the agent parses) with the plane's stricter input checks:
 * a lowercase id of at most 64 characters, a non-empty description of at most 512, absolute paths without NUL,
 * a pattern that also compiles unwrapped, at least one entry in `paths`, no unknown fields, and only the fields
 * the kind takes (HW-POLICY-1).
 */
export const indicatorSchema = wireIndicatorSchema
  .extend({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "must be 1-64 lowercase letters, digits, '.', '_' or '-'").pipe(wireIndicatorSchema.shape.id),
    path: absolutePath.optional(),
    pattern: regexSourceSchema.optional(),
    description: z.string().min(1).max(512).pipe(wireIndicatorSchema.shape.description),
    paths: z.array(absolutePath).min(1).pipe(wireIndicatorSchema.shape.paths.unwrap()).optional(),
  })
  .strict()
  .superRefine((indicator, ctx) => {
    const scanning = SCANNING_INDICATOR_KINDS.includes(indicator.kind);
    const hasPath = indicator.path !== undefined || (scanning && indicator.paths !== undefined);
    if (indicator.kind !== "hosts-entry" && !hasPath) ctx.addIssue({ code: "custom", path: ["path"], message: `a ${indicator.kind} indicator needs a path` });
    if ((indicator.kind === "hosts-entry" || indicator.kind === "named-file") && indicator.pattern === undefined) {
      ctx.addIssue({ code: "custom", path: ["pattern"], message: `a ${indicator.kind} indicator needs a pattern` });
    }
    if (indicator.kind === "file-size-above" && indicator.maxBytes === undefined) ctx.addIssue({ code: "custom", path: ["maxBytes"], message: "a file-size-above indicator needs maxBytes" });
    for (const [field, kinds] of Object.entries(FIELD_KINDS) as [keyof typeof FIELD_KINDS, readonly IndicatorKind[]][]) {
      if (indicator[field] !== undefined && !kinds.includes(indicator.kind)) {
        ctx.addIssue({ code: "custom", path: [field], message: `only a ${kinds.join(" or ")} indicator takes ${field}` });
      }
    }
  });
export type Indicator = z.infer<typeof indicatorSchema>;

const uniqueIds = (indicators: Indicator[], ctx: z.RefinementCtx): void => {
  const seen = new Set<string>();
  indicators.forEach((indicator, index) => {
    if (seen.has(indicator.id)) ctx.addIssue({ code: "custom", path: [index, "id"], message: `duplicate indicator id ${indicator.id}` });
    seen.add(indicator.id);
  });
};

export const indicatorListSchema = z.array(indicatorSchema).max(MAX_INDICATORS).superRefine(uniqueIds);

/**
 * Who a policy applies to: `{}` the whole fleet (default), `{ model }` every device of that model, `{ deviceIds }`
 * an explicit group. The most specific applies: device group > model > default (HW-POLICY-3).
 */
export const policyScopeSchema = z
  .strictObject({
    model: z.string().min(1).max(128).optional(),
    deviceIds: z.array(deviceIdSchema).min(1).max(MAX_SCOPE_DEVICES).optional(),
  })
  .refine((scope) => scope.model === undefined || scope.deviceIds === undefined, {
    message: "give model or deviceIds, not both",
    path: ["deviceIds"],
  });
export type PolicyScope = z.infer<typeof policyScopeSchema>;

export const poolPolicyBodySchema = z.strictObject({
  allowedUrls: z.array(poolUrlSchema).min(1).max(MAX_POOL_URLS),
  workerPatterns: z.array(workerPatternSchema).max(MAX_WORKER_PATTERNS).default([]),
});
export const networkPolicyBodySchema = z.strictObject({
  allowedHosts: z.array(allowedHostSchema).max(MAX_ALLOWED_HOSTS),
});
export const indicatorPolicyBodySchema = z.strictObject({
  indicators: indicatorListSchema,
});

/** HW-ALERT-3: farm-alert thresholds (control-plane/src/alerts/thresholds.ts); omitted fields take the defaults. */
export const farmAlertPolicyBodySchema = farmAlertThresholdsSchema;

export type PoolPolicyBody = z.infer<typeof poolPolicyBodySchema>;
export type NetworkPolicyBody = z.infer<typeof networkPolicyBodySchema>;
export type IndicatorPolicyBody = z.infer<typeof indicatorPolicyBodySchema>;

export interface PolicyBodies {
  pools: PoolPolicyBody;
  network: NetworkPolicyBody;
  indicators: IndicatorPolicyBody;
  "farm-alerts": FarmAlertThresholds;
}

const scopeField = { scope: policyScopeSchema.default({}) };
/** PUT bodies: the scope plus the kind's fields. */
export const policyInputSchemas = {
  pools: poolPolicyBodySchema.extend(scopeField),
  network: networkPolicyBodySchema.extend(scopeField),
  indicators: indicatorPolicyBodySchema.extend(scopeField),
  // The thresholds' cross-field check runs again on the object with its scope (a refined object cannot be extended).
  "farm-alerts": z.strictObject({ ...farmAlertThresholdFields, ...scopeField }).superRefine(countsFitTheWindow),
} as const;
export type PolicyInput<K extends PolicyKind> = z.input<(typeof policyInputSchemas)[K]>;

/**
 * The `set-policy` command's params (the wire contract with the agent, agent/src/policy): `{ policy }`. The
 * command is signed by the plane's command key, so the policy inside is plain. A device is sent a policy only
 * once a pool policy applies to it: the agent's pool guards treat every pool outside `allowedUrls` as a hijack.
 */
export const guardPolicySchema = wireGuardPolicySchema
  .extend({
    pools: wirePoolPolicySchema.extend({ allowedUrls: wirePoolPolicySchema.shape.allowedUrls.min(1) }).strict(),
    network: wireNetworkPolicySchema.strict(),
    indicators: z.array(indicatorSchema).pipe(wireGuardPolicySchema.shape.indicators),
  })
  .strict();
export type GuardPolicy = z.infer<typeof guardPolicySchema>;
export const setPolicyParamsSchema = wireSetPolicyParamsSchema.extend({ policy: guardPolicySchema }).strict();
export type SetPolicyParams = z.infer<typeof setPolicyParamsSchema>;
