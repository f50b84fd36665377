/**
 * Guard policy routes (control-plane/src/policy): pool policies, network allowlists and malware indicator sets per
 * fleet, model or device group [operator writes, viewer reads], and a device's effective policy with the
 * delivered and acknowledged versions. Bodies are validated before the service runs (HW-POLICY-1, 400 naming the
 * field); every write is audited and sends the affected devices a signed set-policy command (HW-POLICY-2).
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { farmAlertThresholdFields } from "../../alerts/thresholds.js";
import { INDICATOR_KINDS, POLICY_KINDS, type PolicyKind, policyInputSchemas } from "../../policy/schemas.js";
import type { PolicyService } from "../../policy/types.js";
import type { ControlPlaneService, Role } from "../../service/index.js";
import { errorResponses, json, securedRoute } from "../openapi.js";
import type { HttpEnv } from "../env.js";
import { deviceParams } from "../schemas.js";

const errors = errorResponses({ 409: "Conflicts with another policy (overlapping device groups, a device's last pool policy)" });

const isoTime = z.string().openapi({ format: "date-time" });
const scopeView = z
  .object({ model: z.string().optional(), deviceIds: z.array(z.string()).optional() })
  .openapi("PolicyScope", { description: "{} = fleet default; { model }; { deviceIds } = a device group. Most specific wins: group > model > default." });
const actorView = z.object({ kind: z.string(), id: z.string(), role: z.string().optional() });
const indicatorView = z
  .object({
    id: z.string(),
    kind: z.enum(INDICATOR_KINDS),
    path: z.string().optional(),
    pattern: z.string().optional(),
    severity: z.enum(["warning", "critical"]),
    description: z.string(),
    paths: z.array(z.string()).optional().openapi({ description: "unexpected-executable / named-file: more files or directories to scan" }),
    allowedSha256: z.array(z.string()).optional().openapi({ description: "unexpected-executable: digests always allowed" }),
    allowReferenceValues: z.boolean().optional().openapi({ description: "unexpected-executable: the device's approved reference digests are allowed too (HW-GUARD-8)" }),
    maxDepth: z.number().int().optional().openapi({ description: "unexpected-executable / named-file: levels of subdirectories scanned (0 = direct entries; HW-GUARD-9)" }),
    maxBytes: z.number().int().optional().openapi({ description: "file-size-above: the largest size in bytes a clean file has" }),
    presentSeverity: z.enum(["warning", "critical"]).optional().openapi({ description: "reappearing-file: the tier of a first sighting (default severity)" }),
  })
  .openapi("Indicator");
const bodies = {
  pools: { allowedUrls: z.array(z.string()), workerPatterns: z.array(z.string()) },
  network: { allowedHosts: z.array(z.string()) },
  indicators: { indicators: z.array(indicatorView) },
  // HW-ALERT-3: the thresholds as stored (every field, defaults filled in).
  "farm-alerts": Object.fromEntries(Object.keys(farmAlertThresholdFields).map((field) => [field, z.number()])) as { [F in keyof typeof farmAlertThresholdFields]: z.ZodNumber },
} as const;
const base = { id: z.string(), scope: scopeView, version: z.number().int(), createdAt: isoTime, updatedAt: isoTime, updatedBy: actorView };
const views = {
  pools: z.object({ ...base, kind: z.literal("pools"), ...bodies.pools }).openapi("PoolPolicy"),
  network: z.object({ ...base, kind: z.literal("network"), ...bodies.network }).openapi("NetworkPolicy"),
  indicators: z.object({ ...base, kind: z.literal("indicators"), ...bodies.indicators }).openapi("IndicatorPolicy"),
  "farm-alerts": z.object({ ...base, kind: z.literal("farm-alerts"), ...bodies["farm-alerts"] }).openapi("FarmAlertPolicy"),
} as const;
const deliverySchema = z
  .object({ version: z.number().int().nullable(), devices: z.number().int() })
  .openapi("PolicyDelivery", { description: "Accepted devices sent a new signed set-policy command, and the version they got." });
const sourceSchema = z.object({ level: z.enum(["devices", "model", "default", "built-in"]), policyId: z.string().nullable(), version: z.number().int().nullable() });
const devicePolicySchema = z
  .object({
    deviceId: z.string(),
    model: z.string(),
    policy: z.object({ pools: z.object(bodies.pools).nullable(), network: z.object(bodies.network), indicators: z.array(indicatorView) }),
    farmAlerts: z.object(bodies["farm-alerts"]).openapi({ description: "Farm-alert thresholds applied by the plane to this device's telemetry (HW-ALERT-3); never sent to the device" }),
    deliverable: z.boolean(),
    sources: z.object({ pools: sourceSchema, network: sourceSchema, indicators: sourceSchema, "farm-alerts": sourceSchema }),
    hash: z.string(),
    delivered: z.object({ version: z.number().int(), seq: z.number().int(), at: isoTime, current: z.boolean() }).nullable(),
    acked: z.object({ version: z.number().int(), at: isoTime.nullable() }).nullable(),
    lastFailure: z.string().nullable(),
    upToDate: z.boolean(),
  })
  .openapi("DevicePolicy");
const policyIdParams = z.object({
  kind: z.enum(POLICY_KINDS).openapi({ param: { name: "kind", in: "path" } }),
  id: z
    .string()
    .min(1)
    .max(128)
    .openapi({ param: { name: "id", in: "path" } }),
});

const SUMMARY: Record<PolicyKind, string> = {
  pools: "pool policies (allowed pool URLs and worker-name patterns)",
  network: "network allowlists (hosts a device may connect to besides its pools and the control plane)",
  indicators: "malware indicator sets (a built-in set applies where none is stored)",
  "farm-alerts": "farm-alert thresholds for telemetry (zero hashrate, stopped fans, hashrate drop, regular pool switching; built-in defaults where none is stored; applied by the plane, not sent to devices)",
};

export function registerPolicyRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, policies: PolicyService): void {
  const secured = (role: Role, summary: string, tag = "policies") => securedRoute(service, role, summary, tag);

  for (const kind of POLICY_KINDS) {
    const view = views[kind];
    app.openapi(
      createRoute({
        method: "get",
        path: `/api/v1/policies/${kind}`,
        ...secured("viewer", `List ${SUMMARY[kind]}`),
        responses: {
          200: json(z.object({ kind: z.literal(kind), policies: z.array(view), builtInDefault: z.object(bodies[kind]).nullable() }), "Policies, fleet default first"),
          ...errors,
        },
      }),
      async (c) => c.json((await policies.listPolicies(kind)) as never, 200),
    );

    app.openapi(
      createRoute({
        method: "put",
        path: `/api/v1/policies/${kind}`,
        ...secured("operator", `Create or replace the ${kind} policy of a scope; affected devices get it signed at once`),
        request: { body: { required: true, content: { "application/json": { schema: policyInputSchemas[kind] } } } },
        responses: { 200: json(z.object({ policy: view, delivery: deliverySchema }), "Stored (new version) and delivered"), ...errors },
      }),
      async (c) => c.json((await policies.putPolicy(c.get("actor"), kind, c.req.valid("json") as never)) as never, 200),
    );
  }

  app.openapi(
    createRoute({
      method: "delete",
      path: "/api/v1/policies/{kind}/{id}",
      ...secured("operator", "Delete a policy; its devices fall back to the next scope (refused if that leaves a device without a pool policy)"),
      request: { params: policyIdParams },
      responses: { 200: json(z.object({ policy: z.union([views.pools, views.network, views.indicators, views["farm-alerts"]]), delivery: deliverySchema }), "Deleted and re-delivered"), ...errors },
    }),
    async (c) => {
      const { kind, id } = c.req.valid("param");
      return c.json((await policies.deletePolicy(c.get("actor"), kind, id)) as never, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/devices/{deviceId}/policy",
      ...secured("viewer", "The device's effective guard policy, where each part comes from, and the delivered and acknowledged versions", "devices"),
      request: { params: deviceParams },
      responses: { 200: json(devicePolicySchema, "Effective policy"), ...errors },
    }),
    async (c) => c.json((await policies.devicePolicy(c.req.valid("param").deviceId)) as never, 200),
  );
}
