/**
 * The control plane's domain services over the database: `createServices` wires the operator-facing
 * ControlPlaneService (called by control-plane/src/http) and the DeviceSideService (called by the broker ingest).
 */
import { eq, sql } from "drizzle-orm";
import { ConfigError } from "../../../shared/errors/index.js";
import { apiTokens, type Tx } from "../db/index.js";
import { createServiceContext, type ServiceDeps, type ServiceOptions } from "./context.js";
import { createDeviceSideService } from "./device-side.js";
import { createOperatorService } from "./operator.js";
import type { Actor, ControlPlaneService, DeviceSideService } from "./types.js";

export type { ServiceOptions } from "./context.js";
export * from "./types.js";
export { verifyLiveness } from "./heartbeats.js";

/** Advisory lock ("HWAD") serializing the bootstrap admin token check-and-create across replicas (HW-HA-2). */
const ADMIN_BOOTSTRAP_LOCK_KEY = 0x4857_4144;

export interface Services {
  service: ControlPlaneService;
  deviceSide: DeviceSideService;
  /**
   * Creates the first admin API token and returns it (shown once); null when an admin token already exists.
   * Exactly one of several replicas starting at once on an empty database gets a token (HW-HA-2);
   * `onCreate` runs in the transaction that creates it (replicas record where its file goes, so no other replica
   * can see the token without the record).
   */
  ensureAdminToken(onCreate?: (tx: Tx) => Promise<void>): Promise<string | null>;
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

export function createServices(deps: ServiceDeps): Services {
  validateOptions(deps.options);
  const ctx = createServiceContext(deps);
  const { createApiTokenRow, ...service } = createOperatorService(ctx);
  const { close, ...deviceSide } = createDeviceSideService(ctx);
  const bootstrap: Actor = { kind: "system", id: "bootstrap" };

  return {
    service,
    deviceSide,
    async ensureAdminToken(onCreate) {
      const at = new Date(ctx.now());
      return ctx.db.transaction(async (tx) => {
        // HW-HA-2: replicas starting together on one empty database take turns here, so only the first makes one.
        await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_BOOTSTRAP_LOCK_KEY})`);
        const [admin] = await tx.select({ id: apiTokens.id }).from(apiTokens).where(eq(apiTokens.role, "admin")).limit(1);
        if (admin) return null;
        const { token } = await createApiTokenRow(tx, bootstrap, "admin", "bootstrap admin", at);
        await onCreate?.(tx);
        return token;
      });
    },
    close,
  };
}
