/**
 * A recording fake ControlPlaneService for HTTP tests: every call is recorded with its arguments,
 * answers are canned views, and any method can be told to throw a given error once or always.
 * It keeps the operator contract (service/testing/operator-contract.ts) where the HTTP layer relies on it: it
 * knows a few devices (DEVICE_ID, OTHER_DEVICE_ID, and those it pre-authorises), tokens and reference sets, and
 * throws NotFoundError for any other id and ValidationError for the input the real service refuses.
 */
import { deviceIdFromPublicKey, fromBase64Url } from "../../../../shared/crypto/index.js";
import { ValidationError } from "../../../../shared/errors/index.js";
import { NotFoundError } from "../../errors.js";
import type {
  AuditEntry,
  ApiPrincipal,
  ApiTokenView,
  CommandView,
  EnrollmentTokenView,
  ControlPlaneService,
  DeviceView,
  EventView,
  ReferenceValueSet,
  Role,
  TransitionView,
} from "../../service/index.js";
import type { EnrollmentResponse } from "../../../../shared/protocol/index.js";

export type ServiceMethod = keyof ControlPlaneService;

export interface RecordedCall {
  method: ServiceMethod;
  args: unknown[];
}

export const TOKENS: Readonly<Record<Role, string>> = {
  viewer: "viewer-token-0123456789",
  operator: "operator-token-0123456789",
  admin: "admin-token-0123456789",
};

/** The two devices the fake knows from the start (any other id is a NotFoundError until pre-authorised). */
export const DEVICE_ID = "hw-0123456789abcdef01234567";
export const OTHER_DEVICE_ID = "hw-abcdefabcdefabcdefabcdef";
/** The API token, enrollment token and reference set the fake knows from the start (listed, revocable, approvable). */
export const API_TOKEN_ID = "tok_0123abcd";
export const ENROLLMENT_TOKEN_ID = "enr_0123abcd";
export const REFERENCE_SET_ID = "ref-42";
const ROLES: readonly Role[] = ["viewer", "operator", "admin"];
export const COMMAND_PUBLIC_KEY = "A".repeat(43);
const AT = "2025-01-01T00:00:00.000Z";

const API_TOKEN_VIEW: ApiTokenView = {
  id: API_TOKEN_ID,
  role: "viewer",
  label: "grafana",
  createdAt: AT,
  createdBy: { kind: "operator", id: "tok-admin", role: "admin" },
  expiresAt: null,
  lastUsedAt: null,
  revokedAt: null,
  status: "active",
};

const ENROLLMENT_TOKEN_VIEW: EnrollmentTokenView = {
  id: ENROLLMENT_TOKEN_ID,
  label: "rack 7",
  createdAt: AT,
  createdBy: { kind: "operator", id: "tok-admin", role: "admin" },
  expiresAt: AT,
  maxUses: 5,
  uses: 1,
  lastUsedAt: AT,
  revokedAt: null,
  status: "active",
};

export function deviceView(deviceId = DEVICE_ID, overrides: Partial<DeviceView> = {}): DeviceView {
  return {
    deviceId,
    publicKey: "B".repeat(43),
    model: "S19",
    firmwareVersion: "1.2.0",
    agentVersion: "0.1.0",
    enrollment: "accepted",
    appraisal: "trusted",
    containment: "none",
    connected: true,
    lastSeenAt: AT,
    lastAppraisal: null,
    telemetry: null,
    createdAt: AT,
    updatedAt: AT,
    ...overrides,
  };
}

export function commandView(deviceId: string, action: string, seq = 1): CommandView {
  return {
    deviceId,
    seq,
    action,
    params: {},
    status: "pending",
    issuedAt: AT,
    expiresAt: AT,
    ackedAt: null,
    reason: null,
  };
}

export function referenceSet(overrides: Partial<ReferenceValueSet> = {}): ReferenceValueSet {
  return {
    id: REFERENCE_SET_ID,
    model: "S19",
    firmwareVersion: "1.2.0",
    status: "approved",
    source: "registered",
    capturedFrom: null,
    measurements: [{ path: "/config/cgminer.conf", sha256: "a".repeat(64), size: 10 }],
    createdAt: AT,
    approvedAt: AT,
    approvedBy: "tok-admin",
    ...overrides,
  };
}

export class FakeControlPlaneService implements ControlPlaneService {
  readonly calls: RecordedCall[] = [];
  /** What `enroll` answers; tests flip it to "rejected" etc. */
  enrollment: EnrollmentResponse["enrollment"] = "accepted";
  private readonly failures = new Map<ServiceMethod, { error: unknown; once: boolean }>();
  private readonly principals = new Map<string, ApiPrincipal>(
    (Object.keys(TOKENS) as Role[]).map((role) => [TOKENS[role], { id: `tok-${role}`, role, label: role }]),
  );
  /** Device ids the fake knows; any other is a NotFoundError, as in the real service. */
  readonly devices = new Set([DEVICE_ID, OTHER_DEVICE_ID]);
  private readonly apiTokenIds = new Set([API_TOKEN_ID]);
  private readonly enrollmentTokenIds = new Set([ENROLLMENT_TOKEN_ID]);
  private readonly referenceSetIds = new Set([REFERENCE_SET_ID]);
  private created = 0;

  /** Makes `method` throw `error` (once by default). */
  failWith(method: ServiceMethod, error: unknown, once = true): void {
    this.failures.set(method, { error, once });
  }

  /** Calls other than token look-ups: what a refused request must never cause. */
  domainCalls(): RecordedCall[] {
    return this.calls.filter((call) => call.method !== "authenticateApiToken");
  }

  callsOf(method: ServiceMethod): RecordedCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  reset(): void {
    this.calls.length = 0;
    this.failures.clear();
    this.enrollment = "accepted";
  }

  private knownDevice(deviceId: string): void {
    if (!this.devices.has(deviceId)) throw new NotFoundError("device", deviceId);
  }

  private record(method: ServiceMethod, args: unknown[]): void {
    this.calls.push({ method, args });
    const failure = this.failures.get(method);
    if (failure) {
      if (failure.once) this.failures.delete(method);
      throw failure.error;
    }
  }

  async enroll(...args: Parameters<ControlPlaneService["enroll"]>) {
    this.record("enroll", args);
    const [request] = args;
    return { deviceId: request.deviceId, enrollment: this.enrollment, commandPublicKey: COMMAND_PUBLIC_KEY };
  }

  async authenticateApiToken(token: string) {
    this.record("authenticateApiToken", [token]);
    return this.principals.get(token) ?? null;
  }

  async createApiToken(...args: Parameters<ControlPlaneService["createApiToken"]>) {
    this.record("createApiToken", args);
    const [, input] = args;
    if (!ROLES.includes(input.role)) throw new ValidationError(`role ${JSON.stringify(input.role)} is not one of ${ROLES.join(", ")}`, "role");
    if (input.ttlMs !== undefined && (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0)) throw new ValidationError(`ttlMs must be a positive integer, got ${input.ttlMs}`, "ttlMs");
    const n = ++this.created;
    const created = { id: `tok_new${n}`, token: `new-secret-token-${n}`, role: input.role, label: input.label, expiresAt: input.ttlMs === undefined ? null : new Date(Date.parse(AT) + input.ttlMs).toISOString() };
    this.apiTokenIds.add(created.id);
    this.principals.set(created.token, { id: created.id, role: created.role, label: created.label });
    return created;
  }

  async listApiTokens() {
    this.record("listApiTokens", []);
    return [API_TOKEN_VIEW];
  }

  async revokeApiToken(...args: Parameters<ControlPlaneService["revokeApiToken"]>) {
    this.record("revokeApiToken", args);
    if (!this.apiTokenIds.has(args[1])) throw new NotFoundError("api token", args[1]);
    for (const [token, principal] of this.principals) if (principal.id === args[1]) this.principals.delete(token);
    return { ...API_TOKEN_VIEW, id: args[1], revokedAt: AT, status: "revoked" as const };
  }

  async listEnrollmentTokens() {
    this.record("listEnrollmentTokens", []);
    return [ENROLLMENT_TOKEN_VIEW];
  }

  async revokeEnrollmentToken(...args: Parameters<ControlPlaneService["revokeEnrollmentToken"]>) {
    this.record("revokeEnrollmentToken", args);
    if (!this.enrollmentTokenIds.has(args[1])) throw new NotFoundError("enrollment token", args[1]);
    return { ...ENROLLMENT_TOKEN_VIEW, id: args[1], revokedAt: AT, status: "revoked" as const };
  }

  async createEnrollmentToken(...args: Parameters<ControlPlaneService["createEnrollmentToken"]>) {
    this.record("createEnrollmentToken", args);
    const [, input] = args;
    if (!Number.isInteger(input.ttlMs) || input.ttlMs <= 0) throw new ValidationError(`ttlMs must be a positive integer, got ${input.ttlMs}`, "ttlMs");
    if (!Number.isInteger(input.maxUses) || input.maxUses < 1) throw new ValidationError(`maxUses must be a positive integer, got ${input.maxUses}`, "maxUses");
    const id = `enr_new${++this.created}`;
    this.enrollmentTokenIds.add(id);
    return { id, token: "enrollment-secret", expiresAt: new Date(Date.parse(AT) + input.ttlMs).toISOString(), maxUses: input.maxUses };
  }

  async listDevices(...args: Parameters<ControlPlaneService["listDevices"]>) {
    this.record("listDevices", args);
    return [deviceView()];
  }

  async getDevice(deviceId: string) {
    this.record("getDevice", [deviceId]);
    this.knownDevice(deviceId);
    return deviceView(deviceId);
  }

  async acceptDevice(...args: Parameters<ControlPlaneService["acceptDevice"]>) {
    this.record("acceptDevice", args);
    this.knownDevice(args[1]);
    return deviceView(args[1], { enrollment: "accepted" });
  }

  async rejectDevice(...args: Parameters<ControlPlaneService["rejectDevice"]>) {
    this.record("rejectDevice", args);
    this.knownDevice(args[1]);
    return deviceView(args[1], { enrollment: "rejected" });
  }

  async revokeDevice(...args: Parameters<ControlPlaneService["revokeDevice"]>) {
    this.record("revokeDevice", args);
    this.knownDevice(args[1]);
    return deviceView(args[1], { enrollment: "revoked" });
  }

  async preauthorizeDevice(...args: Parameters<ControlPlaneService["preauthorizeDevice"]>) {
    this.record("preauthorizeDevice", args);
    let key: Uint8Array;
    try {
      key = fromBase64Url(args[1].publicKey);
    } catch {
      key = new Uint8Array();
    }
    if (key.length !== 32) throw new ValidationError("publicKey must be a base64url Ed25519 public key (32 bytes)", "publicKey");
    if (typeof args[1].model !== "string" || args[1].model.length === 0) throw new ValidationError("model is required", "model");
    const deviceId = deviceIdFromPublicKey(key);
    this.devices.add(deviceId);
    return deviceView(deviceId, { publicKey: args[1].publicKey, model: args[1].model, enrollment: "accepted", connected: false });
  }

  async history(...args: Parameters<ControlPlaneService["history"]>) {
    this.record("history", args);
    this.knownDevice(args[0]);
    const transition: TransitionView = {
      id: "tr-1",
      deviceId: args[0],
      machine: "enrollment",
      from: "pending",
      to: "accepted",
      reason: "test",
      actor: { kind: "operator", id: "tok-operator", role: "operator" },
      evidence: null,
      at: AT,
    };
    return [transition];
  }

  async listCommands(...args: Parameters<ControlPlaneService["listCommands"]>) {
    this.record("listCommands", args);
    this.knownDevice(args[0]);
    return [commandView(args[0], "quarantine")];
  }

  async listEvents(...args: Parameters<ControlPlaneService["listEvents"]>) {
    this.record("listEvents", args);
    this.knownDevice(args[0]);
    const event: EventView = {
      id: "evt-00000001",
      deviceId: args[0],
      kind: "watch-change",
      severity: "warning",
      detail: { path: "/config/cgminer.conf" },
      ts: AT,
      receivedAt: AT,
    };
    return [event];
  }

  async attestNow(...args: Parameters<ControlPlaneService["attestNow"]>) {
    this.record("attestNow", args);
    this.knownDevice(args[1]);
    return { nonce: "n".repeat(22), expiresAt: AT };
  }

  async quarantine(...args: Parameters<ControlPlaneService["quarantine"]>) {
    this.record("quarantine", args);
    args[1].forEach((id) => this.knownDevice(id));
    return args[1].map((id, i) => commandView(id, "quarantine", i + 1));
  }

  async release(...args: Parameters<ControlPlaneService["release"]>) {
    this.record("release", args);
    args[1].forEach((id) => this.knownDevice(id));
    return args[1].map((id, i) => commandView(id, "release", i + 1));
  }

  async registerReferenceValues(...args: Parameters<ControlPlaneService["registerReferenceValues"]>) {
    this.record("registerReferenceValues", args);
    const [, input] = args;
    if (typeof input.model !== "string" || input.model.length === 0) throw new ValidationError("model is required", "model");
    if (typeof input.firmwareVersion !== "string" || input.firmwareVersion.length === 0) throw new ValidationError("firmwareVersion is required", "firmwareVersion");
    const id = `ref-new${++this.created}`;
    this.referenceSetIds.add(id);
    return referenceSet({ id, model: input.model, firmwareVersion: input.firmwareVersion, measurements: input.measurements });
  }

  async captureReferenceValues(...args: Parameters<ControlPlaneService["captureReferenceValues"]>) {
    this.record("captureReferenceValues", args);
    this.knownDevice(args[1]);
    return referenceSet({ status: "proposed", source: "captured", capturedFrom: args[1], approvedAt: null, approvedBy: null });
  }

  async approveReferenceValues(...args: Parameters<ControlPlaneService["approveReferenceValues"]>) {
    this.record("approveReferenceValues", args);
    if (!this.referenceSetIds.has(args[1])) throw new NotFoundError("reference value set", args[1]);
    return referenceSet({ id: args[1] });
  }

  async listReferenceValues(...args: Parameters<ControlPlaneService["listReferenceValues"]>) {
    this.record("listReferenceValues", args);
    return [referenceSet()];
  }

  async listAudit(...args: Parameters<ControlPlaneService["listAudit"]>) {
    this.record("listAudit", args);
    const entry: AuditEntry = { id: "au-1", at: AT, actor: { kind: "system", id: "policy" }, action: "test", target: null, detail: null };
    return [entry];
  }
}
