/**
 * The control plane's domain services over the database: `createServices` wires the operator-facing
 * ControlPlaneService (called by control-plane/src/http) and the DeviceSideService (called by the broker ingest).
 */
import { eq } from "drizzle-orm";
import { ConfigError } from "../../../shared/errors/index.js";
import { apiTokens } from "../db/index.js";
import { createServiceContext, type ServiceDeps, type ServiceOptions } from "./context.js";
import { createDeviceSideService } from "./device-side.js";
import { createOperatorService } from "./operator.js";
import type { Actor, ControlPlaneService, DeviceSideService } from "./types.js";

export type { ServiceOptions } from "./context.js";
export * from "./types.js";
export { verifyLiveness } from "./heartbeats.js";

export interface Services {
  service: ControlPlaneService;
  deviceSide: DeviceSideService;
  /** Creates the first admin API token and returns it (shown once); null when an admin token already exists. */
  ensureAdminToken(): Promise<string | null>;
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
    async ensureAdminToken() {
      const at = new Date(ctx.now());
      return ctx.db.transaction(async (tx) => {
        const [admin] = await tx.select({ id: apiTokens.id }).from(apiTokens).where(eq(apiTokens.role, "admin")).limit(1);
        if (admin) return null;
        return (await createApiTokenRow(tx, bootstrap, "admin", "bootstrap admin", at)).token;
      });
    },
    close,
  };
}
