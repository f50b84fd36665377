/**
 * HW-TOKEN-1 end to end through the HTTP app and the real service on every database: tokens are listed without
 * secrets, revoked or expired tokens are refused on their very next request, every change is audited, and only
 * admins list or revoke.
 */
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../shared/crypto/index.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { createServices, type Services } from "../service/index.js";
import { createHttpApp } from "./index.js";

const OPTIONS = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated" as const };

onEveryDatabase("token lifecycle", (backend, open) => {
  describe(`API and enrollment tokens: list, revoke, expiry (HW-TOKEN-1, ${backend})`, () => {
    let close: () => Promise<void>;
    let services: Services;
    let app: ReturnType<typeof createHttpApp>;
    let clock = Date.UTC(2026, 0, 1);
    let admin: string;

    const call = async (method: string, path: string, token: string | null, body?: unknown) => {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await app.request(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      const text = await res.text();
      return { status: res.status, text, body: text ? (JSON.parse(text) as any) : undefined };
    };

    async function newApiToken(role: "viewer" | "operator" | "admin", ttlMs?: number): Promise<{ id: string; token: string }> {
      const created = await call("POST", "/api/v1/api-tokens", admin, { role, label: `${role} token`, ...(ttlMs === undefined ? {} : { ttlMs }) });
      expect(created.status).toBe(201);
      return created.body as { id: string; token: string };
    }

    beforeAll(async () => {
      const harness = await open();
      const publisher = { publish: async () => undefined, isConnected: () => false };
      services = createServices({ db: harness.db, publisher, commandKey: generateKeyPair(), logger: pino({ level: "silent" }), now: () => clock, options: OPTIONS });
      close = async () => {
        await services.close();
        await harness.close();
      };
      app = createHttpApp({ service: services.service, logger: pino({ level: "silent" }), registry: new Registry(), version: "test" });
      admin = (await services.ensureAdminToken())!;
    });
    afterAll(async () => {
      await close?.();
    });

    it("lists API tokens with id, role, times and status, never a secret or hash", async () => {
      const viewer = await newApiToken("viewer");
      const expiring = await newApiToken("operator", 3_600_000);
      const listed = await call("GET", "/api/v1/api-tokens", admin);
      expect(listed.status).toBe(200);
      const byId = new Map((listed.body.tokens as Array<{ id: string }>).map((t) => [t.id, t]));
      expect(byId.get(viewer.id)).toMatchObject({ role: "viewer", status: "active", expiresAt: null, revokedAt: null, createdAt: expect.any(String) });
      expect(byId.get(expiring.id)).toMatchObject({ role: "operator", expiresAt: new Date(clock + 3_600_000).toISOString() });
      for (const secret of [viewer.token, expiring.token, admin]) expect(listed.text).not.toContain(secret.slice(4));
      expect(listed.text).not.toMatch(/[0-9a-f]{64}/); // no token hash either
    });

    it("a revoked API token gets 401 on its very next request; the revoke is audited", async () => {
      const viewer = await newApiToken("viewer");
      expect((await call("GET", "/api/v1/devices", viewer.token)).status).toBe(200);
      const revoked = await call("POST", `/api/v1/api-tokens/${viewer.id}/revoke`, admin, { reason: "leaked in a chat" });
      expect(revoked.status).toBe(200);
      expect(revoked.body).toMatchObject({ id: viewer.id, status: "revoked", revokedAt: new Date(clock).toISOString() });
      const next = await call("GET", "/api/v1/devices", viewer.token);
      expect(next.status).toBe(401);
      const audit = await call("GET", "/api/v1/audit?limit=50", admin);
      expect(audit.body.entries).toContainEqual(
        expect.objectContaining({ action: "api-token.revoke", target: viewer.id, detail: expect.objectContaining({ reason: "leaked in a chat" }) }),
      );
      expect(audit.text).not.toContain(viewer.token);
      // Revoking again changes nothing and writes no second audit row.
      expect((await call("POST", `/api/v1/api-tokens/${viewer.id}/revoke`, admin)).status).toBe(200);
      const again = await call("GET", "/api/v1/audit?limit=50", admin);
      expect((again.body.entries as Array<{ action: string; target: string }>).filter((e) => e.action === "api-token.revoke" && e.target === viewer.id)).toHaveLength(1);
    });

    it("an API token made with ttlMs gets 401 from its expiry on, and is listed as expired", async () => {
      const operator = await newApiToken("operator", 60_000);
      expect((await call("GET", "/api/v1/devices", operator.token)).status).toBe(200);
      clock += 60_000;
      expect((await call("GET", "/api/v1/devices", operator.token)).status).toBe(401);
      const listed = await call("GET", "/api/v1/api-tokens", admin);
      expect((listed.body.tokens as Array<{ id: string; status: string; lastUsedAt: string | null }>).find((t) => t.id === operator.id)).toMatchObject({
        status: "expired",
        lastUsedAt: expect.any(String),
      });
      const audit = await call("GET", "/api/v1/audit?limit=50", admin);
      expect(audit.body.entries).toContainEqual(expect.objectContaining({ action: "api-token.create", target: operator.id }));
    });

    it("a revoked enrollment token enrolls nothing (409), is listed without its secret, and the revoke is audited", async () => {
      const created = await call("POST", "/api/v1/enrollment-tokens", admin, { ttlMs: 3_600_000, maxUses: 5, label: "rack 9" });
      const { id, token } = created.body as { id: string; token: string };
      const revoked = await call("POST", `/api/v1/enrollment-tokens/${id}/revoke`, admin, { reason: "rack cancelled" });
      expect(revoked.body).toMatchObject({ id, status: "revoked", uses: 0, maxUses: 5 });
      const keys = generateKeyPair();
      const deviceId = deviceIdFromPublicKey(keys.publicKey);
      const request = signObject(
        { v: 1 as const, type: "enroll" as const, deviceId, publicKey: toBase64Url(keys.publicKey), model: "S19", firmwareVersion: "1.0.0", agentVersion: "0.1.0", enrollmentToken: token, ts: clock },
        keys.privateKey,
      );
      const enrolled = await call("POST", "/api/v1/enroll", null, request);
      expect(enrolled.status).toBe(409);
      expect(enrolled.body.error.message).toContain("revoked");
      expect((await call("GET", `/api/v1/devices/${deviceId}`, admin)).status).toBe(404); // nothing written
      const listed = await call("GET", "/api/v1/enrollment-tokens", admin);
      expect((listed.body.tokens as Array<{ id: string }>).find((t) => t.id === id)).toMatchObject({ status: "revoked", label: "rack 9" });
      expect(listed.text).not.toContain(token.slice(4));
      const audit = await call("GET", "/api/v1/audit?limit=50", admin);
      expect(audit.body.entries).toContainEqual(expect.objectContaining({ action: "enrollment-token.revoke", target: id }));
    });

    it("viewer and operator get 403 on listing and revoking; an unknown id is 404, a malformed one 400", async () => {
      const target = await newApiToken("viewer");
      for (const role of ["viewer", "operator"] as const) {
        const { token } = await newApiToken(role);
        for (const [method, path] of [
          ["GET", "/api/v1/api-tokens"],
          ["GET", "/api/v1/enrollment-tokens"],
          ["POST", `/api/v1/api-tokens/${target.id}/revoke`],
          ["POST", "/api/v1/enrollment-tokens/enr_00/revoke"],
        ] as const) {
          expect((await call(method, path, token, method === "POST" ? {} : undefined)).status, `${role} ${method} ${path}`).toBe(403);
        }
      }
      expect((await call("GET", "/api/v1/devices", target.token)).status).toBe(200); // still valid: nothing was revoked
      expect((await call("POST", "/api/v1/api-tokens/tok_0123456789abcdef00/revoke", admin, {})).status).toBe(404);
      expect((await call("POST", "/api/v1/enrollment-tokens/enr_0123456789abcdef00/revoke", admin, {})).status).toBe(404);
      const malformed = await call("POST", "/api/v1/api-tokens/..%2Fetc/revoke", admin, {});
      expect([400, 404]).toContain(malformed.status);
      expect((await call("POST", "/api/v1/api-tokens/nope/revoke", admin, {})).body.error).toMatchObject({ code: "validation_error", field: expect.stringContaining("id") });
    });
  });
});
