/** Rollout routes (control-plane/src/rollouts) and the single-device update command. */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { ROLLOUT_DEVICE_STATUSES, UPDATE_PROGRESS_PHASES } from "../../../../shared/protocol/update.js";
import { deviceIdSchema } from "../../../../shared/protocol/index.js";
import type { RolloutService } from "../../rollouts/index.js";
import type { ControlPlaneService, Role } from "../../service/index.js";
import { errorResponses, json, securedRoute } from "../openapi.js";
import { commandViewSchema, deviceParams } from "../schemas.js";
import type { HttpEnv } from "../env.js";

const errors = errorResponses();

const targetName = z.string().min(1).max(128);
const percent = z.number().int().min(1).max(100);
const selectorSchema = z
  .strictObject({
    model: z.string().min(1).max(128).optional(),
    deviceIds: z.array(z.string().pipe(deviceIdSchema)).min(1).max(100_000).optional(),
    appraisal: z.array(z.enum(["unknown", "trusted", "warning", "contraindicated", "stale"])).min(1).optional(),
    containment: z.array(z.enum(["none", "quarantine_requested", "quarantined", "release_requested"])).min(1).optional(),
  })
  .openapi("RolloutSelector");
const groupSchema = z.union([z.strictObject({ size: z.number().int().min(1) }), z.strictObject({ percent: z.number().gt(0).max(100) })]).openapi("RolloutGroup");
export const createRolloutBody = z
  .strictObject({
    targetName,
    selector: selectorSchema,
    groups: z.array(groupSchema).min(1).max(100),
    successThreshold: percent,
    errorThreshold: percent,
    start: z.boolean().optional(),
  })
  .openapi("CreateRolloutRequest");
const groupStatusSchema = z.object({
  index: z.number().int(),
  size: z.number().int(),
  waiting: z.number().int(),
  inProgress: z.number().int(),
  succeeded: z.number().int(),
  failed: z.number().int(),
  cancelled: z.number().int(),
});
const rolloutFields = {
  id: z.string(),
  targetName: z.string(),
  version: z.string(),
  selector: selectorSchema,
  groups: z.array(groupSchema),
  successThreshold: z.number().int(),
  errorThreshold: z.number().int(),
  state: z.enum(["created", "running", "paused", "completed", "stopped", "cancelled"]),
  currentGroup: z.number().int(),
  reason: z.string().nullable(),
  createdBy: z.object({ kind: z.string(), id: z.string(), role: z.string().optional() }),
  createdAt: z.string(),
  updatedAt: z.string(),
  total: z.number().int(),
  groupStatus: z.array(groupStatusSchema),
};
const rolloutSchema = z.object(rolloutFields).openapi("Rollout");
const rolloutDetailSchema = z
  .object({
    ...rolloutFields,
    devices: z.array(
      z.object({
        deviceId: z.string(),
        group: z.number().int(),
        status: z.enum(ROLLOUT_DEVICE_STATUSES),
        phase: z.enum(UPDATE_PROGRESS_PHASES).nullable(),
        commandSeq: z.number().int().nullable(),
        reason: z.string().nullable(),
        updatedAt: z.string(),
      }),
    ),
  })
  .openapi("RolloutDetail");
const idParams = z.object({ id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" } }) });
const optionalReason = z.strictObject({ reason: z.string().min(1).max(1024).optional() });
const listQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

export function registerRolloutRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, rollouts: RolloutService): void {
  const secured = (role: Role, summary: string, tag = "rollouts") => securedRoute(service, role, summary, tag);

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/rollouts",
      ...secured("operator", "Create a rollout of a published release (starts at once unless start is false)"),
      request: { body: { required: true, content: { "application/json": { schema: createRolloutBody } } } },
      responses: { 201: json(rolloutDetailSchema, "Created"), ...errors },
    }),
    async (c) => c.json(await rollouts.create(c.get("actor"), c.req.valid("json")), 201),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/rollouts",
      ...secured("viewer", "Rollouts, newest first"),
      request: { query: listQuery },
      responses: { 200: json(z.object({ rollouts: z.array(rolloutSchema) }), "Rollouts"), ...errors },
    }),
    async (c) => c.json({ rollouts: await rollouts.list(c.req.valid("query").limit) }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/rollouts/{id}",
      ...secured("viewer", "A rollout with per-device update status"),
      request: { params: idParams },
      responses: { 200: json(rolloutDetailSchema, "Rollout"), ...errors },
    }),
    async (c) => c.json(await rollouts.get(c.req.valid("param").id), 200),
  );

  for (const action of ["start", "pause", "resume", "cancel"] as const) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/api/v1/rollouts/{id}/${action}`,
        ...secured("operator", action === "cancel" ? "Emergency stop: no further update commands" : `${action[0]?.toUpperCase()}${action.slice(1)} a rollout`),
        request: { params: idParams, body: { required: false, content: { "application/json": { schema: optionalReason } } } },
        responses: { 200: json(rolloutDetailSchema, "Rollout after the transition"), ...errors },
      }),
      async (c) => {
        const { id } = c.req.valid("param");
        const reason = c.req.valid("json")?.reason;
        const actor = c.get("actor");
        const result =
          action === "start"
            ? await rollouts.start(actor, id)
            : action === "pause"
              ? await rollouts.pause(actor, id, reason)
              : action === "resume"
                ? await rollouts.resume(actor, id)
                : await rollouts.cancel(actor, id, reason);
        return c.json(result, 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/devices/{deviceId}/update",
      ...secured("operator", "Send a signed update command naming a published target to one device", "devices"),
      request: { params: deviceParams, body: { required: true, content: { "application/json": { schema: z.strictObject({ targetName }).openapi("UpdateDeviceRequest") } } } },
      responses: { 202: json(commandViewSchema, "Command queued"), ...errors },
    }),
    async (c) => c.json(await rollouts.updateDevice(c.get("actor"), c.req.valid("param").deviceId, c.req.valid("json").targetName), 202),
  );
}
