/**
 * How to reach and authenticate this plane: the CA certificate, public because agents pin its
 * key hash before they trust it (HW-PIN-2), and the bootstrap answer an operator tool (demo:board, provisioning)
 * copies into an agent config, so nobody types a port or a fingerprint twice.
 */
import { createPublicKey } from "node:crypto";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { ValidationError } from "../../../../shared/errors/index.js";
import type { ControlPlaneService } from "../../service/index.js";
import { errorResponses, json, publicRoute, securedRoute } from "../openapi.js";
import type { HttpEnv } from "../env.js";

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
  /** HW-MTLS-1: a client certificate for an accepted device's P-256 key (null: the plane holds no CA key). */
  issueClientCertificate?: (deviceId: string, publicKeyPem: string) => Promise<string | null>;
}

/** Throws ValidationError (field `tlsPublicKey`) unless `pem` is an SPKI PEM of an ECDSA P-256 public key. */
export function assertP256PublicKey(pem: string): void {
  let ok = false;
  try {
    const key = createPublicKey(pem);
    ok = key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
  } catch {
    ok = false;
  }
  if (!ok) throw new ValidationError("tlsPublicKey must be an SPKI PEM ECDSA P-256 public key", "tlsPublicKey");
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
