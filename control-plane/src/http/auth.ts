/**
 * Bearer-token authentication and role checks for the operator API.
 *
 * HW-HTTP-1: every operator route resolves the token through the service on every request (nothing cached, so a
 * revoked token stops working at once) and answers 401 (no/unknown token, with `WWW-Authenticate`) or 403
 * (known token, role too low) before any validator or handler runs: no service call happens for a refused request.
 */
import type { MiddlewareHandler } from "hono";
import type { Actor, ApiPrincipal, ControlPlaneService, Role } from "../service/index.js";
import { errorBody } from "./errors.js";

export const ROLE_RANK: Readonly<Record<Role, number>> = { viewer: 0, operator: 1, admin: 2 };

/** Longer than any token the service issues; anything longer is refused without a look-up. */
const MAX_TOKEN_CHARS = 512;
const BEARER = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i;

export type AuthVariables = {
  requestId: string;
  /** Set by `requireRole` on authenticated routes. */
  actor: Actor;
  principal: ApiPrincipal;
};

export function roleAllows(have: Role, need: Role): boolean {
  return ROLE_RANK[have] >= ROLE_RANK[need];
}

/** The token from `Authorization: Bearer <token>`, or null when absent or malformed. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = BEARER.exec(header);
  const token = match?.[1];
  if (!token || token.length > MAX_TOKEN_CHARS) return null;
  return token;
}

export function requireRole(service: ControlPlaneService, need: Role): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async function requireRoleMiddleware(c, next) {
    const token = bearerToken(c.req.header("authorization"));
    // RFC 6750 3: a request without credentials gets the bare challenge; a bad token gets error="invalid_token".
    if (token === null) {
      c.header("WWW-Authenticate", "Bearer");
      return c.json(errorBody("unauthorized", "missing bearer token"), 401);
    }
    const principal = await service.authenticateApiToken(token);
    if (!principal) {
      c.header("WWW-Authenticate", 'Bearer error="invalid_token"');
      return c.json(errorBody("unauthorized", "unknown or revoked token"), 401);
    }
    if (!roleAllows(principal.role, need)) {
      return c.json(errorBody("forbidden", `role ${principal.role} may not do this; needs ${need}`), 403);
    }
    c.set("principal", principal);
    c.set("actor", { kind: "operator", id: principal.id, role: principal.role });
    await next();
  };
}
