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
 * Written on node:http rather than the API's Hono app on purpose: four form-encoded routes on a listener of their
 * own, with no middleware of the operator API (tokens, CORS, OpenAPI) to get in the way.
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { isDeviceId } from "../../../../shared/protocol/index.js";
import { clipForLog } from "../../log/index.js";
import type { ConnectIdentity, DeviceSideService } from "../../service/index.js";
import { maySubscribe, ownUpKind } from "../acl.js";
import { ConnectRefusal, IdentityCache, verifyConnect } from "../auth.js";
import { connectRefusedCounter } from "../metrics.js";

/** Hook form fields are short; anything larger is refused before it is read in full. */
const MAX_BODY_BYTES = 8 * 1024;

type Params = URLSearchParams;

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

export interface HookDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  registry: Registry;
  secret: string;
  exchange: string;
  vhost: string;
  now?: () => number;
  /** How long a device's identity is answered from cache; default 10000, capped at 30000 (revoke on this replica clears it at once). */
  identityCacheMs?: number;
  /** Called after a CONNECT was allowed, with the token's nonce (the connection's session, HW-LIVE-1). */
  onAuthenticated?(deviceId: string, connectNonce: string): void;
}

export interface HookServer {
  /** Listens; resolves with the bound port (port 0 picks one). */
  listen(port: number, host: string): Promise<number>;
  /** The device's identity, from cache when fresh enough (also used by ingest). */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  /** Forgets a device's cached identity (revocation). */
  forget(deviceId: string): void;
  close(): Promise<void>;
}

/** Builds the hook listener (not yet listening); see the file comment for the endpoints and their rules. */
export function createHookServer(deps: HookDeps): HookServer {
  const { deviceSide, registry } = deps;
  const logger = deps.logger.child({ component: "broker-hooks" });
  const now = deps.now ?? Date.now;
  const secret = Buffer.from(deps.secret);
  const identities = new IdentityCache((deviceIds) => deviceSide.identitiesForConnect(deviceIds), now, deps.identityCacheMs ?? 10_000, 200_000);

  const decisions = new Counter({
    name: "hashward_broker_hook_requests_total",
    help: "Requests from RabbitMQ's HTTP auth backend, by check and decision (refused: no or wrong secret)",
    labelNames: ["check", "decision"] as const,
    registers: [registry],
  });
  const connectRefused = connectRefusedCounter(registry);

  /** HW-AUTH-1 through the broker: the same checks as the embedded broker's authenticate hook (../auth.ts). */
  async function userAllowed(params: Params): Promise<{ allow: true } | { allow: false; reason: string }> {
    const username = params.get("username") ?? "";
    const vhost = params.get("vhost");
    try {
      const grant = await verifyConnect(
        // Devices speak MQTT only, whose plugin always names the client id; it must be the username ([MQTT-3.1.3-9]).
        { username, clientId: params.get("client_id") ?? undefined, password: params.get("password") ?? "" },
        {
          // A cached answer other than `accepted` is asked again (a device accepted a moment ago connects at once).
          identity: (deviceId) => identities.get(deviceId, "cached-if-accepted"),
          // Single use across replicas: the nonce is recorded in the database (HW-AUTH-1).
          rememberNonce: (deviceId, nonce, exp) => deviceSide.rememberConnectNonce(deviceId, nonce, exp),
          now,
          onStoreFailure: (deviceId, step, cause) => logger.error({ deviceId, err: cause }, `${step} failed during CONNECT`),
          inScope: () => vhost === null || vhost === deps.vhost,
        },
      );
      deps.onAuthenticated?.(grant.deviceId, grant.nonce);
      return { allow: true };
    } catch (error) {
      if (error instanceof ConnectRefusal) return { allow: false, reason: error.reason };
      throw error;
    }
  }

  async function answer(check: string, params: Params): Promise<boolean> {
    switch (check) {
      case "user": {
        const result = await userAllowed(params);
        if (!result.allow) {
          connectRefused.inc({ reason: result.reason });
          logger.warn({ deviceId: clipForLog(params.get("username") ?? ""), reason: result.reason }, "mqtt connect refused");
        }
        return result.allow;
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

  function secretMatches(given: string): boolean {
    const bytes = Buffer.from(given);
    return bytes.length === secret.length && timingSafeEqual(bytes, secret);
  }

  function handle(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? "").split("?")[0] ?? "";
    const [, given = "", check = "", ...rest] = path.split("/");
    // HW-BROKER-2: no secret, no answer (and nothing that tells a stranger which paths exist).
    if (!secretMatches(given) || rest.length > 0 || request.method !== "POST") {
      decisions.inc({ check: "unknown", decision: "refused" });
      response.writeHead(404).end();
      request.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        response.writeHead(413).end();
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => {
      if (size > MAX_BODY_BYTES) return;
      const params = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      answer(check, params).then(
        (allow) => {
          decisions.inc({ check, decision: allow ? "allow" : "deny" });
          response.writeHead(200, { "content-type": "text/plain" }).end(allow ? "allow" : "deny");
        },
        (error: unknown) => {
          logger.error({ err: error, check }, "broker hook failed; denied");
          decisions.inc({ check, decision: "deny" });
          response.writeHead(200, { "content-type": "text/plain" }).end("deny");
        },
      );
    });
  }

  const servers: Server[] = [];
  return {
    identity: (deviceId) => identities.get(deviceId, "cached"),
    forget(deviceId) {
      identities.forget(deviceId);
    },
    listen(port, host) {
      const server = createServer(handle);
      server.keepAliveTimeout = 65_000;
      servers.push(server);
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const address = server.address();
          resolve(typeof address === "object" && address !== null ? address.port : port);
        });
      });
    },
    async close() {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            }),
        ),
      );
    },
  };
}
