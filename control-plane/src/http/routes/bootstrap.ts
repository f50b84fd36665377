/**
 * How to reach and authenticate this plane (issue 8 item 5): the CA certificate, public because agents pin its
 * key hash before they trust it (HW-PIN-2), and the bootstrap answer an operator tool (demo:board, provisioning)
 * copies into an agent config, so nobody types a port or a fingerprint twice.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ControlPlaneService } from "../../service/types.js";
import { errorResponses, json, publicRoute, securedRoute } from "../openapi.js";
import type { HttpEnv } from "../index.js";

/** `GET /ca.pem`: the CA certificate agents pin (kubeadm's cluster-info, read unauthenticated, checked by hash). */
export const CA_PEM_PATH = "/ca.pem";

export const bootstrapSchema = z
  .object({
    controlPlaneUrl: z.string().openapi({ description: "HTTPS URL of the plane as agents reach it (HASHWARD_PUBLIC_URL or the listener)" }),
    mqttUrl: z.string().openapi({ description: "MQTT URL told to agents (HASHWARD_PUBLIC_MQTT_URL or the listener); the same as in the enrollment answer" }),
    tls: z.boolean().openapi({ description: "false only when the plane runs plaintext (HASHWARD_TLS=off)" }),
    caCertHash: z.string().nullable().openapi({ description: "sha256:<hex> of the CA's SubjectPublicKeyInfo; the agent config's `caCertHash`" }),
  })
  .openapi("Bootstrap");
export type Bootstrap = z.infer<typeof bootstrapSchema>;

export interface BootstrapRoutesDeps {
  /** Known once the listeners are bound (port 0), hence a getter. */
  bootstrap(): Bootstrap;
  /** PEM of the CA certificate; null when TLS is off. */
  caPem: string | null;
}

export function registerBootstrapRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, deps: BootstrapRoutesDeps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/bootstrap",
      ...securedRoute(service, "operator", "Addresses and CA pin for an agent config (what demo:board writes)", "enrollment"),
      responses: { 200: json(bootstrapSchema, "Bootstrap"), ...errorResponses() },
    }),
    (c) => c.json(deps.bootstrap(), 200),
  );
  if (deps.caPem !== null) {
    const pem = deps.caPem;
    app.openapi(
      createRoute({
        method: "get",
        path: CA_PEM_PATH,
        ...publicRoute("The plane's CA certificate (PEM); trust it only if its key hash matches your pin", "enrollment"),
        responses: { 200: { description: "PEM", content: { "application/x-pem-file": { schema: z.string() } } } },
      }),
      (c) => c.body(pem, 200, { "content-type": "application/x-pem-file" }),
    );
  }
}
