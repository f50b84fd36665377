/**
 * API tokens (HW-TOKEN-1, HW-HTTP-1): bearer secrets `hwa_...` with a role, stored only as a SHA-256 hash, read on
 * every request so a revoke or an expiry bites at once; and the bootstrap admin token of a fresh database (HW-HA-2).
 */
import { eq, sql } from "drizzle-orm";
import { sha256Hex } from "../../../shared/crypto/index.js";
import { ValidationError } from "../../../shared/errors/index.js";
import { apiTokens, type Tx as DbTransaction } from "../db/index.js";
import { NotFoundError } from "../errors.js";
import { iso, newId, newSecret, type ServiceContext } from "./context.js";
import { listTokens, recordAudit, revokeTokenOnce, type Tx } from "./tx.js";
import type { Actor, ApiPrincipal, ApiTokenCreated, ApiTokenView, ControlPlaneService, Role } from "./types.js";

const ROLES: readonly Role[] = ["viewer", "operator", "admin"];
/** Advisory lock ("HWAD") serializing the bootstrap admin token check-and-create across replicas (HW-HA-2). */
const ADMIN_BOOTSTRAP_LOCK_KEY = 0x4857_4144;
const BOOTSTRAP: Actor = { kind: "system", id: "bootstrap" };

/** lastUsedAt is refreshed at most this often per token (one write a minute, not one per request). */
const LAST_USED_RESOLUTION_MS = 60_000;

function toApiTokenView(row: typeof apiTokens.$inferSelect, now: number): ApiTokenView {
  const status = row.revokedAt !== null ? "revoked" : row.expiresAt !== null && row.expiresAt.getTime() <= now ? "expired" : "active";
  return {
    id: row.id,
    role: row.role as Role,
    label: row.label,
    createdAt: row.createdAt.toISOString(),
    createdBy: row.createdBy as Actor,
    expiresAt: iso(row.expiresAt),
    lastUsedAt: iso(row.lastUsedAt),
    revokedAt: iso(row.revokedAt),
    status,
  };
}

/** Creates an API token row and its audit row in `tx`; returns the secret (shown once). */
export async function createApiTokenRow(tx: Tx, actor: Actor, role: Role, label: string, at: Date, expiresAt: Date | null = null): Promise<ApiTokenCreated> {
  const token = newSecret("hwa_");
  const id = newId("tok");
  await tx.insert(apiTokens).values({ id, tokenHash: sha256Hex(token), role, label, createdBy: actor, createdAt: at, expiresAt });
  await recordAudit(tx, [{ actor, action: "api-token.create", target: id, detail: { role, label, expiresAt: expiresAt?.toISOString() ?? null } }], at);
  return { id, token, role, label, expiresAt: expiresAt?.toISOString() ?? null };
}

/** The API-token methods of ControlPlaneService (ValidationError for a bad role or ttlMs, NotFoundError on revoke). */
export function createApiTokens(
  ctx: ServiceContext,
): Pick<ControlPlaneService, "authenticateApiToken" | "createApiToken" | "listApiTokens" | "revokeApiToken"> {
  const { db } = ctx;
  return {
    async authenticateApiToken(token) {
      if (typeof token !== "string" || !token.startsWith("hwa_")) return null;
      const [row] = await db.select().from(apiTokens).where(eq(apiTokens.tokenHash, sha256Hex(token)));
      if (!row) return null;
      const now = ctx.now();
      // HW-TOKEN-1: read on every request (HW-HTTP-1), so a revoke or an expiry bites on the very next one.
      if (row.revokedAt !== null) return null;
      if (row.expiresAt !== null && row.expiresAt.getTime() <= now) return null;
      if (row.lastUsedAt === null || now - row.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
        await db.update(apiTokens).set({ lastUsedAt: new Date(now) }).where(eq(apiTokens.id, row.id));
      }
      return { id: row.id, role: row.role as Role, label: row.label } satisfies ApiPrincipal;
    },

    async createApiToken(actor, input) {
      if (!ROLES.includes(input.role)) throw new ValidationError(`role ${JSON.stringify(input.role)} is not one of ${ROLES.join(", ")}`, "role");
      if (input.ttlMs !== undefined && (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0)) {
        throw new ValidationError(`ttlMs must be a positive integer, got ${input.ttlMs}`, "ttlMs");
      }
      const at = new Date(ctx.now());
      const expiresAt = input.ttlMs === undefined ? null : new Date(at.getTime() + input.ttlMs);
      return db.transaction((tx) => createApiTokenRow(tx, actor, input.role, input.label, at, expiresAt));
    },

    listApiTokens: () => listTokens(db, apiTokens, ctx.now, toApiTokenView),

    async revokeApiToken(actor, id, reason) {
      const at = new Date(ctx.now());
      const row = await revokeTokenOnce(db, apiTokens, "api token", id, actor, at, (token) => ({ action: "api-token.revoke", detail: { role: token.role, label: token.label, reason } }));
      return toApiTokenView(row, at.getTime());
    },
  };
}

/**
 * Creates the first admin API token and returns it (shown once); null when an admin token already exists. Exactly
 * one of several replicas starting at once on an empty database gets a token (HW-HA-2); `onCreate` runs in the
 * transaction that creates it.
 */
export async function ensureAdminToken(ctx: ServiceContext, onCreate?: (tx: DbTransaction) => Promise<void>): Promise<string | null> {
  const at = new Date(ctx.now());
  return ctx.db.transaction(async (tx) => {
    // HW-HA-2: replicas starting together on one empty database take turns here, so only the first makes one.
    await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_BOOTSTRAP_LOCK_KEY})`);
    const [admin] = await tx.select({ id: apiTokens.id }).from(apiTokens).where(eq(apiTokens.role, "admin")).limit(1);
    if (admin) return null;
    const { token } = await createApiTokenRow(tx, BOOTSTRAP, "admin", "bootstrap admin", at);
    await onCreate?.(tx);
    return token;
  });
}
