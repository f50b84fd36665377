/**
 * The control plane's domain API: what the HTTP layer (control-plane/src/http) calls.
 * Implemented in control-plane/src/service/index.ts on top of the database, the broker and the trust state
 * machines. Every mutating method takes the acting principal and writes an audit entry.
 * Methods throw NotFoundError / ConflictError / ValidationError / VerificationError (control-plane/src/errors.ts).
 */
import type { EnrollmentRequest, EnrollmentResponse, Measurement } from "../../../shared/protocol/index.js";

export type Role = "viewer" | "operator" | "admin";
export type EnrollmentState = "pending" | "accepted" | "rejected" | "revoked";
export type AppraisalState = "unknown" | "trusted" | "warning" | "contraindicated" | "stale";
export type ContainmentState = "none" | "quarantine_requested" | "quarantined" | "release_requested";
/** IETF RATS AR4SI trustworthiness tiers. */
export type Tier = "none" | "affirming" | "warning" | "contraindicated";
export type Claim = "instance-identity" | "configuration" | "executables" | "file-system";

export interface Actor {
  kind: "operator" | "system" | "device";
  /** API token id, `policy`, or the device id. */
  id: string;
  role?: Role;
}

export interface Difference {
  path: string;
  claim: Exclude<Claim, "instance-identity">;
  kind: "changed" | "missing" | "unexpected";
  expected: { sha256: string; size: number } | null;
  seen: { sha256: string; size: number } | null;
}

/** An EAR-style attestation result. */
export interface AttestationResult {
  status: Tier;
  trustworthiness: Record<Claim, Tier>;
  differences: Difference[];
  referenceId: string | null;
  evidenceSeq: number;
  appraisedAt: string;
  /** Why, in words, e.g. "no approved reference values for S19 1.2.0". */
  summary: string;
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

export interface ReferenceMeasurement {
  path: string;
  sha256: string;
  size: number;
  claim?: Exclude<Claim, "instance-identity">;
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
  createApiToken(actor: Actor, input: { role: Role; label: string }): Promise<ApiTokenCreated>;

  // Enrollment tokens (operator).
  createEnrollmentToken(actor: Actor, input: { ttlMs: number; maxUses: number; label?: string }): Promise<EnrollmentTokenCreated>;

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

  // Attestation and containment.
  attestNow(actor: Actor, deviceId: string): Promise<{ nonce: string; expiresAt: string }>;
  quarantine(actor: Actor, deviceIds: string[], reason: string): Promise<CommandView[]>;
  release(actor: Actor, deviceIds: string[], reason: string): Promise<CommandView[]>;

  // Reference values.
  registerReferenceValues(
    actor: Actor,
    input: { model: string; firmwareVersion: string; measurements: ReferenceMeasurement[] },
  ): Promise<ReferenceValueSet>;
  captureReferenceValues(actor: Actor, deviceId: string): Promise<ReferenceValueSet>;
  approveReferenceValues(actor: Actor, id: string): Promise<ReferenceValueSet>;
  listReferenceValues(filter: { model?: string; firmwareVersion?: string }): Promise<ReferenceValueSet[]>;

  // Audit (admin).
  listAudit(limit: number, offset: number): Promise<AuditEntry[]>;
}

export type { Measurement };
