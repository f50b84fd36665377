/**
 * The endpoints RabbitMQ's rabbitmq_auth_backend_http asks (POST, form-encoded; answer `allow` or `deny`):
 *   <secret>/user      username, password, vhost, client_id      -> HW-AUTH-1 connect-token authentication
 *   <secret>/vhost     username, vhost, ip, client_id           -> devices use the configured vhost only
 *   <secret>/resource  username, vhost, resource, name, permission -> only the device's own MQTT subscription
 *                       queues (mqtt-subscription-<id>qos0|qos1) and the MQTT exchange
 *   <secret>/topic     username, vhost, resource, name, permission, routing_key, variable_map.* -> HW-TOPIC-1:
 *                       write only asic.v1.<own id>.up.<kind>, read only asic.v1.<own id>.down.* or a concrete one
 * (request parameters as the plugin documents them; MQTT topics are routing keys with `/` -> `.`, `+` -> `*`).
 *
 * HW-BROKER-2: the listener is loopback by default and every path starts with a shared secret; a request without
 * it gets 404 and nothing else. HW-BROKER-1: the same rules as the embedded broker's aedes hooks. vhost, resource
 * and topic answers are pure string checks, and the identity a CONNECT needs comes from a cache (invalidated on
 * revoke), so a reconnect storm costs one signature check and one nonce insert per device (single use across
 * replicas, HW-AUTH-1), no lookups.
 *
 * The listener and the CONNECT check are ../hook-listener.ts (shared with the EMQX hooks), the rules ../auth.ts
 * and ../acl.ts (shared with the embedded broker).
 */
import type { IncomingMessage } from "node:http";
import { isDeviceId } from "../../../../shared/protocol/index.js";
import { clipForLog } from "../../log/index.js";
import { maySubscribe, ownUpKind } from "../acl.js";
import { createHookAuthenticator, createHookListener, secretEquals, type BrokerHookDeps, type BrokerHooks } from "../hook-listener.js";

type Params = URLSearchParams;
const CHECKS = new Set(["user", "vhost", "resource", "topic"]);

/** MQTT topic of a routing key (or binding key) as RabbitMQ's MQTT plugin maps them: `.` -> `/`, `*` -> `+`. */
export function topicOfRoutingKey(key: string): string {
  return key
    .split(".")
    .map((word) => (word === "*" ? "+" : word))
    .join("/");
}

/** The client id a request names (client_id, or variable_map.client_id on topic checks); undefined when absent. */
function clientIdOf(params: Params): string | undefined {
  return params.get("client_id") ?? params.get("variable_map.client_id") ?? undefined;
}

/**
 * HW-BROKER-1 / HW-TOPIC-1: may device `username` use `resource` (queue|exchange) `name` with `permission`?
 * Only its own MQTT subscription queues and the MQTT exchange; topic checks then restrict the routing keys.
 */
export function resourceAllowed(params: Params, exchange: string, vhost: string): boolean {
  const username = params.get("username") ?? "";
  if (!isDeviceId(username) || params.get("vhost") !== vhost) return false;
  const clientId = clientIdOf(params);
  if (clientId !== undefined && clientId !== username) return false;
  const name = params.get("name") ?? "";
  const permission = params.get("permission");
  switch (params.get("resource")) {
    case "queue":
      return name === `mqtt-subscription-${username}qos0` || name === `mqtt-subscription-${username}qos1`;
    case "exchange":
      return name === exchange && (permission === "read" || permission === "write");
    default:
      return false;
  }
}

/** HW-TOPIC-1: write only its own up/ routing keys, read (bind) only its own down/ ones, on the MQTT exchange. */
export function topicAllowed(params: Params, exchange: string, vhost: string): boolean {
  const username = params.get("username") ?? "";
  if (!isDeviceId(username) || params.get("vhost") !== vhost || params.get("resource") !== "topic" || params.get("name") !== exchange) return false;
  const clientId = clientIdOf(params);
  if (clientId !== undefined && clientId !== username) return false;
  const topic = topicOfRoutingKey(params.get("routing_key") ?? "");
  switch (params.get("permission")) {
    case "write":
      return ownUpKind(username, topic) !== null;
    case "read":
      return maySubscribe(username, topic);
    default:
      return false;
  }
}

/** The RabbitMQ hooks' deps: the shared ones and the MQTT plugin's exchange and vhost. */
export interface HookDeps extends BrokerHookDeps {
  exchange: string;
  vhost: string;
}

export type HookServer = BrokerHooks;

/** The check a hook request asks for: `/<secret>/<check>` with the right secret (HW-BROKER-2), else null. */
function routeOf(request: IncomingMessage, secret: string): string | null {
  const path = (request.url ?? "").split("?")[0] ?? "";
  const [, given = "", check = "", ...rest] = path.split("/");
  return secretEquals(given, secret) && rest.length === 0 && CHECKS.has(check) ? check : null;
}

/** Builds the hook listener (not yet listening); see the file comment for the endpoints and their rules. */
export function createHookServer(deps: HookDeps): HookServer {
  const logger = deps.logger.child({ component: "broker-hooks" });
  const now = deps.now ?? Date.now;
  const auth = createHookAuthenticator({ deviceSide: deps.deviceSide, logger, registry: deps.registry, now, ...(deps.identityCacheMs === undefined ? {} : { identityCacheMs: deps.identityCacheMs }) });

  async function answer(check: string, params: Params): Promise<boolean> {
    switch (check) {
      case "user": {
        const vhost = params.get("vhost");
        // HW-AUTH-1 (../auth.ts). Devices speak MQTT only, whose plugin always names the client id; it must be the
        // username ([MQTT-3.1.3-9]).
        const grant = await auth.authenticate(
          { username: params.get("username") ?? "", clientId: params.get("client_id") ?? undefined, password: params.get("password") ?? "" },
          { inScope: () => vhost === null || vhost === deps.vhost },
        );
        if (grant === null) return false;
        deps.onAuthenticated?.(grant.deviceId, grant.nonce);
        return true;
      }
      case "vhost": {
        const username = params.get("username") ?? "";
        const clientId = clientIdOf(params);
        return isDeviceId(username) && params.get("vhost") === deps.vhost && (clientId === undefined || clientId === username);
      }
      case "resource":
        return resourceAllowed(params, deps.exchange, deps.vhost);
      case "topic": {
        const allowed = topicAllowed(params, deps.exchange, deps.vhost);
        if (!allowed) {
          logger.warn(
            { deviceId: clipForLog(params.get("username") ?? ""), permission: params.get("permission"), routingKey: clipForLog(params.get("routing_key") ?? "", 256) },
            "mqtt topic refused (HW-TOPIC-1)",
          );
        }
        return allowed;
      }
      default:
        return false;
    }
  }

  const text = { "content-type": "text/plain" };
  const listener = createHookListener({
    logger,
    registry: deps.registry,
    // HW-BROKER-2: no secret, no answer (and nothing that tells a stranger which paths exist).
    route: (request) => routeOf(request, deps.secret),
    refused: { status: 404, body: "", decision: "refused" },
    tooLarge: { status: 413, body: "", decision: "too-large" },
    failed: { status: 200, body: "deny", headers: text, decision: "deny" },
    answer: async (check, body) => {
      const allow = await answer(check, new URLSearchParams(body.toString("utf8")));
      return { status: 200, body: allow ? "allow" : "deny", headers: text, decision: allow ? "allow" : "deny" };
    },
  });

  return {
    identity: (deviceId) => auth.identity(deviceId),
    forget: (deviceId) => auth.forget(deviceId),
    listen: (port, host) => listener.listen(port, host),
    close: () => listener.close(),
  };
}
