/**
 * The operator API's core routes, one register function per concern, called by the app (../index.ts) in this
 * order: tokens (enrollment tokens carry the plane's CA pin, HW-PIN-2; API tokens are admin-only), devices (list,
 * pre-authorize, enrollment decisions, history, commands, events, attestation, containment single and bulk),
 * reference value sets, and the audit log.
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { HttpEnv } from "../env.js";
import { errorResponses as makeErrorResponses, json, jsonBody, securedRoute } from "../openapi.js";
import {
  apiTokenBody,
  apiTokenCreatedSchema,
  apiTokensSchema,
  apiTokenViewSchema,
  attestNowSchema,
  auditSchema,
  bulkContainmentBody,
  captureReferenceBody,
  commandsSchema,
  deviceListQuery,
  deviceParams,
  devicesSchema,
  deviceViewSchema,
  enrollmentTokenBody,
  enrollmentTokenCreatedSchema,
  enrollmentTokensSchema,
  enrollmentTokenViewSchema,
  eventsSchema,
  limitOnlyQuery,
  optionalReasonBody,
  pageQuery,
  preauthorizeBody,
  reasonBody,
  referenceIdParams,
  referenceListQuery,
  referenceValueSetSchema,
  referenceValuesSchema,
  registerReferenceBody,
  tokenIdParams,
  transitionsSchema,
} from "../schemas.js";

const errorResponses = makeErrorResponses();

/** The route helper every register function uses: the route's role, summary and tag (HW-HTTP-1). */
function securedBy(service: ControlPlaneService) {
  return (role: Role, summary: string, tag: string) => securedRoute(service, role, summary, tag);
}

/** Registers the enrollment-token and API-token routes on `app`; `caCertHash` is the CA pin a new enrollment token carries (null: none). */
export function registerTokenRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, caCertHash: () => string | null): void {
  const secured = securedBy(service);
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

/** Registers the device, attestation and containment routes on `app`. */
export function registerDeviceRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = securedBy(service);
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices",
      ...secured("viewer", "List devices", "devices"),
      request: { query: deviceListQuery },
      responses: { 200: json(devicesSchema, "Devices"), ...errorResponses },
    }),
    async (c) => {
      const query = c.req.valid("query");
      const filter = Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined)) as typeof query;
      return c.json({ devices: await service.listDevices(filter) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/devices/preauthorize",
      ...secured("operator", "Pre-authorize a device key: accepted on arrival", "devices"),
      request: jsonBody(preauthorizeBody),
      responses: { 201: json(deviceViewSchema, "Pre-authorized"), ...errorResponses },
    }),
    async (c) => c.json(await service.preauthorizeDevice(c.get("actor"), c.req.valid("json")), 201),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices/{deviceId}",
      ...secured("viewer", "Get a device", "devices"),
      request: { params: deviceParams },
      responses: { 200: json(deviceViewSchema, "Device"), ...errorResponses },
    }),
    async (c) => c.json(await service.getDevice(c.req.valid("param").deviceId), 200),
  );

  const enrollmentActions = [
    { action: "accept", role: "operator", summary: "Accept a pending device", call: service.acceptDevice.bind(service) },
    { action: "reject", role: "operator", summary: "Reject a device", call: service.rejectDevice.bind(service) },
    { action: "revoke", role: "admin", summary: "Revoke (decommission) a device", call: service.revokeDevice.bind(service) },
  ] as const;
  for (const { action, role, summary, call } of enrollmentActions) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/api/v1/devices/{deviceId}/${action}`,
        ...secured(role, summary, "devices"),
        request: { params: deviceParams, ...jsonBody(optionalReasonBody, false) },
        responses: { 200: json(deviceViewSchema, "Device after the transition"), ...errorResponses },
      }),
      async (c) => {
        const { deviceId } = c.req.valid("param");
        const reason = c.req.valid("json").reason ?? `${action} via API`;
        return c.json(await call(c.get("actor"), deviceId, reason), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices/{deviceId}/history",
      ...secured("viewer", "State transitions of a device, newest first", "devices"),
      request: { params: deviceParams, query: limitOnlyQuery },
      responses: { 200: json(transitionsSchema, "Transitions"), ...errorResponses },
    }),
    async (c) => c.json({ transitions: await service.history(c.req.valid("param").deviceId, c.req.valid("query").limit) }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices/{deviceId}/commands",
      ...secured("viewer", "Commands sent to a device, newest first", "devices"),
      request: { params: deviceParams, query: limitOnlyQuery },
      responses: { 200: json(commandsSchema, "Commands"), ...errorResponses },
    }),
    async (c) => c.json({ commands: await service.listCommands(c.req.valid("param").deviceId, c.req.valid("query").limit) }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices/{deviceId}/events",
      ...secured("viewer", "Signed events reported by a device, newest first", "devices"),
      request: { params: deviceParams, query: limitOnlyQuery },
      responses: { 200: json(eventsSchema, "Events"), ...errorResponses },
    }),
    async (c) => c.json({ events: await service.listEvents(c.req.valid("param").deviceId, c.req.valid("query").limit) }, 200),
  );

  // --- attestation and containment ------------------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/devices/{deviceId}/attest",
      ...secured("operator", "Challenge a device for fresh evidence now", "containment"),
      request: { params: deviceParams },
      responses: { 202: json(attestNowSchema, "Challenge sent"), ...errorResponses },
    }),
    async (c) => c.json(await service.attestNow(c.get("actor"), c.req.valid("param").deviceId), 202),
  );

  for (const action of ["quarantine", "release"] as const) {
    const call = action === "quarantine" ? service.quarantine.bind(service) : service.release.bind(service);
    app.openapi(
      createRoute({
        method: "post",
        path: `/api/v1/devices/{deviceId}/${action}`,
        ...secured("operator", `Send a signed ${action} command to one device`, "containment"),
        request: { params: deviceParams, ...jsonBody(reasonBody) },
        responses: { 202: json(commandsSchema, "Command queued"), ...errorResponses },
      }),
      async (c) => {
        const { deviceId } = c.req.valid("param");
        return c.json({ commands: await call(c.get("actor"), [deviceId], c.req.valid("json").reason) }, 202);
      },
    );
    app.openapi(
      createRoute({
        method: "post",
        path: `/api/v1/${action}`,
        ...secured("operator", `Send signed ${action} commands to many devices`, "containment"),
        request: jsonBody(bulkContainmentBody),
        responses: { 202: json(commandsSchema, "Commands queued"), ...errorResponses },
      }),
      async (c) => {
        const { deviceIds, reason } = c.req.valid("json");
        return c.json({ commands: await call(c.get("actor"), [...new Set(deviceIds)], reason) }, 202);
      },
    );
  }
}

/** Registers the reference value set routes on `app`. */
export function registerReferenceValueRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = securedBy(service);
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/reference-values",
      ...secured("viewer", "List reference value sets", "reference-values"),
      request: { query: referenceListQuery },
      responses: { 200: json(referenceValuesSchema, "Reference value sets"), ...errorResponses },
    }),
    async (c) => {
      const { model, firmwareVersion } = c.req.valid("query");
      const filter = { ...(model === undefined ? {} : { model }), ...(firmwareVersion === undefined ? {} : { firmwareVersion }) };
      return c.json({ referenceValues: await service.listReferenceValues(filter) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/reference-values",
      ...secured("operator", "Register reference values (approved at once)", "reference-values"),
      request: jsonBody(registerReferenceBody),
      responses: { 201: json(referenceValueSetSchema, "Registered"), ...errorResponses },
    }),
    async (c) => c.json(await service.registerReferenceValues(c.get("actor"), c.req.valid("json")), 201),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/reference-values/capture",
      ...secured("operator", "Propose reference values from a device's last evidence", "reference-values"),
      request: jsonBody(captureReferenceBody),
      responses: { 201: json(referenceValueSetSchema, "Proposed"), ...errorResponses },
    }),
    async (c) => c.json(await service.captureReferenceValues(c.get("actor"), c.req.valid("json").deviceId), 201),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/reference-values/{id}/approve",
      ...secured("admin", "Approve proposed reference values", "reference-values"),
      request: { params: referenceIdParams },
      responses: { 200: json(referenceValueSetSchema, "Approved"), ...errorResponses },
    }),
    async (c) => c.json(await service.approveReferenceValues(c.get("actor"), c.req.valid("param").id), 200),
  );
}

/** Registers GET /api/v1/audit on `app`. */
export function registerAuditRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = securedBy(service);
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/audit",
      ...secured("admin", "Audit log, newest first", "admin"),
      request: { query: pageQuery },
      responses: { 200: json(auditSchema, "Audit entries"), ...errorResponses },
    }),
    async (c) => {
      const { limit, offset } = c.req.valid("query");
      return c.json({ entries: await service.listAudit(limit, offset) }, 200);
    },
  );
}
