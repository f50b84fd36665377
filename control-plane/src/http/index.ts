/**
 * The control plane's HTTP API: device enrollment plus the operator API, described by an OpenAPI 3.1 document at
 * GET /api/v1/openapi.json. The server (control-plane/src/main.ts) only calls `createHttpApp(...).fetch`.
 *
 * Order per request (HW-HTTP-2): request id -> log/metrics -> body limit (413 before any parsing) -> route: auth
 * (401/403) -> validators (400 naming the field) -> handler -> service. A refused request never reaches the
 * service, so nothing is written on any error; the service guarantees the same for its own refusals.
 */
import { OpenAPIHono, createRoute, z } from "@hono/zod-openapi";
import type { Hook } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { matchedRoutes } from "hono/route";
import type { Logger } from "pino";
import { Histogram } from "prom-client";
import type { Registry } from "prom-client";
import { clipForLog } from "../log/index.js";
import { bodyTimeoutOf } from "./body-timeout.js";
import type { ControlPlaneService } from "../service/index.js";
import type { HttpEnv } from "./env.js";
import { errorBody, httpErrorFor, validationFailure } from "./errors.js";
import { isStreamedUpload, registerUpdateRoutes, type UpdateRoutesDeps } from "./routes/releases.js";
import { registerPolicyRoutes } from "./routes/policies.js";
import { assertP256PublicKey, registerBootstrapRoutes, type BootstrapRoutesDeps } from "./routes/bootstrap.js";
import { registerEventRoutes, type EventRoutesDeps } from "./routes/events.js";
import { registerWebhookRoutes } from "./routes/webhooks.js";
import { registerAuditRoutes, registerDeviceRoutes, registerReferenceValueRoutes, registerTokenRoutes } from "./routes/operator.js";
import { registerDashboard } from "../ui/index.js";
import {
  enrollBody,
  enrollmentResponse,
  errorSchema,
  healthSchema,
} from "./schemas.js";

import { BEARER_SCHEME, errorResponses as makeErrorResponses, json, jsonBody, publicRoute } from "./openapi.js";

export { ROLE_RANK, bearerToken, roleAllows } from "./auth.js";
export type { ErrorBody, ErrorCode } from "./errors.js";
export type { HttpEnv } from "./env.js";

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const OPENAPI_PATH = "/api/v1/openapi.json";
export { BEARER_SCHEME, ROLE_EXTENSION } from "./openapi.js";

export interface HttpAppDeps {
  service: ControlPlaneService;
  logger: Logger;
  registry: Registry;
  version: string;
  /** Request bodies above this are refused with 413 before parsing. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Signed updates: the TUF repository (control-plane/src/tuf) and rollouts (routes/releases.ts). */
  updates?: UpdateRoutesDeps;
  /** Guard policies (control-plane/src/policy; routes/policies.ts). */
  policies?: import("../policy/types.js").PolicyService;
  /** The CA certificate and the bootstrap answer (routes/bootstrap.ts). */
  bootstrap?: BootstrapRoutesDeps;
  /** The live event stream (routes/events.ts). */
  events?: EventRoutesDeps;
  /** Webhook endpoints and delivery logs (routes/webhooks.ts). */
  webhooks?: import("../webhooks/index.js").WebhookService;
  /** Whether the database answers now (db/transient.ts `probeDatabase`); absent: reported "up". */
  probeDatabase?: () => Promise<"up" | "down">;
  /** The operator dashboard at /ui/ (control-plane/src/ui); its roles are read from the routes above (HW-UI-4). */
  dashboard?: { db: import("../db/index.js").Database; secure: boolean; sessionTtlMs?: number; now?: () => number };
}


const HISTOGRAM_NAME = "hashward_http_request_duration_seconds";

const errorResponses = makeErrorResponses();

/** Validation failures become `{ error: { code: "validation_error", field } }` naming the first bad field. */
const validationHook: Hook<unknown, HttpEnv, string, Response | undefined> = (result, c) => {
  if (result.success) return undefined;
  const where = result.target === "param" ? "path" : result.target === "json" ? "body" : result.target;
  const failure = validationFailure(result.error, where);
  return c.json(failure.body, failure.status);
};

export function createHttpApp(deps: HttpAppDeps): OpenAPIHono<HttpEnv> {
  const { service, logger, registry, version } = deps;
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024) {
    throw new RangeError(`maxBodyBytes must be an integer >= 1024, got ${String(deps.maxBodyBytes)}`);
  }
  const duration = httpDurationHistogram(registry);
  const app = new OpenAPIHono<HttpEnv>({ defaultHook: validationHook });

  app.openAPIRegistry.registerComponent("securitySchemes", BEARER_SCHEME, {
    type: "http",
    scheme: "bearer",
    description: "API token made with POST /api/v1/api-tokens. Roles: viewer < operator < admin.",
  });

  // --- cross-cutting middleware -------------------------------------------------------------------------------
  app.use("*", requestId());
  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = routeLabel(c);
    duration.observe({ method: c.req.method, route, status: String(c.res.status) }, seconds);
    // Never log headers: they carry bearer tokens. The path has no query string.
    // HW-LOG-1: the path is the (possibly unauthenticated) client's choice: clipped.
    const entry = { reqId: c.get("requestId"), method: clipForLog(c.req.method, 16), path: clipForLog(c.req.path, 256), status: c.res.status, ms: Math.round(seconds * 1e4) / 10 };
    // Probes and scrapes arrive every few seconds and would drown the operator actions: debug only.
    if (route === "/healthz" || route === "/readyz" || route === "/metrics") logger.debug(entry, "request");
    else logger.info(entry, "request");
  });
  const limitBody = bodyLimit({
    maxSize: maxBodyBytes,
    // The unread rest of the body is still on the wire: close the connection so no client reuses it mid-upload.
    onError: (c) => c.json(errorBody("payload_too_large", `request body exceeds ${maxBodyBytes} bytes`), 413, { Connection: "close" }),
  });
  // Release images stream to disk under their own cap (routes/releases.ts); every other body is capped here.
  app.use("*", (c, next) => (isStreamedUpload(c.req.path) ? next() : limitBody(c, next)));

  app.onError((err, c) => {
    // HW-HTTP-3: a body that never arrived surfaces as whatever the read turned into; the answer is 408.
    const timedOut = bodyTimeoutOf(c.env);
    if (timedOut) return c.json(errorBody("request_timeout", timedOut.message), 408, { Connection: "close" });
    const known = httpErrorFor(err);
    if (known?.status === 503) {
      logger.warn({ reqId: c.get("requestId"), err, method: clipForLog(c.req.method, 16), path: clipForLog(c.req.path, 256) }, "request refused: database unavailable");
      return c.json(known.body, 503, { "Retry-After": "1" });
    }
    if (known) return c.json(known.body, known.status);
    logger.error({ reqId: c.get("requestId"), err, method: clipForLog(c.req.method, 16), path: clipForLog(c.req.path, 256) }, "request failed");
    return c.json(errorBody("internal", `internal error (request id ${c.get("requestId")})`), 500);
  });
  app.notFound((c) => c.json(errorBody("not_found", `no route for ${c.req.method} ${c.req.path}`), 404));

  // --- public ---------------------------------------------------------------------------------------------------
  // HW-FAULT-3: liveness stays 200 while the database is down (restarting the plane brings no database back, and
  // the plane recovers by itself); it says `database: "down"` and `status: "degraded"`. Readiness is 503 then, so
  // a load balancer sends operators to a replica that can answer.
  const probe = deps.probeDatabase ?? (async () => "up" as const);
  const health = async () => {
    const database = await probe();
    return { status: database === "up" ? ("ok" as const) : ("degraded" as const), version, database };
  };
  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      ...publicRoute("Liveness: the process answers; `database` says whether the database does", "system"),
      responses: { 200: json(healthSchema, "Alive") },
    }),
    async (c) => c.json(await health(), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/readyz",
      ...publicRoute("Readiness: 200 when the database answers, 503 when it does not", "system"),
      responses: { 200: json(healthSchema, "Ready"), 503: json(healthSchema, "Database unavailable") },
    }),
    async (c) => {
      const body = await health();
      return body.database === "up" ? c.json(body, 200) : c.json(body, 503);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      ...publicRoute("Prometheus metrics", "system"),
      responses: { 200: { description: "Prometheus text exposition", content: { "text/plain": { schema: z.string() } } } },
    }),
    async (c) => c.text(await registry.metrics(), 200, { "Content-Type": registry.contentType }),
  );

  app.openAPIRegistry.registerPath({
    method: "get",
    path: OPENAPI_PATH,
    ...publicRoute("This OpenAPI 3.1 document", "system"),
    responses: { 200: { description: "OpenAPI 3.1 document", content: { "application/json": { schema: z.record(z.string(), z.unknown()) } } } },
  });
  app.doc31(OPENAPI_PATH, {
    openapi: "3.1.0",
    info: {
      title: "Hashward control plane",
      version,
      description: "Device enrollment and the operator API. Authenticate with `Authorization: Bearer <token>`.",
    },
  });

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/enroll",
      ...publicRoute("Enroll a device (signed by the device key); agents poll by re-posting", "enrollment"),
      request: jsonBody(enrollBody),
      responses: {
        200: json(enrollmentResponse, "Accepted or pending"),
        403: json(enrollmentResponse, "Rejected or revoked (same body shape)"),
        400: errorResponses[400],
        409: errorResponses[409],
        413: errorResponses[413],
        429: json(errorSchema, "Too many devices already await an operator (HASHWARD_MAX_PENDING_DEVICES); retry later"),
      },
    }),
    async (c) => {
      const request = c.req.valid("json");
      // HW-MTLS-1: a client certificate only for a P-256 key, checked before anything is written (HW-HTTP-2).
      if (request.tlsPublicKey !== undefined) assertP256PublicKey(request.tlsPublicKey);
      const response = await service.enroll(request);
      if (response.enrollment === "accepted" && request.tlsPublicKey !== undefined && deps.bootstrap?.issueClientCertificate) {
        const certificate = await deps.bootstrap.issueClientCertificate(response.deviceId, request.tlsPublicKey);
        if (certificate !== null) response.clientCertificate = certificate;
      }
      // Same body either way: the agent learns its state and stops polling on rejected/revoked.
      const refused = response.enrollment === "rejected" || response.enrollment === "revoked";
      return refused ? c.json(response, 403) : c.json(response, 200);
    },
  );

  registerTokenRoutes(app, service, () => deps.bootstrap?.bootstrap().caCertHash ?? null);
  registerDeviceRoutes(app, service);
  registerReferenceValueRoutes(app, service);
  if (deps.updates) registerUpdateRoutes(app, service, deps.updates);
  if (deps.policies) registerPolicyRoutes(app, service, deps.policies);
  if (deps.bootstrap) registerBootstrapRoutes(app, service, deps.bootstrap);
  if (deps.events) registerEventRoutes(app, service, deps.events);
  if (deps.webhooks) registerWebhookRoutes(app, service, deps.webhooks);

  registerAuditRoutes(app, service);
  if (deps.dashboard) {
    registerDashboard(app, service, {
      ...deps.dashboard,
      logger,
      hub: deps.events?.hub,
      policies: deps.policies,
      rollouts: deps.updates?.rollouts,
      listTargets: deps.updates ? () => deps.updates!.tuf.listTargets() : undefined,
    });
  }

  return app;
}

/** The matched route pattern (bounded label set), or "unmatched" for unknown paths. */
function routeLabel(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (route && route.path !== "*" && route.path !== "/*") return route.path;
  }
  return "unmatched";
}

/** One histogram per registry, so several apps (tests, restarts in-process) can share a registry. */
function httpDurationHistogram(registry: Registry): Histogram<"method" | "route" | "status"> {
  const existing = registry.getSingleMetric(HISTOGRAM_NAME);
  if (existing) return existing as Histogram<"method" | "route" | "status">;
  return new Histogram({
    name: HISTOGRAM_NAME,
    help: "HTTP request duration by method, matched route and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
}
