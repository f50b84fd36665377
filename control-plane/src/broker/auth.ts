/**
 * HW-AUTH-1: MQTT CONNECT authentication, one implementation for both brokers (the embedded aedes `authenticate`
 * hook in ./index.ts and RabbitMQ's `<secret>/user` hook in ./rabbitmq/hooks.ts): username = device id, client
 * id = username, password = a connect token signed by that device's enrolled key, single use, device `accepted`.
 * Each broker supplies where identities and nonces come from and what a store failure logs.
 */
import type { Client } from "aedes";
import DataLoader from "dataloader";
import type { Logger } from "pino";
import { verifyConnectToken } from "../../../shared/auth/connect-token.js";
import { fromBase64Url, verifyBytesFast } from "../../../shared/crypto/index.js";
import { FreshnessError } from "../../../shared/errors/index.js";
import { isDeviceId } from "../../../shared/protocol/index.js";
import { clipForLog } from "../log/index.js";
import type { ConnectIdentity } from "../service/index.js";

/** CONNACK return codes (MQTT 3.1.1 table 3.1) a refusal answers with. */
export const CONNACK = {
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** Connect tokens are a few hundred bytes; a longer password is refused before any work. */
export const MAX_PASSWORD_BYTES = 2_048;
/** The longest an identity may be answered from cache (revocation on another path bites within this), ms. */
export const MAX_IDENTITY_CACHE_MS = 30_000;

/** Why a CONNECT was refused: the label of `hashward_mqtt_connect_refused_total{reason}`. */
export type RefusalReason =
  | "bad-username"
  | "bad-vhost"
  | "client-certificate"
  | "client-id-mismatch"
  | "unknown-device"
  | "not-accepted"
  | "bad-token"
  | "expired-token"
  | "replayed-token"
  | "unavailable";

/** A refused CONNECT: `reason` for the metric and log, `returnCode` for the CONNACK, the message for the log only. */
export class ConnectRefusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly returnCode: number,
    detail: string,
  ) {
    super(detail);
  }
}

/** How a lookup may use the cache: `cached` within the TTL, `fresh` always asks, `cached-if-accepted` asks again unless the cached answer is `accepted`. */
export type IdentityFreshness = "cached" | "fresh" | "cached-if-accepted";

/**
 * Reads the identities of several devices in one round trip: each enrolled device of `deviceIds` by id, absent
 * when not enrolled; throws what the store throws (the whole batch fails alike).
 */
export type IdentityBatchFetch = (deviceIds: readonly string[]) => Promise<ReadonlyMap<string, ConnectIdentity>>;

/** Devices looked up in one round trip at most (a statement's parameter list stays well below PostgreSQL's 65,535). */
export const MAX_IDENTITY_BATCH = 5_000;

/**
 * Device identities (enrolled key and enrollment state) cached for at most `ttlMs` (capped at
 * MAX_IDENTITY_CACHE_MS), at most `maxEntries` of them (then the cache starts over: entries are cheap to refetch).
 * `forget` after revoke or reject makes the next lookup ask the store.
 *
 * Lookups that miss the cache in the same event-loop turn (a burst of heartbeats or CONNECTs from many devices
 * whose entries expired together) are answered by one `fetchMany` (DataLoader, scheduled with setImmediate so the
 * reads of every socket in that turn join): one query for 2,000 devices instead of 2,000. Each lookup
 * still gets an answer read from the store after it asked, so the TTL bound on revocation is unchanged.
 */
export class IdentityCache {
  private readonly entries = new Map<string, { identity: ConnectIdentity | null; at: number }>();
  private readonly ttlMs: number;
  private readonly loader: DataLoader<string, ConnectIdentity | null>;

  constructor(
    fetchMany: IdentityBatchFetch,
    private readonly now: () => number,
    ttlMs: number,
    private readonly maxEntries: number,
  ) {
    this.ttlMs = Math.min(ttlMs, MAX_IDENTITY_CACHE_MS);
    this.loader = new DataLoader(
      async (deviceIds) => {
        const found = await fetchMany([...new Set(deviceIds)]);
        return deviceIds.map((deviceId) => found.get(deviceId) ?? null);
      },
      // No memo of its own (this class holds the TTL); setImmediate gathers every socket read of the turn.
      { cache: false, maxBatchSize: MAX_IDENTITY_BATCH, batchScheduleFn: (callback) => setImmediate(callback) },
    );
  }

  /** The device's identity, or null when it is not enrolled; throws what the store throws. */
  async get(deviceId: string, freshness: IdentityFreshness): Promise<ConnectIdentity | null> {
    const at = this.now();
    const cached = this.entries.get(deviceId);
    const usable =
      cached !== undefined &&
      at - cached.at < this.ttlMs &&
      (freshness === "cached" || (freshness === "cached-if-accepted" && cached.identity?.enrollment === "accepted"));
    if (usable) return cached.identity;
    const identity = await this.loader.load(deviceId);
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(deviceId, { identity, at });
    return identity;
  }

  /** Drops the device's cached answer (after revoke or reject): the next lookup asks the store. */
  forget(deviceId: string): void {
    this.entries.delete(deviceId);
  }
}

/** What a CONNECT presents; `password` as the broker hands it over (bytes from aedes, a form field from RabbitMQ). */
export interface ConnectRequest {
  username: string | undefined;
  clientId: string | undefined;
  password: Buffer | string | undefined;
}

/** Where a CONNECT check gets its facts, and what it reports. */
export interface ConnectVerifier {
  /** The device's identity (HW-AUTH-1: its enrolled key and state); throws when the store is unreachable. */
  identity(deviceId: string): Promise<ConnectIdentity | null>;
  /** Records the token's nonce until `expiresAtMs`; false when it was already used (a replay). */
  rememberNonce(deviceId: string, nonce: string, expiresAtMs: number, nowMs: number): Promise<boolean>;
  now(): number;
  /** A store step threw: log it (the CONNECT is refused `unavailable`, CONNACK 3). */
  onStoreFailure(deviceId: string, step: "identity lookup" | "nonce record", cause: unknown): void;
  /** The broker's own scope check (RabbitMQ: the vhost), run after the client id check; false refuses `bad-vhost`. */
  inScope?(): boolean;
}

/** A CONNECT that verified: the device, its enrolled identity and the token's nonce (the connection's session, HW-LIVE-1). */
export interface ConnectGrant {
  deviceId: string;
  identity: ConnectIdentity;
  nonce: string;
}

/**
 * HW-AUTH-1: verifies one CONNECT. Resolves with the grant; rejects with a ConnectRefusal naming the reason and
 * the CONNACK return code (a refused client identifier is code 2, [MQTT-3.1.3-9]; a store failure is code 3).
 */
export async function verifyConnect(request: ConnectRequest, verifier: ConnectVerifier): Promise<ConnectGrant> {
  const { username, clientId, password } = request;
  if (username === undefined || !isDeviceId(username)) {
    throw new ConnectRefusal("bad-username", CONNACK.badUsernameOrPassword, "username is not a device id");
  }
  if (clientId !== username) {
    // [MQTT-3.1.3-9]: a refused client identifier is answered with return code 2.
    throw new ConnectRefusal("client-id-mismatch", CONNACK.identifierRejected, `clientId ${JSON.stringify(clipForLog(clientId ?? "(none)"))} is not the username`);
  }
  if (verifier.inScope && !verifier.inScope()) throw new ConnectRefusal("bad-vhost", CONNACK.notAuthorized, "vhost is not the plane's");
  const passwordBytes = password === undefined ? 0 : typeof password === "string" ? Buffer.byteLength(password) : password.length;
  if (password === undefined || passwordBytes === 0 || passwordBytes > MAX_PASSWORD_BYTES) {
    throw new ConnectRefusal("bad-token", CONNACK.badUsernameOrPassword, "password is missing or too long");
  }
  let identity: ConnectIdentity | null;
  try {
    identity = await verifier.identity(username);
  } catch (cause) {
    verifier.onStoreFailure(username, "identity lookup", cause);
    throw new ConnectRefusal("unavailable", CONNACK.serverUnavailable, "identity lookup failed");
  }
  if (identity === null) throw new ConnectRefusal("unknown-device", CONNACK.notAuthorized, "device is not enrolled");
  if (identity.enrollment !== "accepted") {
    throw new ConnectRefusal("not-accepted", CONNACK.notAuthorized, `enrollment is ${identity.enrollment}`);
  }
  const at = verifier.now();
  let claims;
  try {
    const token = typeof password === "string" ? password : password.toString("utf8");
    claims = verifyConnectToken(token, username, fromBase64Url(identity.publicKey), at, verifyBytesFast);
  } catch (error) {
    if (error instanceof FreshnessError) throw new ConnectRefusal("expired-token", CONNACK.badUsernameOrPassword, error.message);
    const detail = error instanceof Error ? error.message : String(error);
    throw new ConnectRefusal("bad-token", CONNACK.badUsernameOrPassword, detail);
  }
  let fresh: boolean;
  try {
    fresh = await verifier.rememberNonce(username, claims.nonce, claims.exp, at);
  } catch (cause) {
    verifier.onStoreFailure(username, "nonce record", cause);
    throw new ConnectRefusal("unavailable", CONNACK.serverUnavailable, "token nonce could not be recorded");
  }
  if (!fresh) throw new ConnectRefusal("replayed-token", CONNACK.badUsernameOrPassword, "connect token nonce was already used");
  return { deviceId: username, identity, nonce: claims.nonce };
}

/** The peer's address of an aedes client ("ip:port" is too fine: one attacker opens many ports), or "unknown". */
export function peerAddress(client: Client): string {
  const conn = (client as unknown as { conn?: { remoteAddress?: string } }).conn;
  return conn?.remoteAddress ?? "unknown";
}

/** HW-MTLS-1: the subject CN of the TLS client certificate on `client`'s connection, or null. */
export function clientCertificateCn(client: Client): string | null {
  const conn = (client as unknown as { conn?: { getPeerCertificate?: () => { subject?: { CN?: string | string[] } } } }).conn;
  const cn = conn?.getPeerCertificate?.()?.subject?.CN;
  return typeof cn === "string" ? cn : null;
}

const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** HW-LOG-1: peers whose last refusal time is remembered; the oldest is forgotten beyond this. */
const REFUSAL_LOG_MAX_PEERS = 1_024;
/** HW-LOG-1: refused-CONNECT lines per REFUSAL_LOG_INTERVAL_MS for all peers together (many source addresses). */
const REFUSAL_LOG_MAX_LINES_PER_INTERVAL = 100;

/**
 * HW-LOG-1: refused CONNECTs are logged at most once per REFUSAL_LOG_INTERVAL_MS per (peer address, reason),
 * never keyed on what the peer chose (username, client id); at most REFUSAL_LOG_MAX_LINES_PER_INTERVAL lines per
 * interval overall, then one line saying how many were suppressed; every attacker-chosen field is clipped.
 */
export class RefusalLog {
  /** Last refusal line per (peer address, reason), insertion-ordered so the oldest goes first. */
  private readonly loggedAt = new Map<string, number>();
  private readonly window = { startedAt: 0, lines: 0, suppressed: 0 };

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  /** Logs (or suppresses) one refused CONNECT from `peer`. */
  note(peer: string, username: string | undefined, clientId: string, refusal: ConnectRefusal): void {
    const key = `${peer}\u0000${refusal.reason}`;
    const at = this.now();
    const last = this.loggedAt.get(key);
    if (last !== undefined && at - last < REFUSAL_LOG_INTERVAL_MS) return;
    if (at - this.window.startedAt >= REFUSAL_LOG_INTERVAL_MS) {
      if (this.window.suppressed > 0) {
        this.logger.warn({ suppressed: this.window.suppressed, intervalMs: REFUSAL_LOG_INTERVAL_MS }, "mqtt connect refusals not logged (too many peers)");
      }
      Object.assign(this.window, { startedAt: at, lines: 0, suppressed: 0 });
    }
    if (this.window.lines >= REFUSAL_LOG_MAX_LINES_PER_INTERVAL) {
      this.window.suppressed += 1;
      return;
    }
    this.window.lines += 1;
    this.loggedAt.delete(key);
    this.loggedAt.set(key, at);
    while (this.loggedAt.size > REFUSAL_LOG_MAX_PEERS) {
      const oldest = this.loggedAt.keys().next().value;
      if (oldest === undefined) break;
      this.loggedAt.delete(oldest);
    }
    this.logger.warn(
      {
        peer,
        deviceId: clipForLog(username ?? "(none)"),
        clientId: clipForLog(clientId),
        reason: refusal.reason,
        returnCode: refusal.returnCode,
        detail: clipForLog(refusal.message, 256),
      },
      "mqtt connect refused",
    );
  }
}
