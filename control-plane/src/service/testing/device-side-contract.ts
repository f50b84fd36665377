/**
 * The DeviceSideService contract, run against the real service on the database and against the
 * broker tests' fake (broker/testing/fake-device-side.ts) by service/device-side.contract.test.ts: the broker
 * tests only mean something while the fake answers as the real service does.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url, type KeyPair } from "../../../../shared/crypto/index.js";
import { VerificationError } from "../../../../shared/errors/index.js";
import type { Ack, DeviceEvent, Evidence, Heartbeat, Hello } from "../../../../shared/protocol/index.js";
import { LivenessRefusal } from "../../errors.js";
import type { DeviceSession, DeviceSideService } from "../types.js";

/** One implementation, opened once for the suite (every test uses devices of its own). */
export interface DeviceSideUnderTest {
  service: DeviceSideService;
  /** Makes the key an enrolled, accepted device of `model` (the real service: pre-authorised; the fake: an identity). */
  enroll(publicKey: string, model: string): Promise<void>;
  /** The time the implementation takes for "now" (ms since the epoch): messages are stamped with it. */
  nowMs: number;
  close(): Promise<void>;
}

export interface DeviceSideContractOptions {
  /**
   * Whether hello and heartbeat are checked against their connection (HW-LIVE-1). The real service does; the
   * broker's fake records them unchecked (its tests send heartbeats signed for a fixed nonce).
   */
  checksLiveness: boolean;
}

const MODEL = "S19";
const TIERS = ["none", "affirming", "warning", "contraindicated"];

/** A device key and the signed messages it sends (stamped with the implementation's clock). */
function testDevice(nowMs: number, keys: KeyPair = generateKeyPair()) {
  const id = deviceIdFromPublicKey(keys.publicKey);
  const publicKey = toBase64Url(keys.publicKey);
  const common = { v: 1 as const, deviceId: id, ts: nowMs };
  return {
    id,
    publicKey,
    session: (): DeviceSession => ({ connectNonce: `conn-${randomBytes(12).toString("base64url")}`, publicKey, lastHeartbeatSeq: -1 }),
    hello: (session: DeviceSession, signer = keys) =>
      signObject(
        { ...common, type: "hello" as const, connectNonce: session.connectNonce, model: MODEL, firmwareVersion: "1.2.0", agentVersion: "0.1.0", bootId: "boot-1", containment: "none" as const, lastCommandSeq: 0 },
        signer.privateKey,
      ) as Hello,
    heartbeat: (session: DeviceSession, seq: number, signer = keys) =>
      signObject({ ...common, type: "heartbeat" as const, connectNonce: session.connectNonce, seq, uptimeMs: 5, containment: "none" as const, outboxDepth: 0 }, signer.privateKey) as Heartbeat,
    evidence: (seq: number, signer = keys) =>
      signObject(
        {
          ...common,
          type: "evidence" as const,
          seq,
          nonce: null,
          reason: "timer" as const,
          model: MODEL,
          firmwareVersion: "1.2.0",
          agentVersion: "0.1.0",
          bootId: "boot-1",
          measurements: [{ path: "/config/cgminer.conf", kind: "file" as const, sha256: "a".repeat(64), size: 10 }],
        },
        signer.privateKey,
      ) as Evidence,
    event: (eventId: string, signer = keys) =>
      signObject({ ...common, type: "event" as const, id: eventId, kind: "command-rejected" as const, severity: "warning" as const, detail: { reason: "replay" } }, signer.privateKey) as DeviceEvent,
    ack: (seq: number, signer = keys) =>
      signObject({ ...common, type: "ack" as const, seq, action: "quarantine" as const, status: "done" as const, containment: "quarantined" as const }, signer.privateKey) as Ack,
  };
}

/** Registers the contract suite for one implementation; `open` is called once, before the first test. */
export function deviceSideContract(name: string, open: () => Promise<DeviceSideUnderTest>, options: DeviceSideContractOptions): void {
  describe(`DeviceSideService contract: ${name}`, () => {
    let opened: DeviceSideUnderTest | undefined;
    beforeAll(async () => {
      opened = await open();
    });
    afterAll(() => opened?.close());
    const withService = (run: (under: DeviceSideUnderTest) => Promise<void>) => () => run(opened!);
    const enrolled = async (under: DeviceSideUnderTest) => {
      const device = testDevice(under.nowMs);
      await under.enroll(device.publicKey, MODEL);
      return device;
    };

    it(
      "HW-AUTH-1: an unknown device has no identity; an enrolled one has its key and enrollment state",
      withService(async (under) => {
        const stranger = testDevice(under.nowMs);
        const device = await enrolled(under);
        const found = await under.service.identitiesForConnect([stranger.id, device.id]);
        expect(found.has(stranger.id)).toBe(false);
        expect(found.get(device.id)).toEqual({ deviceId: device.id, publicKey: device.publicKey, enrollment: "accepted" });
      }),
    );

    it(
      "HW-AUTH-1: a connect token's nonce is accepted once",
      withService(async (under) => {
        const device = await enrolled(under);
        const expires = under.nowMs + 60_000;
        expect(await under.service.rememberConnectNonce(device.id, "nonce-0123456789abcdef", expires)).toBe(true);
        expect(await under.service.rememberConnectNonce(device.id, "nonce-0123456789abcdef", expires)).toBe(false);
        expect(await under.service.rememberConnectNonce(device.id, "nonce-fedcba9876543210", expires)).toBe(true);
      }),
    );

    it(
      "takes connect, a signed hello and heartbeats, disconnect, and the timer work",
      withService(async (under) => {
        const device = await enrolled(under);
        const session = device.session();
        await under.service.onConnected(device.id);
        await under.service.onHello(device.hello(session), session);
        await under.service.onHeartbeat(device.heartbeat(session, 1), session);
        await under.service.onDisconnected(device.id);
        await under.service.retryPendingCommands();
        await under.service.markStaleDevices();
        await under.service.flush();
      }),
    );

    it.runIf(options.checksLiveness)(
      "HW-LIVE-1: a hello or heartbeat of another connection, a replayed seq or a foreign signature is a LivenessRefusal",
      withService(async (under) => {
        const device = await enrolled(under);
        const session = device.session();
        await expect(under.service.onHello(device.hello(device.session()), session)).rejects.toBeInstanceOf(LivenessRefusal);
        await expect(under.service.onHello(device.hello(session, generateKeyPair()), session)).rejects.toBeInstanceOf(LivenessRefusal);
        await expect(under.service.onHeartbeat(device.heartbeat(session, 0), { ...session, lastHeartbeatSeq: 3 })).rejects.toBeInstanceOf(LivenessRefusal);
      }),
    );

    it(
      "answers signed evidence with an attestation result (EAR shape, the evidence's seq)",
      withService(async (under) => {
        const device = await enrolled(under);
        const result = await under.service.onEvidence(device.evidence(1));
        expect(TIERS).toContain(result.status);
        for (const claim of ["instance-identity", "configuration", "executables", "file-system"] as const) expect(TIERS).toContain(result.trustworthiness[claim]);
        expect(result).toMatchObject({ evidenceSeq: 1, differences: expect.any(Array), findings: expect.any(Array), summary: expect.any(String) });
        expect(Number.isNaN(Date.parse(result.appraisedAt))).toBe(false);
      }),
    );

    it(
      "HW-SIG-1: evidence, events and acks from an unknown device are refused with VerificationError",
      withService(async (under) => {
        const stranger = testDevice(under.nowMs);
        await expect(under.service.onEvidence(stranger.evidence(1))).rejects.toBeInstanceOf(VerificationError);
        await expect(under.service.onEvent(stranger.event("evt-stranger-1"))).rejects.toBeInstanceOf(VerificationError);
        await expect(under.service.onAck(stranger.ack(1))).rejects.toBeInstanceOf(VerificationError);
      }),
    );

    it(
      "HW-SIG-1: evidence, events and acks signed by another key are refused with VerificationError",
      withService(async (under) => {
        const device = await enrolled(under);
        const other = generateKeyPair();
        await expect(under.service.onEvidence(device.evidence(1, other))).rejects.toBeInstanceOf(VerificationError);
        await expect(under.service.onEvent(device.event("evt-forged-01", other))).rejects.toBeInstanceOf(VerificationError);
        await expect(under.service.onAck(device.ack(1, other))).rejects.toBeInstanceOf(VerificationError);
      }),
    );

    it(
      "takes a signed event, also twice (stored once)",
      withService(async (under) => {
        const device = await enrolled(under);
        const event = device.event("evt-00000001");
        await under.service.onEvent(event);
        await under.service.onEvent(event);
      }),
    );
  });
}
