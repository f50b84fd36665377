/**
 * Webhook routes (control-plane/src/webhooks): admins register and delete endpoints (the secret is in the
 * registration answer only); operators list them and read each one's delivery log.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { PLANE_EVENT_KINDS } from "../../events/index.js";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { WebhookService } from "../../webhooks/index.js";
import { errorResponses, json, jsonBody, securedRoute } from "../openapi.js";
import type { HttpEnv } from "../env.js";

const errors = errorResponses();

export const registerWebhookBody = z
  .strictObject({
    url: z.string().min(1).max(2048),
    kinds: z.array(z.enum(PLANE_EVENT_KINDS)).min(1).max(PLANE_EVENT_KINDS.length),
    description: z.string().max(256).optional(),
  })
  .openapi("RegisterWebhookRequest");

const endpointSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    kinds: z.array(z.enum(PLANE_EVENT_KINDS)),
    description: z.string(),
    enabled: z.boolean(),
    consecutiveFailures: z.number().int(),
    disabledReason: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi("WebhookEndpoint");

const deliverySchema = z
  .object({
    id: z.string(),
    eventId: z.number().int(),
    kind: z.string(),
    status: z.enum(["pending", "delivered", "failed"]),
    attempts: z.number().int(),
    nextAttemptAt: z.string(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .openapi("WebhookDelivery");

const idParams = z.object({ id: z.string().regex(/^whe_[0-9a-f]{18}$/).openapi({ param: { name: "id", in: "path" } }) });
const limitQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

export function registerWebhookRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, webhooks: WebhookService): void {
  const secured = (role: Role, summary: string) => securedRoute(service, role, summary, "webhooks");

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/webhooks",
      ...secured("admin", "Register a webhook endpoint; the signing secret is shown in this answer only"),
      request: jsonBody(registerWebhookBody),
      responses: { 201: json(z.object({ endpoint: endpointSchema, secret: z.string() }), "Registered"), ...errors },
    }),
    async (c) => c.json(await webhooks.register(c.get("actor"), c.req.valid("json")), 201),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/webhooks",
      ...secured("operator", "List webhook endpoints (no secrets)"),
      responses: { 200: json(z.object({ endpoints: z.array(endpointSchema) }), "Endpoints"), ...errors },
    }),
    async (c) => c.json({ endpoints: await webhooks.list() }, 200),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/api/v1/webhooks/{id}",
      ...secured("admin", "Delete a webhook endpoint and its pending deliveries"),
      request: { params: idParams },
      responses: { 200: json(z.object({ deleted: z.string() }), "Deleted"), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      await webhooks.remove(c.get("actor"), id);
      return c.json({ deleted: id }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/webhooks/{id}/deliveries",
      ...secured("operator", "The endpoint's delivery log, newest first"),
      request: { params: idParams, query: limitQuery },
      responses: { 200: json(z.object({ deliveries: z.array(deliverySchema) }), "Deliveries"), ...errors },
    }),
    async (c) => c.json({ deliveries: await webhooks.deliveries(c.req.valid("param").id, c.req.valid("query").limit) }, 200),
  );
}
