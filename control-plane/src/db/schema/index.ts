/**
 * The control plane's one PostgreSQL-dialect schema (PGlite by default, PostgreSQL with DATABASE_URL), one file
 * per concern: core.ts (devices, trust, commands, evidence, tokens, audit), tuf.ts (TUF repository, rollouts),
 * policy.ts (guard policy), events.ts (event feed, webhooks), replicas.ts (shared secrets, leases), ui.ts
 * (dashboard). control-plane/drizzle.config.ts points here; migrations are generated into control-plane/drizzle/.
 */
export * from "./core.js";
export * from "./tuf.js";
export * from "./policy.js";
export * from "./events.js";
export * from "./replicas.js";
export * from "./ui.js";
