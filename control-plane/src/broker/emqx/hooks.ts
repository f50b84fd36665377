/**
 * The endpoints EMQX 5's HTTP authenticator and HTTP authorizer ask (HASHWARD_BROKER=emqx; the configuration that
 * makes EMQX send these requests is in docs/emqx.md):
 *   POST /emqx/authn  {"clientid","username","password","peerhost","cert_common_name"} -> HW-AUTH-1 connect-token
 *                     authentication (and HW-MTLS-1 when client certificates are required: CN = username);
 *                     the plane's own client (username `hashward-plane`, password = the hook secret) is superuser.
 *   POST /emqx/authz  {"clientid","username","action","topic","qos","retain"} -> HW-TOPIC-1: publish only
 *                     asic/v1/<own id>/up/<kind>, never retained; subscribe only asic/v1/<own id>/down/...
 * HW-BROKER-5, HW-BROKER-6: both answer 200 with a JSON body `{"result": "allow" | "deny"}` (authn adds `is_superuser`), the form EMQX 5
 * documents (docs.emqx.com: access-control/authn/http, access-control/authz/http). Never `ignore`, and never a
 * 5xx for a failed check: EMQX reads both as "ask the next source", so every failure here is an explicit deny.
 *
 * HW-BROKER-2: their own listener (loopback by default) and the shared secret in `Authorization: Bearer <secret>`
 * (EMQX sends configured headers; a header stays out of URLs and access logs). A request without it gets an empty
 * 401 and nothing is read. A body over 8 KiB gets 413 (EMQX reads any 4xx as `ignore`, which the documented
 * configuration ends in deny: the HTTP authenticator is the chain's last, authorization `no_match = deny`).
 * HW-BROKER-1: the same rules as the embedded broker and the RabbitMQ hooks (../auth.ts, ../acl.ts). authz answers
 * are string checks; a CONNECT reads the device's identity from the shared cache, so a reconnect storm costs one
 * signature check and one nonce insert per device.
 */
import type { IncomingMessage } from "node:http";
import { isDeviceId } from "../../../../shared/protocol/index.js";
import { clipForLog } from "../../log/index.js";
import { maySubscribe, ownUpKind } from "../acl.js";
import { createHookAuthenticator, createHookListener, secretEquals, type BrokerHookDeps, type BrokerHooks, type HookAnswer } from "../hook-listener.js";

/** The MQTT username of the plane's own client (its password is the hook secret). */
export const PLANE_USERNAME = "hashward-plane";
/** The path EMQX's HTTP authenticator posts to (docs/emqx.md `authentication.url`). */
export const AUTHN_PATH = "/emqx/authn";
/** The path EMQX's HTTP authorizer posts to (docs/emqx.md `authorization.sources[].url`). */
export const AUTHZ_PATH = "/emqx/authz";

/** The EMQX hooks' deps (`secret` is also the password of the plane's own MQTT client). */
export interface EmqxHookDeps extends BrokerHookDeps {
  /**
   * HW-MTLS-1 (HASHWARD_MQTT_CLIENT_CERT=required): EMQX's listener demands a client certificate from the plane's
   * CA, and the authn request's `cert_common_name` must be the username.
   */
  requireClientCertificate?: boolean;
}
export type EmqxHooks = BrokerHooks;

/** The decision EMQX reads from a 200 answer. */
type Result = { result: "allow"; is_superuser: boolean } | { result: "allow" } | { result: "deny" };

const json = { "content-type": "application/json" };
const answerOf = (body: Result, decision: string = body.result): HookAnswer => ({ status: 200, body: JSON.stringify(body), headers: json, decision });
const DENY = answerOf({ result: "deny" });

/** The string fields of a JSON object body, or null when the body is not a JSON object. Booleans and numbers become strings. */
function fieldsOf(body: Buffer): Map<string, string> | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return null;
  const fields = new Map<string, string>();
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") fields.set(key, String(value));
  }
  return fields;
}

/**
 * HW-TOPIC-1 for one EMQX authorization request: a device (username = client id = a device id) may publish only
 * to its own up topics and never retained, and subscribe only to its own down topics. The plane's own client is
 * allowed (it is superuser, so EMQX should not even ask). Everything else, unknown actions included, is denied.
 */
export function emqxAuthorize(fields: Map<string, string>): boolean {
  const username = fields.get("username") ?? "";
  if (username === PLANE_USERNAME) return true;
  if (!isDeviceId(username) || fields.get("clientid") !== username) return false;
  const topic = fields.get("topic") ?? "";
  switch (fields.get("action")) {
    case "publish":
      // Retained device messages would sit in the broker and be replayed to later subscribers: none may exist.
      return fields.get("retain") !== "true" && ownUpKind(username, topic) !== null;
    case "subscribe":
      return maySubscribe(username, topic);
    default:
      return false;
  }
}

/** The check a request asks for: one of the two paths with the right bearer secret (HW-BROKER-2), else null. */
function routeOf(request: IncomingMessage, secret: string): string | null {
  const path = (request.url ?? "").split("?")[0] ?? "";
  const check = path === AUTHN_PATH ? "authn" : path === AUTHZ_PATH ? "authz" : null;
  const header = request.headers.authorization ?? "";
  const given = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
  return check !== null && secretEquals(given, secret) ? check : null; // HW-BROKER-2
}

/** The EMQX hook listener (see the file comment); call listen() to serve. */
export function createEmqxHooks(deps: EmqxHookDeps): EmqxHooks {
  const logger = deps.logger.child({ component: "emqx-hooks" });
  const auth = createHookAuthenticator({ deviceSide: deps.deviceSide, logger, registry: deps.registry, now: deps.now ?? Date.now, ...(deps.identityCacheMs === undefined ? {} : { identityCacheMs: deps.identityCacheMs }) });

  async function authenticate(fields: Map<string, string>): Promise<HookAnswer> {
    const username = fields.get("username") ?? "";
    const password = fields.get("password") ?? "";
    if (username === PLANE_USERNAME) {
      // The plane's replicas: the hook secret proves it; superuser, so EMQX skips authorization for them.
      return secretEquals(password, deps.secret) ? answerOf({ result: "allow", is_superuser: true }, "allow-plane") : DENY;
    }
    const certificate = deps.requireClientCertificate ? { certificateCn: fields.get("cert_common_name") ?? "" } : {};
    const grant = await auth.authenticate({ username, clientId: fields.get("clientid"), password }, certificate);
    if (grant === null) return DENY;
    deps.onAuthenticated?.(grant.deviceId, grant.nonce);
    return answerOf({ result: "allow", is_superuser: false });
  }

  function authorize(fields: Map<string, string>): HookAnswer {
    if (emqxAuthorize(fields)) return answerOf({ result: "allow" });
    logger.warn(
      { deviceId: clipForLog(fields.get("username") ?? ""), action: clipForLog(fields.get("action") ?? ""), topic: clipForLog(fields.get("topic") ?? "", 256) },
      "mqtt topic refused (HW-TOPIC-1)",
    );
    return DENY;
  }

  const listener = createHookListener({
    logger,
    registry: deps.registry,
    route: (request) => routeOf(request, deps.secret),
    refused: { status: 401, body: "", headers: { "www-authenticate": "Bearer" }, decision: "refused" },
    tooLarge: { status: 413, body: JSON.stringify({ result: "deny", message: "request body larger than 8192 bytes" }), headers: json, decision: "too-large" },
    failed: DENY, // HW-BROKER-6: a failed check is a deny, never `ignore`
    answer: async (check, body) => {
      const fields = fieldsOf(body);
      if (fields === null) {
        logger.warn({ check }, "EMQX hook body is not a JSON object (check the body template in emqx.conf); denied");
        return answerOf({ result: "deny" }, "malformed");
      }
      return check === "authn" ? authenticate(fields) : authorize(fields);
    },
  });

  return {
    identity: (deviceId) => auth.identity(deviceId),
    forget: (deviceId) => auth.forget(deviceId),
    listen: (port, host) => listener.listen(port, host),
    close: () => listener.close(),
  };
}
