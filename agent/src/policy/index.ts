/**
 * The agent's guard policy (approved pools, network allowlist, malware indicators), delivered by the plane in a
 * signed `set-policy` command and persisted in `<stateDir>/policy.json` (atomic write, mode 0600).
 *
 * The command's signature (verified before this runs, HW-CMD-1) is what makes the policy trusted; here the
 * order is what matters: a version <= the stored one is refused (HW-POL-1), so a replayed or
 * reordered older policy can never widen what the guards accept. A corrupt file refuses to start, like state.json.
 */
import { join } from "node:path";
import { z } from "zod";
import { FreshnessError, ValidationError, validationErrorFromZod } from "../../../shared/index.js";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";
import { wireGuardPolicySchema, wireIndicatorSchema, type WireGuardPolicy, type WireIndicator } from "../../../shared/protocol/index.js";

// The set-policy payload is the wire contract (shared/protocol/policy.ts): one definition and one set of limits
// with the plane, which only adds stricter checks on operator input.
export { INDICATOR_KINDS, MAX_ALLOWED_SHA256, MAX_SCAN_DEPTH, MAX_SCAN_PATHS } from "../../../shared/protocol/index.js";
export const indicatorSchema = wireIndicatorSchema;
export type Indicator = WireIndicator;
export const policySchema = wireGuardPolicySchema;
export type GuardPolicy = WireGuardPolicy;

const fileSchema = z.strictObject({ v: z.literal(1), policy: policySchema, appliedAtMs: z.number().int().nonnegative() });

export class StalePolicyError extends FreshnessError {
  override name = "StalePolicyError";
}

export class PolicyStore {
  private current: GuardPolicy | null;

  private constructor(
    private readonly file: JsonStateFile<z.infer<typeof fileSchema>>,
    current: GuardPolicy | null,
  ) {
    this.current = current === null ? null : deepFreeze(current);
  }

  static open(stateDir: string): PolicyStore {
    const file = jsonStateFile(join(stateDir, "policy.json"), fileSchema, { indent: 2 });
    return new PolicyStore(file, file.load("without the stored policy version")?.policy ?? null);
  }

  /** The stored policy, deeply frozen: every guard cycle reads it, and no reader can change it (a copy per read cost a cycle 0.3 ms). */
  get policy(): GuardPolicy | null {
    return this.current;
  }

  get version(): number {
    return this.current?.version ?? 0;
  }

  /** Validates and persists a policy; HW-POL-1: refuses a version not above the stored one. */
  apply(raw: unknown, nowMs: number): GuardPolicy {
    const parsed = policySchema.safeParse(raw);
    if (!parsed.success) {
      throw validationErrorFromZod(parsed.error, "invalid policy", ["policy"]);
    }
    const policy = parsed.data;
    if (policy.version <= this.version) {
      throw new StalePolicyError(`policy version ${policy.version} is not above the stored ${this.version}`);
    }
    this.file.save({ v: 1, policy, appliedAtMs: nowMs });
    this.current = deepFreeze(policy);
    return this.current;
  }
}

/** Freezes `value` and everything it holds (plain JSON data: objects and arrays). */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** What the set-policy command needs: the store, and a way to re-run the guards at once. */
export interface PolicyTarget {
  store: PolicyStore;
  onApplied: (policy: GuardPolicy) => void;
  now: () => number;
}

/**
 * The `set-policy` action: params `{ policy }`. Returns the ack status; never throws (a bad or stale policy
 * is a failed ack with the reason, and nothing changes).
 */
export function executeSetPolicy(params: Record<string, unknown>, target: PolicyTarget | undefined): { status: "done" | "failed"; reason?: string } {
  if (!target) return { status: "failed", reason: "guards are disabled on this device" };
  try {
    const policy = target.store.apply(params["policy"], target.now());
    target.onApplied(policy);
    return { status: "done" };
  } catch (error) {
    if (error instanceof StalePolicyError) return { status: "failed", reason: `stale policy version: ${error.message}` };
    return { status: "failed", reason: error instanceof Error ? error.message : String(error) };
  }
}
