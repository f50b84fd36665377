/**
 * The guard policy service: what the HTTP routes (control-plane/src/http/routes/policies.ts) and the device-side
 * hooks (`policyDeliveryHooks`, control-plane/src/service DeviceSideHooks) call. Mutations take the acting principal and audit in the same transaction.
 * Throws ValidationError (naming the field), NotFoundError, ConflictError.
 */
import type { Ack } from "../../../shared/protocol/index.js";
import type { FarmAlertThresholds } from "../alerts/thresholds.js";
import type { Actor } from "../service/index.js";
import type { PolicySource } from "./effective.js";
import type { Indicator, NetworkPolicyBody, PolicyBodies, PolicyInput, PolicyKind, PolicyScope, PoolPolicyBody } from "./schemas.js";

export type { PolicySource, ScopeLevel } from "./effective.js";
export type { Indicator, PolicyKind, PolicyScope } from "./schemas.js";

interface PolicyViewBase<K extends PolicyKind> {
  id: string;
  kind: K;
  scope: PolicyScope;
  /** Taken from policy_version_seq at each change: grows across all policies. */
  version: number;
  createdAt: string;
  updatedAt: string;
  updatedBy: Actor;
}

export type PolicyView<K extends PolicyKind = PolicyKind> = K extends PolicyKind ? PolicyViewBase<K> & PolicyBodies[K] : never;

export interface PolicyList<K extends PolicyKind = PolicyKind> {
  kind: K;
  /** Fleet default first, then models, then device groups. */
  policies: PolicyView<K>[];
  /** What applies where no stored policy does (pools: none, so such devices are sent no policy). */
  builtInDefault: PolicyBodies[K] | null;
}

export interface PolicyDelivery {
  /** The version the affected devices were sent (null when none needed a new policy). */
  version: number | null;
  /** Accepted devices that got a new signed set-policy command. */
  devices: number;
}

export interface PolicyChange<K extends PolicyKind = PolicyKind> {
  policy: PolicyView<K>;
  delivery: PolicyDelivery;
}

export interface DevicePolicyView {
  deviceId: string;
  model: string;
  /** What the device should enforce now (the set-policy params without the version). */
  policy: { pools: PoolPolicyBody | null; network: NetworkPolicyBody; indicators: Indicator[] };
  /** HW-ALERT-3: the farm-alert thresholds the plane applies to this device's telemetry (not sent to it). */
  farmAlerts: FarmAlertThresholds;
  /** False until a pool policy applies to the device: nothing is sent before. */
  deliverable: boolean;
  sources: Record<PolicyKind, PolicySource>;
  hash: string;
  delivered: { version: number; seq: number; at: string; current: boolean } | null;
  acked: { version: number; at: string | null } | null;
  /** The device's reason for its last failed set-policy ack (cleared by the next success). */
  lastFailure: string | null;
  /** Delivered content is the current policy and the device acknowledged that version. */
  upToDate: boolean;
}

export interface PolicyService {
  /** Calls `listener` after each committed policy change in this process (the farm alerts re-read their thresholds). */
  onChange(listener: (kind: PolicyKind) => void): () => void;
  listPolicies<K extends PolicyKind>(kind: K): Promise<PolicyList<K>>;
  /** Upserts the policy of `input.scope` (default: the fleet) and sends the affected accepted devices a new policy. */
  putPolicy<K extends PolicyKind>(actor: Actor, kind: K, input: PolicyInput<K>): Promise<PolicyChange<K>>;
  deletePolicy(actor: Actor, kind: PolicyKind, id: string): Promise<PolicyChange>;
  devicePolicy(deviceId: string): Promise<DevicePolicyView>;

  // Device side (the DeviceSideService calls these through policyDeliveryHooks).
  /** On hello: issues a set-policy when the device's delivered content is not current, or was never acked and
   * nothing is pending. Does not publish: the hello handler re-publishes pending commands right after. */
  deliverOnHello(deviceId: string): Promise<boolean>;
  /** After a verified ack: records the acked version (done) or the failure reason (failed). */
  recordAck(ack: Ack): Promise<void>;
}
