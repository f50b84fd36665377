/**
 * Token routes: enrollment tokens (operators make and revoke them; the answer carries the pin of the plane's CA,
 * HW-PIN-2) and API tokens (admins only; the secret is in the creation answer only).
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { HttpEnv } from "../env.js";
import { errorResponses as makeErrorResponses, json, jsonBody, securedRoute } from "../openapi.js";
import {
  apiTokenBody,
  apiTokenCreatedSchema,
  apiTokenViewSchema,
  apiTokensSchema,
  enrollmentTokenBody,
  enrollmentTokenCreatedSchema,
  enrollmentTokenViewSchema,
  enrollmentTokensSchema,
  optionalReasonBody,
  tokenIdParams,
} from "../schemas.js";

const errorResponses = makeErrorResponses();

/** Registers the enrollment-token and API-token routes on `app`; `caCertHash` is the CA pin a new enrollment token carries (null: none). */
export function registerTokenRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, caCertHash: () => string | null): void {
  const secured = (role: Role, summary: string, tag: string) => securedRoute(service, role, summary, tag);
  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/enrollment-tokens",
      ...secured("operator", "Create an enrollment token (shown once)", "enrollment"),
      request: jsonBody(enrollmentTokenBody, false),
      responses: { 201: json(enrollmentTokenCreatedSchema, "Created"), ...errorResponses },
    }),
    async (c) => {
      const body = enrollmentTokenBody.parse(c.req.valid("json"));
      const input = body.label === undefined ? { ttlMs: body.ttlMs, maxUses: body.maxUses } : body;
      const created = await service.createEnrollmentToken(c.get("actor"), input);
      // HW-PIN-2: the token travels with the pin of the plane's CA, so the agent authenticates the plane first.
      return c.json({ ...created, caCertHash: caCertHash() }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/api-tokens",
      ...secured("admin", "Create an API token (shown once)", "admin"),
      request: jsonBody(apiTokenBody),
      responses: { 201: json(apiTokenCreatedSchema, "Created"), ...errorResponses },
    }),
    async (c) => c.json(await service.createApiToken(c.get("actor"), c.req.valid("json")), 201),
  );

  // HW-TOKEN-1: list (no secrets) and revoke, both token kinds, admin only; revokes are audited and bite on the
  // token's next request (HW-HTTP-1 resolves tokens per request).
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/api-tokens",
      ...secured("admin", "List API tokens (never the secret): role, created, expires, last used, revoked", "admin"),
      responses: { 200: json(apiTokensSchema, "API tokens, newest first"), ...errorResponses },
    }),
    async (c) => c.json({ tokens: await service.listApiTokens() }, 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/api-tokens/{id}/revoke",
      ...secured("admin", "Revoke an API token: refused from its next request on", "admin"),
      request: { params: tokenIdParams, ...jsonBody(optionalReasonBody, false) },
      responses: { 200: json(apiTokenViewSchema, "The revoked token"), ...errorResponses },
    }),
    async (c) => c.json(await service.revokeApiToken(c.get("actor"), c.req.valid("param").id, c.req.valid("json").reason ?? "revoked via API"), 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/enrollment-tokens",
      ...secured("admin", "List enrollment tokens (never the secret): uses, expiry, last used, revoked", "enrollment"),
      responses: { 200: json(enrollmentTokensSchema, "Enrollment tokens, newest first"), ...errorResponses },
    }),
    async (c) => c.json({ tokens: await service.listEnrollmentTokens() }, 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/enrollment-tokens/{id}/revoke",
      ...secured("admin", "Revoke an enrollment token: no device enrolls with it afterwards", "enrollment"),
      request: { params: tokenIdParams, ...jsonBody(optionalReasonBody, false) },
      responses: { 200: json(enrollmentTokenViewSchema, "The revoked token"), ...errorResponses },
    }),
    async (c) =>
      c.json(await service.revokeEnrollmentToken(c.get("actor"), c.req.valid("param").id, c.req.valid("json").reason ?? "revoked via API"), 200),
  );
}
