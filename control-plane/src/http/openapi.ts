/**
 * Building blocks every route file uses, so each route documents itself the same way in the OpenAPI document:
 * JSON bodies and responses, the error responses, and the security block with the role (HW-HTTP-1).
 */
import type { z } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../service/index.js";
import { requireRole } from "./auth.js";
import { errorSchema } from "./schemas.js";

type SecurityRequirement = Record<string, string[]>;

export const BEARER_SCHEME = "bearerAuth";
/** OpenAPI extension naming the least role a route needs ("none" for public routes). */
export const ROLE_EXTENSION = "x-hashward-role";

export const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { "application/json": { schema } } });

export function jsonBody<S extends z.ZodType>(schema: S, required = true) {
  return { body: { required, content: { "application/json": { schema } } } };
}

/** The error responses of an operator route; pass overrides to describe a route's own 409 or 413. */
export function errorResponses(overrides: Partial<Record<400 | 409 | 413, string>> = {}) {
  return {
    400: json(errorSchema, overrides[400] ?? "Validation failed (names the field)"),
    401: json(errorSchema, "Missing or unknown bearer token"),
    403: json(errorSchema, "Role too low"),
    404: json(errorSchema, "Not found"),
    409: json(errorSchema, overrides[409] ?? "Conflicts with the current state"),
    413: json(errorSchema, overrides[413] ?? "Request body too large"),
    500: json(errorSchema, "Internal error (see logs by request id)"),
    503: json(errorSchema, "The database is unavailable (restarting, unreachable); retry after Retry-After seconds"),
  };
}

export function publicRoute(summary: string, tag: string) {
  return { summary, tags: [tag], security: [] as SecurityRequirement[], [ROLE_EXTENSION]: "none" };
}

/** Route metadata and the role check for an operator route: bearer security, the role in docs and enforced. */
export function securedRoute(service: ControlPlaneService, role: Role, summary: string, tag: string) {
  return {
    summary,
    description: `Requires role \`${role}\` or higher.`,
    tags: [tag],
    security: [{ [BEARER_SCHEME]: [] }] as SecurityRequirement[],
    [ROLE_EXTENSION]: role,
    middleware: requireRole(service, role),
  };
}
