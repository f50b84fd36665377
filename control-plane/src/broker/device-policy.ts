/**
 * The device rules every broker mode enforces, written once: the embedded aedes broker (./index.ts), the RabbitMQ
 * HTTP auth backend's hooks (./rabbitmq/hooks.ts) and EMQX's HTTP authentication and authorization hooks
 * (./emqx/hooks.ts) all decide through these functions.
 *   - devicePublishAllowed / deviceSubscribeAllowed: HW-TOPIC-1 on MQTT topics.
 *   - createConnectCheck: HW-AUTH-1 (connect token of the enrolled key, single use, `accepted` only, client id =
 *     username) for the external brokers' hooks, with the device identity cache that keeps a reconnect storm to
 *     one signature check and one nonce insert per device (HW-BROKER-2).
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { verifyConnectToken } from "../../../shared/auth/connect-token.js";
import { fromBase64Url, verifyBytesFast } from "../../../shared/crypto/index.js";
import { FreshnessError } from "../../../shared/errors/index.js";
import { downFilter, isDeviceId, parseTopic } from "../../../shared/protocol/index.js";
import { clipForLog } from "../log/index.js";
import type { ConnectIdentity, DeviceSideService } from "../service/types.js";

/** HW-TOPIC-1: device `deviceId` may publish to `topic` only when it is its own `asic/v1/<id>/up/<kind>`. */
export function devicePublishAllowed(deviceId: string, topic: string): boolean {
  const parsed = parseTopic(topic);
  return parsed !== null && parsed.direction === "up" && parsed.deviceId === deviceId;
}

/**
 * HW-TOPIC-1: device `deviceId` may subscribe to `filter` only when it is its own down filter
 * (`asic/v1/<id>/down/+`) or one of its own concrete down topics; wildcards elsewhere, shared subscriptions
 * (`$share/...`) and other devices' topics are refused.
 */
export function deviceSubscribeAllowed(deviceId: string, filter: string): boolean {
  if (filter === downFilter(deviceId)) return true;
  const parsed = parseTopic(filter);
  return parsed !== null && parsed.direction === "down" && parsed.deviceId === deviceId;
}

/** Why a CONNECT was refused (the label of hashward_mqtt_connect_refused_total). */
export type ConnectRefusalReason =
  | "bad-username"
  | "client-certificate"
  | "client-id-mismatch"
  | "unknown-device"
  | "not-accepted"
  | "bad-token"
  | "expired-token"
  | "replayed-token"
  | "unavailable";

/** A CONNECT decision: allowed with the token's nonce (the connection's session, HW-LIVE-1), or refused with a reason. */
export type ConnectDecision = { allow: true; nonce: string } | { allow: false; reason: ConnectRefusalReason };

/** The CONNECT fields an external broker hands its HTTP hook (strings as the broker sends them). */
export interface ConnectRequest {
  username: string;
  clientId: string;
  password: string;
}

export interface ConnectCheckDeps {
  deviceSide: DeviceSideService;
  logger: Logger;
  /** Refusals are counted here (hashward_mqtt_connect_refused_total{reason}). */
  registry: Registry;
  now?: () => number;
  /** How long a device's identity is answered from cache (ms); default 10000, capped at 30000. forget() clears one at once. */
  identityCacheMs?: number;
  /** Identities kept at most (then the cache starts over; entries are cheap to refetch); default 200000. */
  maxCachedIdentities?: number;
}

export interface ConnectCheck {
  /**
   * HW-AUTH-1 for one CONNECT; never throws (a failing lookup is `unavailable`). Records the nonce (single use);
   * a refusal is counted and logged (attacker-chosen fields clipped, HW-LOG-1).
   */
  check(request: ConnectRequest): Promise<ConnectDecision>;
  /** The device's identity, from cache when fresh enough; null when not enrolled. Throws what the lookup throws. */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  /** Forgets a device's cached identity (revocation through this plane). */
  forget(deviceId: string): void;
}

const MAX_IDENTITY_CACHE_MS = 30_000;
/** A connect token is a few hundred bytes; anything longer is not one. */
export const MAX_PASSWORD_BYTES = 2_048;

/** HW-AUTH-1 through an external broker's HTTP hook, with the identity cache the hooks and ingest share. */
export function createConnectCheck(deps: ConnectCheckDeps): ConnectCheck {
  const { deviceSide, logger } = deps;
  const now = deps.now ?? Date.now;
  const identityCacheMs = Math.min(deps.identityCacheMs ?? 10_000, MAX_IDENTITY_CACHE_MS);
  const maxCached = deps.maxCachedIdentities ?? 200_000;
  const identities = new Map<string, { identity: ConnectIdentity | null; at: number }>();
  const connectRefused = new Counter({
    name: "hashward_mqtt_connect_refused_total",
    help: "MQTT CONNECTs refused, by reason",
    labelNames: ["reason"] as const,
    registers: [deps.registry],
  });

  /** `acceptedOnly`: a cached answer other than `accepted` is asked again (a device accepted a moment ago connects at once). */
  async function identity(deviceId: string, acceptedOnly = false): Promise<ConnectIdentity | null> {
    const at = now();
    const cached = identities.get(deviceId);
    if (cached && at - cached.at < identityCacheMs && (!acceptedOnly || cached.identity?.enrollment === "accepted")) return cached.identity;
    const found = await deviceSide.identityForConnect(deviceId);
    if (identities.size >= maxCached) identities.clear();
    identities.set(deviceId, { identity: found, at });
    return found;
  }

  async function check(request: ConnectRequest): Promise<ConnectDecision> {
    const decision = await decide(request);
    if (!decision.allow) {
      connectRefused.inc({ reason: decision.reason });
      logger.warn({ deviceId: clipForLog(request.username), reason: decision.reason }, "mqtt connect refused");
    }
    return decision;
  }

  async function decide({ username, clientId, password }: ConnectRequest): Promise<ConnectDecision> {
    if (!isDeviceId(username)) return { allow: false, reason: "bad-username" };
    // [MQTT-3.1.3-9] the client id is the device id: one session per device, named by what it proved.
    if (clientId !== username) return { allow: false, reason: "client-id-mismatch" };
    if (password.length === 0 || Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return { allow: false, reason: "bad-token" };
    let found: ConnectIdentity | null;
    try {
      found = await identity(username, true);
    } catch (error) {
      logger.error({ deviceId: username, err: error }, "identity lookup failed during CONNECT");
      return { allow: false, reason: "unavailable" };
    }
    if (found === null) return { allow: false, reason: "unknown-device" };
    if (found.enrollment !== "accepted") return { allow: false, reason: "not-accepted" };
    let claims;
    try {
      claims = verifyConnectToken(password, username, fromBase64Url(found.publicKey), now(), verifyBytesFast);
    } catch (error) {
      return { allow: false, reason: error instanceof FreshnessError ? "expired-token" : "bad-token" };
    }
    try {
      // HW-AUTH-1: single use across replicas (the nonce row is the database's).
      if (!(await deviceSide.rememberConnectNonce(username, claims.nonce, claims.exp))) return { allow: false, reason: "replayed-token" };
    } catch (error) {
      logger.error({ deviceId: username, err: error }, "nonce record failed during CONNECT");
      return { allow: false, reason: "unavailable" };
    }
    return { allow: true, nonce: claims.nonce };
  }

  return {
    check,
    identity: (deviceId) => identity(deviceId),
    forget(deviceId) {
      identities.delete(deviceId);
    },
  };
}
