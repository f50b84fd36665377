/**
 * The operator ControlPlaneService contract, run against the real service on the database and
 * against the HTTP tests' fake (http/testing/fake-service.ts) by service/operator.contract.test.ts: answers have
 * the shapes the HTTP layer serialises, unknown ids are NotFoundError (404), refused input is ValidationError
 * (400), so the HTTP tests' status codes hold for the real service too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../../shared/crypto/index.js";
import { ValidationError } from "../../../../shared/errors/index.js";
import { NotFoundError } from "../../errors.js";
import type { Actor, ControlPlaneService, Role } from "../types.js";

/** One implementation, opened once for the suite (every test uses devices of its own). */
export interface OperatorServiceUnderTest {
  service: ControlPlaneService;
  close(): Promise<void>;
}

const ADMIN: Actor = { kind: "operator", id: "tok_contract", role: "admin" };
/** A well-formed device id no implementation knows. */
const UNKNOWN_DEVICE = "hw-ffffffffffffffffffffffff";
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/;

/** Registers the contract suite for one implementation; `open` is called once, before the first test. */
export function operatorServiceContract(name: string, open: () => Promise<OperatorServiceUnderTest>): void {
  describe(`ControlPlaneService (operator) contract: ${name}`, () => {
    let opened: OperatorServiceUnderTest | undefined;
    beforeAll(async () => {
      opened = await open();
    });
    afterAll(() => opened?.close());
    const service = () => opened!.service;
    /** A pre-authorised (accepted) device of a fresh key. */
    const preauthorized = async () => {
      const publicKey = toBase64Url(generateKeyPair().publicKey);
      const view = await service().preauthorizeDevice(ADMIN, { publicKey, model: "S19" });
      return { view, publicKey };
    };

    it("pre-authorises a key as an accepted device named by its key, then finds it", async () => {
      const { view, publicKey } = await preauthorized();
      expect(view).toMatchObject({ deviceId: deviceIdFromPublicKey(Buffer.from(publicKey, "base64url")), publicKey, model: "S19", enrollment: "accepted" });
      const found = await service().getDevice(view.deviceId);
      expect(found).toMatchObject({ deviceId: view.deviceId, enrollment: "accepted", containment: expect.any(String), appraisal: expect.any(String) });
      expect(found.createdAt).toMatch(ISO);
      expect(Array.isArray(await service().history(view.deviceId, 10))).toBe(true);
      expect(Array.isArray(await service().listCommands(view.deviceId, 10))).toBe(true);
      expect(Array.isArray(await service().listEvents(view.deviceId, 10))).toBe(true);
      expect(Array.isArray(await service().listDevices({ limit: 10, offset: 0 }))).toBe(true);
    });

    it("HW-TRUST-3: quarantine and release answer one pending command per device", async () => {
      const { view } = await preauthorized();
      for (const action of ["quarantine", "release"] as const) {
        const commands = await service()[action](ADMIN, [view.deviceId], "contract");
        expect(commands).toHaveLength(1);
        expect(commands[0]).toMatchObject({ deviceId: view.deviceId, action, status: "pending", seq: expect.any(Number) });
        expect(commands[0]!.expiresAt).toMatch(ISO);
      }
    });

    it("an unknown device is a NotFoundError everywhere a device id is taken", async () => {
      const { view } = await preauthorized();
      const calls: [string, () => Promise<unknown>][] = [
        ["getDevice", () => service().getDevice(UNKNOWN_DEVICE)],
        ["acceptDevice", () => service().acceptDevice(ADMIN, UNKNOWN_DEVICE, "r")],
        ["rejectDevice", () => service().rejectDevice(ADMIN, UNKNOWN_DEVICE, "r")],
        ["revokeDevice", () => service().revokeDevice(ADMIN, UNKNOWN_DEVICE, "r")],
        ["history", () => service().history(UNKNOWN_DEVICE, 10)],
        ["listCommands", () => service().listCommands(UNKNOWN_DEVICE, 10)],
        ["listEvents", () => service().listEvents(UNKNOWN_DEVICE, 10)],
        ["attestNow", () => service().attestNow(ADMIN, UNKNOWN_DEVICE)],
        ["quarantine", () => service().quarantine(ADMIN, [view.deviceId, UNKNOWN_DEVICE], "r")],
        ["release", () => service().release(ADMIN, [UNKNOWN_DEVICE], "r")],
        ["captureReferenceValues", () => service().captureReferenceValues(ADMIN, UNKNOWN_DEVICE)],
      ];
      for (const [method, call] of calls) await expect(call(), method).rejects.toBeInstanceOf(NotFoundError);
    });

    it("unknown token and reference-set ids are NotFoundError", async () => {
      await expect(service().revokeApiToken(ADMIN, "tok_unknown", "r")).rejects.toBeInstanceOf(NotFoundError);
      await expect(service().revokeEnrollmentToken(ADMIN, "enr_unknown", "r")).rejects.toBeInstanceOf(NotFoundError);
      await expect(service().approveReferenceValues(ADMIN, "ref-unknown")).rejects.toBeInstanceOf(NotFoundError);
    });

    it("refuses malformed input with ValidationError", async () => {
      const refused: [string, () => Promise<unknown>][] = [
        ["preauthorize: short key", () => service().preauthorizeDevice(ADMIN, { publicKey: "short", model: "S19" })],
        ["preauthorize: no model", () => service().preauthorizeDevice(ADMIN, { publicKey: toBase64Url(generateKeyPair().publicKey), model: "" })],
        ["api token: role", () => service().createApiToken(ADMIN, { role: "root" as Role, label: "x" })],
        ["api token: ttl", () => service().createApiToken(ADMIN, { role: "viewer", label: "x", ttlMs: 0 })],
        ["enrollment token: ttl", () => service().createEnrollmentToken(ADMIN, { ttlMs: -1, maxUses: 1 })],
        ["enrollment token: uses", () => service().createEnrollmentToken(ADMIN, { ttlMs: 60_000, maxUses: 0 })],
        ["reference values: model", () => service().registerReferenceValues(ADMIN, { model: "", firmwareVersion: "1", measurements: [] })],
        ["reference values: version", () => service().registerReferenceValues(ADMIN, { model: "S19", firmwareVersion: "", measurements: [] })],
      ];
      for (const [what, call] of refused) await expect(call(), what).rejects.toBeInstanceOf(ValidationError);
    });

    it("HW-TOKEN-1: a created API token authenticates with its role until revoked; an unknown one never", async () => {
      expect(await service().authenticateApiToken("hwa_not-a-token")).toBeNull();
      const created = await service().createApiToken(ADMIN, { role: "viewer", label: "contract", ttlMs: 3_600_000 });
      expect(created).toMatchObject({ id: expect.any(String), token: expect.any(String), role: "viewer", label: "contract" });
      expect(created.expiresAt).toMatch(ISO);
      expect(await service().authenticateApiToken(created.token)).toEqual({ id: created.id, role: "viewer", label: "contract" });
      const revoked = await service().revokeApiToken(ADMIN, created.id, "contract");
      expect(revoked).toMatchObject({ id: created.id, status: "revoked" });
      expect(await service().authenticateApiToken(created.token)).toBeNull();
    });

    it("HW-TOKEN-1: an enrollment token is created with its limits and revoked by id", async () => {
      const created = await service().createEnrollmentToken(ADMIN, { ttlMs: 60_000, maxUses: 3, label: "rack 1" });
      expect(created).toMatchObject({ id: expect.any(String), token: expect.any(String), maxUses: 3 });
      expect(created.expiresAt).toMatch(ISO);
      expect(await service().revokeEnrollmentToken(ADMIN, created.id, "contract")).toMatchObject({ id: created.id, status: "revoked" });
    });

    it("registered reference values take effect at once (approved) with what was given", async () => {
      const measurements = [{ path: "/config/cgminer.conf", sha256: "c".repeat(64), size: 3 }];
      const set = await service().registerReferenceValues(ADMIN, { model: "S19-contract", firmwareVersion: "9.9.9", measurements });
      expect(set).toMatchObject({ model: "S19-contract", firmwareVersion: "9.9.9", status: "approved", measurements });
    });
  });
}
