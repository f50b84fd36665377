/**
 * A recording fake DeviceSideService for broker tests: identities are set by the test, calls are recorded.
 * It keeps the DeviceSideService contract (service/testing/device-side-contract.ts) where the broker relies on
 * it: unknown devices have no identity, a connect nonce is accepted once, and evidence, events and acks from a
 * device that is not enrolled and accepted, or not signed by its key, are refused with VerificationError (HW-SIG-1)
 * having recorded nothing. Liveness (HW-LIVE-1: the hello/heartbeat bound to its connection) is the real
 * service's alone: broker tests send heartbeats signed for a fixed nonce, so the fake records them unchecked.
 */
import { fromBase64Url, verifySignedObject } from "../../../../shared/crypto/index.js";
import { VerificationError } from "../../../../shared/errors/index.js";
import type { Ack, DeviceEvent, Evidence, Heartbeat, Hello } from "../../../../shared/protocol/index.js";
import type { AttestationResult, ConnectIdentity, DeviceSession, DeviceSideService } from "../../service/index.js";

export type RecordedCall =
  | { method: "onConnected" | "onDisconnected"; deviceId: string }
  | { method: "onSessionTakeover"; deviceId: string; peers: { previousPeer: string; newPeer: string } }
  | { method: "onHello"; message: Hello; session: DeviceSession }
  | { method: "onHeartbeat"; message: Heartbeat; session: DeviceSession }
  | { method: "onEvidence"; message: Evidence }
  | { method: "onEvent"; message: DeviceEvent }
  | { method: "onAck"; message: Ack };

export class FakeDeviceSide implements DeviceSideService {
  readonly identities = new Map<string, ConnectIdentity>();
  readonly calls: RecordedCall[] = [];
  identityLookups = 0;
  /** Set to make the next message handler throw (then cleared). */
  failNext: Error | null = null;
  /** Errors the next message handlers throw, one each, before `failNext` is looked at (a database outage). */
  failures: Error[] = [];

  setIdentity(deviceId: string, publicKey: string, enrollment: ConnectIdentity["enrollment"]): void {
    this.identities.set(deviceId, { deviceId, publicKey, enrollment });
  }

  callsOf<M extends RecordedCall["method"]>(method: M): Extract<RecordedCall, { method: M }>[] {
    return this.calls.filter((call): call is Extract<RecordedCall, { method: M }> => call.method === method);
  }

  /** When set, each identity read waits this long (ms): lets tests make lookups finish out of order. */
  lookupDelayMs: (() => number) | null = null;
  /** The device ids of each identity read, in order (one read answers the lookups of one turn). */
  readonly identityReads: string[][] = [];

  async identitiesForConnect(deviceIds: readonly string[]): Promise<ReadonlyMap<string, ConnectIdentity>> {
    this.identityLookups += deviceIds.length;
    this.identityReads.push([...deviceIds]);
    const delay = this.lookupDelayMs?.();
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    return new Map(deviceIds.flatMap((id) => (this.identities.has(id) ? [[id, this.identities.get(id)!] as const] : [])));
  }

  /** Token nonces as the database would keep them: shared by every broker built on this fake (a "restart"). */
  readonly usedNonces = new Set<string>();

  async rememberConnectNonce(_deviceId: string, nonce: string, _expiresAtMs: number): Promise<boolean> {
    if (this.usedNonces.has(nonce)) return false;
    this.usedNonces.add(nonce);
    return true;
  }

  async onConnected(deviceId: string): Promise<void> {
    this.calls.push({ method: "onConnected", deviceId });
  }

  async onDisconnected(deviceId: string): Promise<void> {
    this.calls.push({ method: "onDisconnected", deviceId });
  }

  async onSessionTakeover(deviceId: string, peers: { previousPeer: string; newPeer: string }): Promise<void> {
    this.calls.push({ method: "onSessionTakeover", deviceId, peers });
  }

  /** As the real service (service/device-side.ts): an enrolled, accepted device's signature, or VerificationError. */
  private verifySigned(message: Evidence | DeviceEvent | Ack): void {
    const identity = this.identities.get(message.deviceId);
    if (!identity) throw new VerificationError(`device ${message.deviceId} is not enrolled`);
    if (identity.enrollment !== "accepted") throw new VerificationError(`device ${message.deviceId} is ${identity.enrollment}, not accepted`);
    verifySignedObject(message, fromBase64Url(identity.publicKey)); // HW-SIG-1
  }

  private maybeFail(): void {
    const queued = this.failures.shift();
    if (queued) throw queued;
    const failure = this.failNext;
    this.failNext = null;
    if (failure) throw failure;
  }

  async onHello(message: Hello, session: DeviceSession): Promise<void> {
    this.maybeFail();
    this.calls.push({ method: "onHello", message, session: { ...session } });
  }

  /** Records the call; verification is the real service's (HW-LIVE-1), tested in the service contract suite. */
  async onHeartbeat(message: Heartbeat, session: DeviceSession): Promise<void> {
    this.maybeFail();
    this.calls.push({ method: "onHeartbeat", message, session: { ...session } });
  }

  async onEvidence(message: Evidence): Promise<AttestationResult> {
    this.maybeFail();
    this.verifySigned(message);
    this.calls.push({ method: "onEvidence", message });
    return {
      status: "none",
      trustworthiness: { "instance-identity": "affirming", configuration: "none", executables: "none", "file-system": "none" },
      differences: [],
      findings: [],
      referenceId: null,
      evidenceSeq: message.seq,
      appraisedAt: new Date(0).toISOString(),
      summary: "fake",
    };
  }

  async onEvent(message: DeviceEvent): Promise<void> {
    this.maybeFail();
    this.verifySigned(message);
    this.calls.push({ method: "onEvent", message });
  }

  async onAck(message: Ack): Promise<void> {
    this.maybeFail();
    this.verifySigned(message);
    this.calls.push({ method: "onAck", message });
  }

  async retryPendingCommands(): Promise<void> {}
  async markStaleDevices(): Promise<void> {}
  async flush(): Promise<void> {}
}
