/**
 * The Hono environment of the HTTP app: what the auth middleware (./auth.ts) sets on each request's context.
 * A file of its own so route modules (./routes, control-plane/src/ui) type their handlers without importing the
 * app that registers them.
 */
import type { AuthVariables } from "./auth.js";

/** The app's `Env`: `c.get("principal")` / `c.get("actor")` as set by requireRole (HW-HTTP-1). */
export type HttpEnv = { Variables: AuthVariables };
