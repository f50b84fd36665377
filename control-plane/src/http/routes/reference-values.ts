/** Reference value routes: list, register, capture from a device, approve (HW-APPRAISE-1's reference measurements). */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { HttpEnv } from "../env.js";
import { errorResponses as makeErrorResponses, json, jsonBody, securedRoute } from "../openapi.js";
import {
  captureReferenceBody,
  referenceIdParams,
  referenceListQuery,
  referenceValueSetSchema,
  referenceValuesSchema,
  registerReferenceBody,
} from "../schemas.js";

const errorResponses = makeErrorResponses();

/** Registers the reference value set routes on `app`. */
export function registerReferenceValueRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = (role: Role, summary: string, tag: string) => securedRoute(service, role, summary, tag);
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
