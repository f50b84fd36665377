/**
 * Device routes: list, pre-authorize, read one device, the operator's enrollment decisions, history, commands and
 * events, and attestation and containment (single device and bulk).
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService, Role } from "../../service/index.js";
import type { HttpEnv } from "../env.js";
import { errorResponses as makeErrorResponses, json, jsonBody, securedRoute } from "../openapi.js";
import {
  attestNowSchema,
  bulkContainmentBody,
  commandsSchema,
  deviceListQuery,
  deviceParams,
  deviceViewSchema,
  devicesSchema,
  eventsSchema,
  limitOnlyQuery,
  optionalReasonBody,
  preauthorizeBody,
  reasonBody,
  transitionsSchema,
} from "../schemas.js";

const errorResponses = makeErrorResponses();

/** Registers the device, attestation and containment routes on `app`. */
export function registerDeviceRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService): void {
  const secured = (role: Role, summary: string, tag: string) => securedRoute(service, role, summary, tag);
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
