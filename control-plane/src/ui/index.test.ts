/**
 * The dashboard's security rules through the HTTP app and the real service, on every database (PGlite, and
 * PostgreSQL when HASHWARD_TEST_DATABASE_URL is set): HW-UI-1 (sessions), HW-UI-2 (CSRF + Origin),
 * HW-UI-3 (CSP), HW-UI-4 (the API's roles, decision for decision). The browser flows are test/e2e/dashboard.test.ts.
 */
import { createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair, toBase64Url } from "../../../shared/crypto/index.js";
import { telemetrySamples, uiSessions, type Database } from "../db/index.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { createHttpApp } from "../http/index.js";
import { createServices, type Services } from "../service/index.js";
import { pruneDashboardData, telemetryHistory } from "./queries.js";

const OPTIONS = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated" as const };
const ORIGIN = "http://plane.test";
const SESSION_TTL_MS = 3_600_000;

onEveryDatabase("dashboard", (backend, open) => {
  describe(`dashboard sessions, CSRF, CSP and roles (HW-UI-1..4, ${backend})`, () => {
    let close: () => Promise<void>;
    let services: Services;
    let db: Database;
    let app: ReturnType<typeof createHttpApp>;
    let clock = Date.UTC(2026, 0, 1);
    let admin: string;
    const tokens: Record<string, { id: string; token: string }> = {};
    const rolloutCalls: unknown[][] = [];
    const rolloutView = {
      id: "ro_1", targetName: "fw-s19-2024.07", version: "2024.07", selector: {}, groups: [{ size: 2 }, { percent: 100 }], successThreshold: 90, errorThreshold: 10,
      state: "running", currentGroup: 0, reason: null, createdBy: { kind: "operator", id: "x" }, createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-01T00:00:00.000Z", total: 5,
      groupStatus: [
        { index: 0, size: 2, waiting: 0, inProgress: 1, succeeded: 1, failed: 0, cancelled: 0 },
        { index: 1, size: 3, waiting: 3, inProgress: 0, succeeded: 0, failed: 0, cancelled: 0 },
      ],
    };
    const rollouts = {
      list: async () => [rolloutView],
      pause: async (...args: unknown[]) => (rolloutCalls.push(["pause", ...args]), rolloutView),
      resume: async (...args: unknown[]) => (rolloutCalls.push(["resume", ...args]), rolloutView),
      cancel: async (...args: unknown[]) => (rolloutCalls.push(["cancel", ...args]), rolloutView),
    };

    const api = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await app.request(path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
    };
    /** A browser-like request to the dashboard: cookie, Origin, form body. */
    const ui = (method: string, path: string, opts: { cookie?: string; origin?: string | null; form?: Record<string, string> } = {}) => {
      const headers: Record<string, string> = { host: "plane.test" };
      if (opts.cookie) headers.cookie = `hashward_session=${opts.cookie}`;
      if (opts.origin !== null) headers.origin = opts.origin ?? ORIGIN;
      if (opts.form) headers["content-type"] = "application/x-www-form-urlencoded";
      return app.request(`${ORIGIN}${path}`, { method, headers, ...(opts.form ? { body: new URLSearchParams(opts.form).toString() } : {}) });
    };
    async function signIn(token: string): Promise<{ cookie: string; csrf: string; setCookie: string }> {
      const res = await ui("POST", "/ui/login", { form: { token } });
      expect(res.status).toBe(303);
      const setCookie = res.headers.get("set-cookie") ?? "";
      const cookie = /hashward_session=([^;]+)/.exec(setCookie)?.[1] ?? "";
      const page = await (await ui("GET", "/ui/", { cookie })).text();
      const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? "";
      return { cookie, csrf, setCookie };
    }
    async function newDevice(): Promise<string> {
      const created = await services.service.preauthorizeDevice({ kind: "system", id: "test" }, { publicKey: toBase64Url(generateKeyPair().publicKey), model: "S19" });
      return created.deviceId;
    }

    beforeAll(async () => {
      const harness = await open();
      db = harness.db as Database;
      const publisher = { publish: async () => undefined, isConnected: () => false };
      services = createServices({ db: harness.db, publisher, commandKey: generateKeyPair(), logger: pino({ level: "silent" }), now: () => clock, options: OPTIONS });
      close = async () => {
        await services.close();
        await harness.close();
      };
      app = createHttpApp({
        service: services.service,
        logger: pino({ level: "silent" }),
        registry: new Registry(),
        version: "test",
        dashboard: { db, secure: false, sessionTtlMs: SESSION_TTL_MS, now: () => clock },
        // Rollouts through a stand-in service: the dashboard's part is what is shown and what is called.
        updates: { tuf: { listTargets: async () => [{ name: "fw-s19-2024.07" }] } as never, rollouts: rollouts as never },
      });
      admin = (await services.ensureAdminToken())!;
      for (const role of ["viewer", "operator", "admin"] as const) tokens[role] = (await api("POST", "/api/v1/api-tokens", admin, { role, label: `ui ${role}` })).body;
    });
    afterAll(async () => {
      await close?.();
    });

    it("HW-UI-1: sign-in opens a server-side session in an HttpOnly SameSite=Strict cookie; only its hash is stored", async () => {
      const { cookie, setCookie } = await signIn(tokens.viewer!.token);
      expect(setCookie).toMatch(/HttpOnly/);
      expect(setCookie).toMatch(/SameSite=Strict/);
      expect(setCookie).toMatch(/Path=\//);
      expect(cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(cookie).not.toContain(tokens.viewer!.token);
      expect(await db.select().from(uiSessions).where(eq(uiSessions.idHash, cookie))).toEqual([]);
      const stored = await db.select().from(uiSessions).where(eq(uiSessions.idHash, createHash("sha256").update(cookie).digest("hex")));
      expect(stored).toHaveLength(1);
      expect(stored[0]!.tokenId).toBe(tokens.viewer!.id);
      expect((await ui("GET", "/ui/", { cookie })).status).toBe(200);
    });

    it("HW-UI-1: a bad token opens nothing; no session, a forged or expired cookie, or a revoked token go back to sign-in", async () => {
      const before = (await db.select().from(uiSessions)).length;
      const bad = await ui("POST", "/ui/login", { form: { token: "hwa_not-a-token" } });
      expect(bad.status).toBe(401);
      expect(bad.headers.get("set-cookie")).toBeNull();
      expect((await db.select().from(uiSessions)).length).toBe(before);

      expect((await ui("GET", "/ui/")).headers.get("location")).toBe("/ui/login");
      expect((await ui("GET", "/ui/", { cookie: "A".repeat(43) })).headers.get("location")).toBe("/ui/login");
      expect((await ui("POST", "/ui/logout", { form: {} })).status).toBe(401);

      const expiring = await signIn(tokens.viewer!.token);
      clock += SESSION_TTL_MS;
      expect((await ui("GET", "/ui/", { cookie: expiring.cookie })).headers.get("location")).toBe("/ui/login");

      const created = (await api("POST", "/api/v1/api-tokens", admin, { role: "operator", label: "to revoke" })).body;
      const session = await signIn(created.token);
      expect((await ui("GET", "/ui/", { cookie: session.cookie })).status).toBe(200);
      expect((await api("POST", `/api/v1/api-tokens/${created.id}/revoke`, admin, { reason: "test" })).status).toBe(200);
      expect((await ui("GET", "/ui/", { cookie: session.cookie })).headers.get("location")).toBe("/ui/login");

      const out = await signIn(tokens.viewer!.token);
      expect((await ui("POST", "/ui/logout", { cookie: out.cookie, form: { _csrf: out.csrf } })).status).toBe(303);
      expect((await ui("GET", "/ui/", { cookie: out.cookie })).headers.get("location")).toBe("/ui/login");
      const audit = await services.service.listAudit(50, 0);
      expect(audit.filter((e) => e.actor.id === tokens.viewer!.id).map((e) => e.action)).toEqual(expect.arrayContaining(["ui.sign-in", "ui.sign-out"]));
    });

    it("prunes telemetry samples past the retention; a live session stays", async () => {
      const deviceId = await newDevice();
      await db.insert(telemetrySamples).values([
        { deviceId, at: new Date(clock - 2 * 86_400_000), hashrateGhs: 1 },
        { deviceId, at: new Date(clock), hashrateGhs: 2 },
      ]);
      const live = await signIn(tokens.viewer!.token);
      const pruned = await pruneDashboardData(db, new Date(clock - 86_400_000), new Date(clock - 1));
      expect(pruned.samples).toBe(1);
      expect((await telemetryHistory(db, deviceId, new Date(0))).map((s) => s.hashrateGhs)).toEqual([2]);
      expect((await ui("GET", "/ui/", { cookie: live.cookie })).status).toBe(200);
    });

    it("HW-UI-2: a change without the session's CSRF token, or from another or no Origin, is refused and writes nothing", async () => {
      const deviceId = await newDevice();
      const { cookie, csrf } = await signIn(tokens.operator!.token);
      const form = { _csrf: csrf, confirmed: "yes", reason: "test" };
      const refused = [
        await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form: { confirmed: "yes", reason: "test" } }),
        await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form: { ...form, _csrf: "x".repeat(43) } }),
        await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form, origin: "http://evil.test" }),
        await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form, origin: null }),
      ];
      expect(refused.map((r) => r.status)).toEqual([403, 403, 403, 403]);
      // Another session's token is no good either: the token is bound to its session.
      const other = await signIn(tokens.operator!.token);
      expect((await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form: { ...form, _csrf: other.csrf } })).status).toBe(403);
      expect((await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form: { _csrf: csrf, reason: "test" } })).status).toBe(400);
      expect((await services.service.getDevice(deviceId)).containment).toBe("none");
      expect(await services.service.listCommands(deviceId, 10)).toEqual([]);
      // Sign-in checks the Origin too (no login CSRF).
      expect((await ui("POST", "/ui/login", { form: { token: tokens.viewer!.token }, origin: "http://evil.test" })).status).toBe(403);

      const ok = await ui("POST", `/ui/devices/${deviceId}/quarantine`, { cookie, form });
      expect(ok.status).toBe(303);
      expect((await services.service.getDevice(deviceId)).containment).toBe("quarantine_requested");
    });

    it("a malformed or non-form body is a 400 that changes nothing, signed in or not (never a 500)", async () => {
      const deviceId = await newDevice();
      const { cookie, csrf } = await signIn(tokens.operator!.token);
      const raw = (path: string, contentType: string, body: string, withCookie: boolean) =>
        app.request(`${ORIGIN}${path}`, {
          method: "POST",
          headers: { host: "plane.test", origin: ORIGIN, "content-type": contentType, "x-csrf-token": csrf, ...(withCookie ? { cookie: `hashward_session=${cookie}` } : {}) },
          body,
        });
      const bodies: Array<[string, string]> = [
        ["multipart/form-data", "xxx"], // no boundary
        ["multipart/form-data; boundary=b", `--b\r\ncontent-disposition: form-data; name="reason"\r\n\r\ntest`], // no closing boundary
        ["application/json", JSON.stringify({ token: tokens.operator!.token, reason: "test", confirmed: "yes" })],
        ["text/plain", "token=x"],
      ];
      for (const [type, body] of bodies) {
        expect((await raw("/ui/login", type, body, false)).status, `login ${type}`).toBe(400);
        expect((await raw(`/ui/devices/${deviceId}/quarantine`, type, body, true)).status, `quarantine ${type}`).toBe(400);
      }
      expect((await services.service.getDevice(deviceId)).containment).toBe("none");
      expect(await services.service.listCommands(deviceId, 10)).toEqual([]);
    });

    it("HW-UI-3: every page carries a strict Content-Security-Policy and has no inline script", async () => {
      const deviceId = await newDevice();
      const { cookie } = await signIn(admin);
      for (const path of ["/ui/login", "/ui/", "/ui/pending", `/ui/devices/${deviceId}`, "/ui/reference-values", "/ui/rollouts", "/ui/audit", "/ui/tokens"]) {
        const res = await ui("GET", path, { cookie });
        expect(res.status, path).toBe(200);
        const csp = res.headers.get("content-security-policy") ?? "";
        for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'"]) expect(csp, path).toContain(directive);
        expect(csp, path).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
        const html = await res.text();
        expect(html, path).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
        expect(html, path).not.toMatch(/\sstyle=|\son[a-z]+=/);
      }
    });

    it("HW-UI-4: every device action is allowed or refused for each role exactly as the API decides", async () => {
      const actions = ["attest", "quarantine", "release", "accept", "reject", "revoke"] as const;
      for (const role of ["viewer", "operator", "admin"] as const) {
        const { cookie, csrf } = await signIn(tokens[role]!.token);
        for (const action of actions) {
          const deviceId = await newDevice();
          const apiStatus = (await api("POST", `/api/v1/devices/${deviceId}/${action}`, tokens[role]!.token, action === "attest" ? undefined : { reason: "api" })).status;
          const twin = await newDevice();
          const uiStatus = (await ui("POST", `/ui/devices/${twin}/${action}`, { cookie, form: { _csrf: csrf, confirmed: "yes", reason: "ui" } })).status;
          // Same decision: done (the dashboard redirects back), or the same refusal status (403 role, 409 state).
          expect({ role, action, outcome: uiStatus === 303 ? "done" : uiStatus }).toEqual({ role, action, outcome: apiStatus < 300 ? "done" : apiStatus });
        }
        // Pages follow the API's read roles: the audit log and the token list are admin-only there.
        for (const page of ["/ui/audit", "/ui/tokens"]) {
          expect((await ui("GET", page, { cookie })).status === 403, `${role} ${page}`).toBe(role !== "admin");
        }
      }
    });

    it("revokes an API token from the tokens page only when confirmed, as an admin, with the reason", async () => {
      const created = (await api("POST", "/api/v1/api-tokens", admin, { role: "viewer", label: "revoked from the page" })).body;
      const statusOf = async () => (await api("GET", "/api/v1/api-tokens", admin)).body.tokens.find((t: { id: string }) => t.id === created.id).status;
      const operator = await signIn(tokens.operator!.token);
      expect((await ui("POST", `/ui/tokens/${created.id}/revoke`, { cookie: operator.cookie, form: { _csrf: operator.csrf, confirmed: "yes", reason: "leaked" } })).status).toBe(403);
      const page = await signIn(admin);
      expect((await ui("POST", `/ui/tokens/${created.id}/revoke`, { cookie: page.cookie, form: { _csrf: page.csrf, reason: "leaked" } })).status).toBe(400);
      expect(await statusOf()).toBe("active");
      const done = await ui("POST", `/ui/tokens/${created.id}/revoke`, { cookie: page.cookie, form: { _csrf: page.csrf, confirmed: "yes", reason: "leaked" } });
      expect(done.status).toBe(303);
      expect(done.headers.get("location")).toBe(`/ui/tokens?notice=${encodeURIComponent(`revoked ${created.id}`)}`);
      expect(await statusOf()).toBe("revoked");
      const audit = (await api("GET", "/api/v1/audit?limit=5", admin)).body.entries;
      expect(audit.find((e: { action: string; target: string }) => e.action === "api-token.revoke" && e.target === created.id)).toMatchObject({ detail: { reason: "leaked" } });
    });

    it("rollouts: per-group progress, and pause/resume/cancel only for the API's role, with the reason", async () => {
      const viewer = await signIn(tokens.viewer!.token);
      const page = await (await ui("GET", "/ui/rollouts", { cookie: viewer.cookie })).text();
      expect(page).toContain("fw-s19-2024.07");
      expect(page).toMatch(/<progress max="2" value="1">/);
      expect(page).toMatch(/<progress max="3" value="0">/);
      expect(page).not.toContain('action="/ui/rollouts/ro_1/pause"');
      const refused = await ui("POST", "/ui/rollouts/ro_1/pause", { cookie: viewer.cookie, form: { _csrf: viewer.csrf, confirmed: "yes", reason: "viewer" } });
      expect(refused.status).toBe(403);
      expect(rolloutCalls).toEqual([]);

      const operator = await signIn(tokens.operator!.token);
      expect(await (await ui("GET", "/ui/rollouts", { cookie: operator.cookie })).text()).toContain('action="/ui/rollouts/ro_1/pause"');
      const form = { _csrf: operator.csrf, confirmed: "yes", reason: "error rate on group 1" };
      expect((await ui("POST", "/ui/rollouts/ro_1/pause", { cookie: operator.cookie, form })).status).toBe(303);
      expect((await ui("POST", "/ui/rollouts/ro_1/resume", { cookie: operator.cookie, form })).status).toBe(303);
      expect((await ui("POST", "/ui/rollouts/ro_1/cancel", { cookie: operator.cookie, form: { ...form, reason: "" } })).status).toBe(400);
      expect(rolloutCalls).toEqual([
        ["pause", { kind: "operator", id: tokens.operator!.id, role: "operator" }, "ro_1", "error rate on group 1"],
        ["resume", { kind: "operator", id: tokens.operator!.id, role: "operator" }, "ro_1"],
      ]);
    });
  });
});
