/**
 * The control plane's domain API: what the HTTP layer (control-plane/src/http) calls.
 * Implemented in control-plane/src/service/index.ts on top of the database, the broker and the trust state
 * machines. Every mutating method takes the acting principal and writes an audit entry.
 * Methods throw NotFoundError / ConflictError / ValidationError / VerificationError (control-plane/src/errors.ts).
 */
import type { EnrollmentRequest, EnrollmentResponse, Finding, Measurement } from "../../../shared/protocol/index.js";
import type { AttestationResult, ReferenceMeasurement } from "../appraisal/index.js";
import type { AppraisalState, ContainmentState, EnrollmentState } from "../trust/index.js";

/** The trust states and the attestation result, defined by trust/ and appraisal/, part of this API's views. */
export type { AppraisalState, ContainmentState, EnrollmentState } from "../trust/index.js";
export type { AttestationResult, Claim, Difference, GuardClaim, ReferenceMeasurement, Tier } from "../appraisal/index.js";

export type Role = "viewer" | "operator" | "admin";
export interface Actor {
  kind: "operator" | "system" | "device";
  /** API token id, `policy`, or the device id. */
  id: string;
  role?: Role;
}

export interface DeviceTelemetry {
  hashrateGhs?: number;
  hashrateAvgGhs?: number;
  accepted?: number;
  rejected?: number;
  temperaturesC?: number[];
  fanRpm?: number[];
  activePool?: string;
}

export interface DeviceView {
  deviceId: string;
  publicKey: string;
  model: string;
  firmwareVersion: string;
  agentVersion: string;
  enrollment: EnrollmentState;
  appraisal: AppraisalState;
  containment: ContainmentState;
  connected: boolean;
  lastSeenAt: string | null;
  lastAppraisal: AttestationResult | null;
  telemetry: DeviceTelemetry | null;
  createdAt: string;
  updatedAt: string;
}

export interface DeviceFilter {
  enrollment?: EnrollmentState;
  appraisal?: AppraisalState;
  containment?: ContainmentState;
  model?: string;
  /**
   * Case-insensitive text contained in the device id, model, firmware version or active pool (1-128 characters;
   * `%`, `_` and `\` match themselves).
   */
  search?: string;
  limit: number;
  offset: number;
}

export interface TransitionView {
  id: string;
  deviceId: string;
  machine: "enrollment" | "appraisal" | "containment";
  from: string;
  to: string;
  reason: string;
  actor: Actor;
  /** The attestation result, command or ack that caused it, when there is one. */
  evidence: unknown;
  at: string;
}

export interface AuditEntry {
  id: string;
  at: string;
  actor: Actor;
  action: string;
  target: string | null;
  detail: unknown;
}

export interface ReferenceValueSet {
  id: string;
  model: string;
  firmwareVersion: string;
  status: "proposed" | "approved" | "superseded";
  source: "registered" | "captured" | "release";
  capturedFrom: string | null;
  measurements: ReferenceMeasurement[];
  createdAt: string;
  approvedAt: string | null;
  approvedBy: string | null;
}

export interface CommandView {
  deviceId: string;
  seq: number;
  action: string;
  params: Record<string, unknown>;
  status: "pending" | "acked" | "failed" | "expired" | "superseded";
  issuedAt: string;
  expiresAt: string;
  ackedAt: string | null;
  reason: string | null;
}

export interface EventView {
  id: string;
  deviceId: string;
  kind: string;
  severity: "info" | "warning" | "critical";
  detail: Record<string, unknown>;
  /** When the device produced it (its clock) and when the plane stored it. */
  ts: string;
  receivedAt: string;
}

export interface EnrollmentTokenCreated {
  id: string;
  /** Shown once; only its hash is stored. */
  token: string;
  expiresAt: string;
  maxUses: number;
}

export interface ApiTokenCreated {
  id: string;
  /** Shown once; only its hash is stored. */
  token: string;
  role: Role;
  label: string;
  /** ISO 8601, or null when the token does not expire. */
  expiresAt: string | null;
}

/**
 * An API token as listed (HW-TOKEN-1): never the secret or its hash, only the id (`api_...`) and metadata.
 * Times are ISO 8601; null = never (expiresAt), not yet (lastUsedAt), not revoked (revokedAt).
 */
export interface ApiTokenView {
  id: string;
  role: Role;
  label: string;
  createdAt: string;
  createdBy: Actor;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** active, expired or revoked, as of the listing. */
  status: "active" | "expired" | "revoked";
}

/** An enrollment token as listed (HW-TOKEN-1): no secret; `uses` of `maxUses` spent. */
export interface EnrollmentTokenView {
  id: string;
  label: string | null;
  createdAt: string;
  createdBy: Actor;
  expiresAt: string;
  maxUses: number;
  uses: number;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** active, expired, used-up or revoked, as of the listing. */
  status: "active" | "expired" | "used-up" | "revoked";
}

export interface ApiPrincipal {
  id: string;
  role: Role;
  label: string;
}

export interface ControlPlaneService {
  // Device-facing (unauthenticated HTTP, proof of possession inside the request).
  enroll(request: EnrollmentRequest): Promise<EnrollmentResponse>;

  // API tokens (admin).
  authenticateApiToken(token: string): Promise<ApiPrincipal | null>;
  /** `ttlMs` (optional, ms): the token is refused from createdAt + ttlMs on (HW-TOKEN-1). */
  createApiToken(actor: Actor, input: { role: Role; label: string; ttlMs?: number }): Promise<ApiTokenCreated>;
  /** Every API token, newest first, without secrets (HW-TOKEN-1). */
  listApiTokens(): Promise<ApiTokenView[]>;
  /** Revokes an API token: refused from its next request on; audited. NotFoundError for an unknown id; revoking twice is a no-op answer. */
  revokeApiToken(actor: Actor, id: string, reason: string): Promise<ApiTokenView>;

  // Enrollment tokens (operator).
  createEnrollmentToken(actor: Actor, input: { ttlMs: number; maxUses: number; label?: string }): Promise<EnrollmentTokenCreated>;
  /** Every enrollment token, newest first, without secrets (HW-TOKEN-1). */
  listEnrollmentTokens(): Promise<EnrollmentTokenView[]>;
  /** Revokes an enrollment token: no enrollment uses it afterwards; audited. NotFoundError for an unknown id. */
  revokeEnrollmentToken(actor: Actor, id: string, reason: string): Promise<EnrollmentTokenView>;

  // Devices.
  listDevices(filter: DeviceFilter): Promise<DeviceView[]>;
  getDevice(deviceId: string): Promise<DeviceView>;
  acceptDevice(actor: Actor, deviceId: string, reason: string): Promise<DeviceView>;
  rejectDevice(actor: Actor, deviceId: string, reason: string): Promise<DeviceView>;
  revokeDevice(actor: Actor, deviceId: string, reason: string): Promise<DeviceView>;
  /** Pre-authorize a key before the device first enrolls: it is accepted on arrival. */
  preauthorizeDevice(actor: Actor, input: { publicKey: string; model: string }): Promise<DeviceView>;
  history(deviceId: string, limit: number): Promise<TransitionView[]>;
  listCommands(deviceId: string, limit: number): Promise<CommandView[]>;
  /** Device events (newest first), e.g. command-rejected, watch-change, outbox-overflow. */
  listEvents(deviceId: string, limit: number): Promise<EventView[]>;

  // Attestation and containment.
  attestNow(actor: Actor, deviceId: string): Promise<{ nonce: string; expiresAt: string }>;
  quarantine(actor: Actor, deviceIds: string[], reason: string): Promise<CommandView[]>;
  release(actor: Actor, deviceIds: string[], reason: string): Promise<CommandView[]>;

  // Reference values.
  registerReferenceValues(
    actor: Actor,
    /** source "release": from signed release metadata (control-plane/src/tuf); default "registered". */
    input: { model: string; firmwareVersion: string; measurements: ReferenceMeasurement[]; source?: "registered" | "release" },
  ): Promise<ReferenceValueSet>;
  captureReferenceValues(actor: Actor, deviceId: string): Promise<ReferenceValueSet>;
  approveReferenceValues(actor: Actor, id: string): Promise<ReferenceValueSet>;
  listReferenceValues(filter: { model?: string; firmwareVersion?: string }): Promise<ReferenceValueSet[]>;

  // Audit (admin).
  listAudit(limit: number, offset: number): Promise<AuditEntry[]>;
}

export type { Finding, Measurement };

// ---------------------------------------------------------------------------------------------------------------
// Device side: what the broker/ingest layer (control-plane/src/broker) calls, and the port it implements.
// ---------------------------------------------------------------------------------------------------------------
import type { Ack, Challenge, Command, DeviceEvent, Evidence, Heartbeat, Hello } from "../../../shared/protocol/index.js";

/**
 * The command publisher: implemented by the transport (the embedded broker, or an external broker such as
 * RabbitMQ's MQTT plugin); publishes a plane -> device message (QoS 1) on asic/v1/<id>/down/<kind>. Every signed
 * command, its first send and every retry, leaves the plane through this seam (service/commands/publish.ts).
 *
 * Replicas (docs/scale.md "Replicas", HW-HA-4): `isConnected` means "this process can get the message to the device
 * now". With the embedded broker that is a device connected to this process's own listener, so each replica
 * re-publishes only to its own devices and a command issued on another replica reaches them at the next retry
 * tick; an external broker reaches every device from every replica (answer for the broker's whole fleet), and the
 * retry claim keeps two replicas from sending one command twice.
 */
export interface DevicePublisher {
  publish(deviceId: string, kind: "challenge", message: Challenge): Promise<void>;
  publish(deviceId: string, kind: "command", message: Command): Promise<void>;
  /** Whether this publisher can deliver to the device now (see the interface comment for replicas). */
  isConnected(deviceId: string): boolean;
  /** Optional: drop the device's MQTT session now (called after revoke/reject; the CONNECT check refuses it next). */
  disconnect?(deviceId: string): Promise<void> | void;
}

/** The name the replica design uses for the seam: one interface, whatever carries the messages. */
export type CommandPublisher = DevicePublisher;

export interface ConnectIdentity {
  deviceId: string;
  /** base64url Ed25519 public key. */
  publicKey: string;
  enrollment: EnrollmentState;
}

/**
 * The authenticated MQTT connection a hello or heartbeat arrived on (HW-LIVE-1). The broker makes one per
 * connection once CONNECT verified and passes it with every hello and heartbeat from that connection.
 */
export interface DeviceSession {
  /** Nonce of the connect token that opened the connection (single-use, HW-AUTH-1); hello and heartbeat sign it. */
  readonly connectNonce: string;
  /** The device's enrolled Ed25519 public key (base64url) as the broker knew it when the message arrived. */
  publicKey: string;
  /** Highest heartbeat seq accepted on this connection, -1 before the first; advanced by `onHeartbeat` only. */
  lastHeartbeatSeq: number;
}

/**
 * What other concerns add to the device side, as plain options: the same wiring in tests and production
 * (no wrapper or Proxy around the service). Each hook runs only for a message the device side verified and
 * accepted (HW-LIVE-1, HW-SIG-1); a hook that throws is logged and never refuses or undoes the device's message.
 */
export interface DeviceSideHooks {
  /**
   * After a hello verified against its connection, before it is handled: what this issues (a due set-policy,
   * control-plane/src/policy) is published with the device's other pending commands, before the challenge.
   */
  beforeHello?(hello: Hello): Promise<void>;
  /** After a signed ack was recorded (the policy service records acked policy versions). */
  afterAck?(ack: Ack): Promise<void>;
  /**
   * After a heartbeat was verified and buffered (farm alerts judge its telemetry, control-plane/src/alerts).
   * Called on the heartbeat path: it must not wait for the database (HW-ALERT-4).
   */
  afterHeartbeat?(heartbeat: Heartbeat): void;
}

/**
 * Handlers for messages that already passed topic ACL and schema parsing (deviceId in the payload equals the
 * topic's). They verify signatures and freshness themselves and throw VerificationError / FreshnessError /
 * ValidationError on refusal, having changed nothing.
 */
export interface DeviceSideService {
  /**
   * For CONNECT authentication and the broker's enrollment re-check (HW-AUTH-1): the identities of `deviceIds` read
   * in one query, keyed by device id; a device that is not enrolled is absent. Cached by the caller at most a few
   * seconds; the broker gathers the lookups of one event-loop turn into one call (a burst from 2,000
   * devices is one query, not 2,000).
   */
  identitiesForConnect(deviceIds: readonly string[]): Promise<ReadonlyMap<string, ConnectIdentity>>;
  /** Records a connect token's nonce until it expires; false when it was already used (a replayed token). */
  rememberConnectNonce(deviceId: string, nonce: string, expiresAtMs: number): Promise<boolean>;
  /** Marks the device connected; liveness (last-seen) comes only from signed messages (HW-LIVE-1). */
  onConnected(deviceId: string): Promise<void>;
  onDisconnected(deviceId: string): Promise<void>;
  /**
   * HW-AUTH-2: a second authenticated CONNECT took over the device's live session. Stores a `session-takeover`
   * device event (severity warning, detail {previousPeer, newPeer, takeoversInWindow}) and, at the configured
   * threshold within the window, moves a trusted/unknown/stale appraisal to `warning` with reason "session takeover".
   * Optional so transports without sessions (external brokers) need not implement it.
   */
  onSessionTakeover?(deviceId: string, peers: { previousPeer: string; newPeer: string }): Promise<void>;
  /**
   * Verifies the hello against `session` (HW-LIVE-1: signature, connectNonce, clock), then records versions/boot and
   * last-seen, re-publishes pending commands and sends a challenge. Throws LivenessRefusal having changed nothing.
   */
  onHello(hello: Hello, session: DeviceSession): Promise<void>;
  /**
   * Verifies the heartbeat against `session` (HW-LIVE-1: signature, connectNonce, seq above
   * `session.lastHeartbeatSeq`, clock), then buffers last-seen and telemetry (flushed in batches: PGlite costs
   * ~100us per query). Throws LivenessRefusal having changed nothing.
   */
  onHeartbeat(heartbeat: Heartbeat, session: DeviceSession): Promise<void>;
  /** Verifies signature, nonce/seq freshness, appraises, transitions, applies policy (auto-quarantine). */
  onEvidence(evidence: Evidence): Promise<AttestationResult>;
  /** Verifies signature; stores each event id once. */
  onEvent(event: DeviceEvent): Promise<void>;
  /** Verifies signature; marks the command acked; moves containment (quarantine_requested -> quarantined, ...). */
  onAck(ack: Ack): Promise<void>;
  /**
   * Timer work, safe to call from several replicas: expire old commands, re-publish pending ones to each device
   * with backoff (CommandRetrySchedule: ticks 1, 2, 4, then every 8; HW-TRUST-3).
   */
  retryPendingCommands(): Promise<void>;
  /** Timer work: devices not seen for staleAfterMs move to appraisal `stale`. */
  markStaleDevices(): Promise<void>;
  /** Flush buffered heartbeats (also on shutdown). */
  flush(): Promise<void>;
}
