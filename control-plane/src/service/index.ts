/**
 * The control plane's domain services over the database: `createServices` wires the operator-facing
 * ControlPlaneService (called by control-plane/src/http) and the DeviceSideService (called by the broker ingest).
 *
 * One module per concern: enrollment.ts, api-tokens.ts, queries.ts, challenges.ts, containment.ts,
 * reference-values.ts (composed by operator.ts); device-side.ts with heartbeats.ts and clock-step.ts; commands/
 * (issue, publish, pending, expire, ack batching); context.ts (dependencies, options) and tx.ts (transaction
 * helpers). This index is the folder's public surface: other folders import from here only.
 */
import { ConfigError } from "../../../shared/errors/index.js";
import type { Tx as DbTransaction } from "../db/index.js";
import { ensureAdminToken } from "./api-tokens.js";
import { createServiceContext, type ServiceDeps, type ServiceOptions } from "./context.js";
import { createDeviceSideService } from "./device-side.js";
import { createOperatorService } from "./operator.js";
import type { ControlPlaneService, DeviceSideService } from "./types.js";

export * from "./types.js";
export { createServiceContext, type ServiceContext, type ServiceDeps, type ServiceOptions, iso, newId } from "./context.js";
export { chunks, type DeviceRow, lockDevice, lockDevices, recordAudit, recordTransitions, type TransitionRecord, type Tx } from "./tx.js";
export { issueCommands, issueContainment, publishCommands, type ContainmentAction, type IssueResult } from "./commands/index.js";
export { toReferenceView } from "./reference-values.js";
export { verifyLiveness } from "./heartbeats.js";

/** What `createServices` returns: the two services and their lifecycle. */
export interface Services {
  service: ControlPlaneService;
  deviceSide: DeviceSideService;
  /**
   * Creates the first admin API token and returns it (shown once); null when an admin token already exists.
   * Exactly one of several replicas starting at once on an empty database gets a token (HW-HA-2);
   * `onCreate` runs in the transaction that creates it (replicas record where its file goes, so no other replica
   * can see the token without the record).
   */
  ensureAdminToken(onCreate?: (tx: DbTransaction) => Promise<void>): Promise<string | null>;
  /** Stops the heartbeat timer and flushes what is buffered. Call before closing the database. */
  close(): Promise<void>;
}

function validateOptions(options: ServiceOptions): void {
  for (const name of ["commandTtlMs", "challengeTtlMs", "staleAfterMs"] as const) {
    const value = options[name];
    if (!Number.isInteger(value) || value <= 0) throw new ConfigError(`${name} must be a positive integer, got ${value}`, name);
  }
  if (options.autoQuarantine !== "contraindicated" && options.autoQuarantine !== "off") {
    throw new ConfigError(`autoQuarantine must be "contraindicated" or "off", got ${JSON.stringify(options.autoQuarantine)}`, "autoQuarantine");
  }
}

/**
 * Builds both services over one context. Throws ConfigError naming the option for an invalid `deps.options`.
 * `deps.hooks` are the device side's hooks (policy delivery, farm alerts): the same wiring in tests and production.
 */
export function createServices(deps: ServiceDeps): Services {
  validateOptions(deps.options);
  const ctx = createServiceContext(deps);
  const service = createOperatorService(ctx);
  const { close, ...deviceSide } = createDeviceSideService(ctx);
  return {
    service,
    deviceSide,
    ensureAdminToken: (onCreate) => ensureAdminToken(ctx, onCreate),
    close,
  };
}
