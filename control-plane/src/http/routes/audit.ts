/** The audit log route (admins only, newest first). */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { HttpEnv } from "../env.js";
import { errorResponses as makeErrorResponses, json, securedRoute } from "../openapi.js";
import { auditSchema, pageQuery } from "../schemas.js";

const errorResponses = makeErrorResponses();

/** Registers GET /api/v1/audit on `app`. */
export function registerAuditRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = (role: Role, summary: string, tag: string) => securedRoute(service, role, summary, tag);
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
