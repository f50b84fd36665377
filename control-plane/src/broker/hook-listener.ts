/**
 * The HTTP listener an external broker's auth hooks run on (RabbitMQ: ./rabbitmq/hooks.ts, EMQX: ./emqx/hooks.ts),
 * and the CONNECT check both hooks make (createHookAuthenticator, over ./auth.ts).
 * HW-BROKER-2: a listener of its own (loopback by default), and a request that does not carry the shared secret
 * (`route` answers null) gets the `refused` answer and nothing else: its body is not read, no check runs. A body
 * over `maxBodyBytes` is refused (`tooLarge`) before it is read in full. A check that throws is answered with
 * `failed` (each broker's "deny"), never a 5xx that a broker could read as "ask the next backend".
 *
 * Written on node:http rather than the API's Hono app on purpose: a few routes on a listener of their own, with no
 * middleware of the operator API (tokens, CORS, OpenAPI) to get in the way.
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { clipForLog } from "../log/index.js";
import type { ConnectIdentity, DeviceSideService } from "../service/index.js";
import { CONNACK, ConnectRefusal, IdentityCache, verifyConnect, type ConnectGrant, type ConnectRequest } from "./auth.js";
import { connectRefusedCounter } from "./metrics.js";

/** One HTTP answer to the broker; `decision` is the metric label (allow, deny, ...). */
export interface HookAnswer {
  status: number;
  body: string;
  headers?: Record<string, string>;
  decision: string;
}

export interface HookListenerDeps {
  logger: Logger;
  registry: Registry;
  /** The check a request asks for, or null when it does not carry the broker's secret (or names no check). */
  route(request: IncomingMessage): string | null;
  /** Answers one check; `body` is at most maxBodyBytes. May throw: then `failed` answers. */
  answer(check: string, body: Buffer, request: IncomingMessage): Promise<HookAnswer>;
  /** The answer to a request without the secret (HW-BROKER-2). */
  refused: HookAnswer;
  /** The answer to a body larger than maxBodyBytes. */
  tooLarge: HookAnswer;
  /** The answer when a check throws (fail closed). */
  failed: HookAnswer;
  /** Largest request body read (bytes); default 8192. */
  maxBodyBytes?: number;
}

export interface HookListener {
  /** Listens; resolves with the bound port (port 0 picks one). Rejects with the listen error (EADDRINUSE, ...). */
  listen(port: number, host: string): Promise<number>;
  /** Stops every listener and drops open connections. */
  close(): Promise<void>;
}

/** HW-BROKER-2: `given` equals `secret`, compared in constant time (length aside). */
export function secretEquals(given: string, secret: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** An HTTP listener for broker hooks (see the file comment). */
export function createHookListener(deps: HookListenerDeps): HookListener {
  const maxBodyBytes = deps.maxBodyBytes ?? 8 * 1024;
  const requests = new Counter({
    name: "hashward_broker_hook_requests_total",
    help: "Requests from the external broker's HTTP auth hooks, by check and decision (refused: no or wrong secret; too-large: body over the cap)",
    labelNames: ["check", "decision"] as const,
    registers: [deps.registry],
  });

  function send(response: ServerResponse, check: string, answer: HookAnswer): void {
    requests.inc({ check, decision: answer.decision });
    response.writeHead(answer.status, answer.headers).end(answer.body);
  }

  function handle(request: IncomingMessage, response: ServerResponse): void {
    const check = request.method === "POST" ? deps.route(request) : null;
    if (check === null) {
      send(response, "unknown", deps.refused);
      request.resume();
      return;
    }
    const refuseTooLarge = (): void => {
      // Answer first, then drop the connection once the answer is out (the rest of the body is not read).
      response.once("finish", () => request.destroy());
      send(response, check, { ...deps.tooLarge, headers: { ...deps.tooLarge.headers, connection: "close" } });
    };
    if (Number(request.headers["content-length"] ?? 0) > maxBodyBytes) {
      refuseTooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      if (size > maxBodyBytes) return;
      size += chunk.length;
      if (size > maxBodyBytes) refuseTooLarge();
      else chunks.push(chunk);
    });
    request.on("end", () => {
      if (size > maxBodyBytes) return;
      deps.answer(check, Buffer.concat(chunks), request).then(
        (answer) => send(response, check, answer),
        (error: unknown) => {
          deps.logger.error({ err: error, check }, "broker hook failed; denied");
          send(response, check, deps.failed);
        },
      );
    });
  }

  const servers: Server[] = [];
  return {
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

/** What both external brokers' hook servers are built from (RabbitMQ adds its exchange and vhost). */
export interface BrokerHookDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  registry: Registry;
  /** HASHWARD_BROKER_HOOK_SECRET (HW-BROKER-2). */
  secret: string;
  now?: () => number;
  /** How long a device's identity is answered from cache (ms); default 10000, capped at 30000; forget() clears one at once. */
  identityCacheMs?: number;
  /** Called after a device's CONNECT was allowed, with the token's nonce (the connection's session, HW-LIVE-1). */
  onAuthenticated?(deviceId: string, connectNonce: string): void;
}

/** What both external brokers' hook servers offer the transport. */
export interface BrokerHooks {
  /** Listens; resolves with the bound port (port 0 picks one). */
  listen(port: number, host: string): Promise<number>;
  /** The device's identity from the cache (ingest re-checks enrollment with it); throws what the store throws. */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  /** Forgets a device's cached identity (revocation through this plane). */
  forget(deviceId: string): void;
  close(): Promise<void>;
}

export interface HookAuthenticatorDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  registry: Registry;
  now: () => number;
  /** How long a device's identity is answered from cache (ms); default 10000, capped at 30000; forget() clears one at once. */
  identityCacheMs?: number;
}

export interface HookAuthenticator {
  /**
   * HW-AUTH-1 (../auth.ts verifyConnect) for a CONNECT an external broker asks its hook about: the grant, or null
   * when refused (counted in hashward_mqtt_connect_refused_total{reason} and logged, attacker-chosen fields
   * clipped). `checks.inScope` is the broker's own scope check (RabbitMQ: the vhost); `checks.certificateCn`, when
   * given, is the subject CN of the client certificate the broker verified, which must be the username (HW-MTLS-1).
   * Never rejects for a refusal.
   */
  authenticate(request: ConnectRequest, checks?: { inScope?: () => boolean; certificateCn?: string }): Promise<ConnectGrant | null>;
  /** The device's identity from the cache (ingest re-checks enrollment with it); throws what the store throws. */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  /** Forgets a device's cached identity (revocation through this plane). */
  forget(deviceId: string): void;
}

/**
 * The CONNECT check both external brokers' hooks share: ../auth.ts's verifyConnect over an identity cache (a
 * reconnect storm costs one signature check and one nonce insert per device, no lookups) and the database's
 * nonce record (single use across replicas).
 */
export function createHookAuthenticator(deps: HookAuthenticatorDeps): HookAuthenticator {
  const { deviceSide, logger, now } = deps;
  const identities = new IdentityCache((deviceIds) => deviceSide.identitiesForConnect(deviceIds), now, deps.identityCacheMs ?? 10_000, 200_000);
  const connectRefused = connectRefusedCounter(deps.registry);
  return {
    async authenticate(request, checks = {}) {
      const { inScope, certificateCn } = checks;
      try {
        // HW-MTLS-1: a device's certificate does not let it pose as another device.
        if (certificateCn !== undefined && certificateCn !== request.username) {
          throw new ConnectRefusal("client-certificate", CONNACK.notAuthorized, "client certificate is not the device's");
        }
        return await verifyConnect(request, {
          // A cached answer other than `accepted` is asked again (a device accepted a moment ago connects at once).
          identity: (deviceId) => identities.get(deviceId, "cached-if-accepted"),
          // Single use across replicas: the nonce is recorded in the database (HW-AUTH-1).
          rememberNonce: (deviceId, nonce, exp) => deviceSide.rememberConnectNonce(deviceId, nonce, exp),
          now,
          onStoreFailure: (deviceId, step, cause) => logger.error({ deviceId, err: cause }, `${step} failed during CONNECT`),
          ...(inScope ? { inScope } : {}),
        });
      } catch (error) {
        if (!(error instanceof ConnectRefusal)) throw error;
        connectRefused.inc({ reason: error.reason });
        logger.warn({ deviceId: clipForLog(request.username ?? ""), reason: error.reason }, "mqtt connect refused");
        return null;
      }
    },
    identity: (deviceId) => identities.get(deviceId, "cached"),
    forget: (deviceId) => identities.forget(deviceId),
  };
}
