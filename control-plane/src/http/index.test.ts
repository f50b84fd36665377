import { generateKeyPairSync } from "node:crypto";
import pino from "pino";
import { Registry } from "prom-client";
import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, FreshnessError, NotFoundError, ValidationError, VerificationError } from "../errors.js";
import type { Role } from "../service/index.js";
import { createHttpApp, OPENAPI_PATH, ROLE_EXTENSION } from "./index.js";
import { DEVICE_ID, FakeControlPlaneService, OTHER_DEVICE_ID as OTHER_ID, TOKENS } from "./testing/fake-service.js";
import type { ServiceMethod } from "./testing/fake-service.js";

const SHA = "b".repeat(64);

function enrollBody(overrides: Record<string, unknown> = {}) {
  return {
    v: 1,
    type: "enroll",
    deviceId: DEVICE_ID,
    publicKey: "C".repeat(43),
    model: "S19",
    firmwareVersion: "1.2.0",
    agentVersion: "0.1.0",
    ts: 1_700_000_000_000,
    sig: "D".repeat(86),
    ...overrides,
  };
}

interface RouteCase {
  method: "GET" | "POST";
  path: string;
  role: Role;
  body?: unknown;
  status: number;
  call: ServiceMethod;
}

/** Every operator route with a valid request, the least role it needs, and what it must call. */
const ROUTES: RouteCase[] = [
  { method: "POST", path: "/api/v1/enrollment-tokens", role: "operator", body: { ttlMs: 60_000, maxUses: 5, label: "rack 7" }, status: 201, call: "createEnrollmentToken" },
  { method: "POST", path: "/api/v1/api-tokens", role: "admin", body: { role: "viewer", label: "grafana" }, status: 201, call: "createApiToken" },
  { method: "GET", path: "/api/v1/api-tokens", role: "admin", status: 200, call: "listApiTokens" },
  { method: "POST", path: "/api/v1/api-tokens/tok_0123abcd/revoke", role: "admin", body: { reason: "leaked" }, status: 200, call: "revokeApiToken" },
  { method: "GET", path: "/api/v1/enrollment-tokens", role: "admin", status: 200, call: "listEnrollmentTokens" },
  { method: "POST", path: "/api/v1/enrollment-tokens/enr_0123abcd/revoke", role: "admin", body: {}, status: 200, call: "revokeEnrollmentToken" },
  { method: "GET", path: "/api/v1/devices?containment=quarantined&limit=5", role: "viewer", status: 200, call: "listDevices" },
  { method: "POST", path: "/api/v1/devices/preauthorize", role: "operator", body: { publicKey: "E".repeat(43), model: "S19" }, status: 201, call: "preauthorizeDevice" },
  { method: "GET", path: `/api/v1/devices/${DEVICE_ID}`, role: "viewer", status: 200, call: "getDevice" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/accept`, role: "operator", body: { reason: "racked" }, status: 200, call: "acceptDevice" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/reject`, role: "operator", body: {}, status: 200, call: "rejectDevice" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/revoke`, role: "admin", body: { reason: "sold" }, status: 200, call: "revokeDevice" },
  { method: "GET", path: `/api/v1/devices/${DEVICE_ID}/history?limit=10`, role: "viewer", status: 200, call: "history" },
  { method: "GET", path: `/api/v1/devices/${DEVICE_ID}/commands`, role: "viewer", status: 200, call: "listCommands" },
  { method: "GET", path: `/api/v1/devices/${DEVICE_ID}/events?limit=50`, role: "viewer", status: 200, call: "listEvents" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/attest`, role: "operator", status: 202, call: "attestNow" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/quarantine`, role: "operator", body: { reason: "pool hijack" }, status: 202, call: "quarantine" },
  { method: "POST", path: `/api/v1/devices/${DEVICE_ID}/release`, role: "operator", body: { reason: "cleaned" }, status: 202, call: "release" },
  { method: "POST", path: "/api/v1/quarantine", role: "operator", body: { deviceIds: [DEVICE_ID, OTHER_ID], reason: "rack 7" }, status: 202, call: "quarantine" },
  { method: "POST", path: "/api/v1/release", role: "operator", body: { deviceIds: [DEVICE_ID, OTHER_ID], reason: "rack 7" }, status: 202, call: "release" },
  { method: "GET", path: "/api/v1/reference-values?model=S19", role: "viewer", status: 200, call: "listReferenceValues" },
  {
    method: "POST",
    path: "/api/v1/reference-values",
    role: "operator",
    body: { model: "S19", firmwareVersion: "1.2.0", measurements: [{ path: "/usr/bin/bmminer", sha256: SHA, size: 1, claim: "executables" }] },
    status: 201,
    call: "registerReferenceValues",
  },
  { method: "POST", path: "/api/v1/reference-values/capture", role: "operator", body: { deviceId: DEVICE_ID }, status: 201, call: "captureReferenceValues" },
  { method: "POST", path: "/api/v1/reference-values/ref-42/approve", role: "admin", status: 200, call: "approveReferenceValues" },
  { method: "GET", path: "/api/v1/audit?limit=20&offset=40", role: "admin", status: 200, call: "listAudit" },
];

const ROLES: Role[] = ["viewer", "operator", "admin"];
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

function setup(options: { maxBodyBytes?: number } = {}) {
  const service = new FakeControlPlaneService();
  const logLines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void logLines.push(line) });
  const registry = new Registry();
  const app = createHttpApp({ service, logger, registry, version: "9.9.9", ...options });
  const request = (method: string, path: string, init: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
    let body: string | undefined = init.raw;
    if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers["content-type"] ??= "application/json";
    }
    return app.request(path, { method, headers, ...(body === undefined ? {} : { body }) });
  };
  return { service, app, request, logLines, registry };
}

let ctx: ReturnType<typeof setup>;
beforeEach(() => {
  ctx = setup();
});

async function errorOf(res: Response) {
  const json = (await res.json()) as { error: { code: string; message: string; field?: string } };
  return json.error;
}

describe("authentication and roles (HW-HTTP-1)", () => {
  for (const route of ROUTES) {
    const name = `${route.method} ${route.path}`;

    it(`${name}: 401 without a token, with WWW-Authenticate, no service call`, async () => {
      const res = await ctx.request(route.method, route.path, { body: route.body });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect((await errorOf(res)).code).toBe("unauthorized");
      expect(ctx.service.calls).toEqual([]);
    });

    it(`${name}: 401 with an unknown token`, async () => {
      const res = await ctx.request(route.method, route.path, { token: "not-a-real-token", body: route.body });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(ctx.service.domainCalls()).toEqual([]);
    });

    for (const role of ROLES) {
      const allowed = RANK[role] >= RANK[route.role];
      it(`${name}: ${role} -> ${allowed ? route.status : 403}`, async () => {
        const res = await ctx.request(route.method, route.path, { token: TOKENS[role], body: route.body });
        if (!allowed) {
          expect(res.status).toBe(403);
          expect((await errorOf(res)).code).toBe("forbidden");
          expect(ctx.service.domainCalls()).toEqual([]);
          return;
        }
        expect(res.status, await res.clone().text()).toBe(route.status);
        const calls = ctx.service.domainCalls();
        expect(calls.map((c) => c.method)).toEqual([route.call]);
      });
    }
  }

  it("accepts the scheme name in any case and refuses other schemes", async () => {
    const lower = await ctx.app.request("/api/v1/audit", { headers: { authorization: `bearer ${TOKENS.admin}` } });
    expect(lower.status).toBe(200);
    const basic = await ctx.app.request("/api/v1/audit", { headers: { authorization: `Basic ${TOKENS.admin}` } });
    expect(basic.status).toBe(401);
  });

  it("passes the principal as an operator actor and resolves the token on every request (no cache)", async () => {
    await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/quarantine`, { token: TOKENS.operator, body: { reason: "r" } });
    await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/quarantine`, { token: TOKENS.operator, body: { reason: "r" } });
    expect(ctx.service.callsOf("authenticateApiToken")).toHaveLength(2);
    const [actor, ids, reason] = ctx.service.callsOf("quarantine")[0]!.args;
    expect(actor).toEqual({ kind: "operator", id: "tok-operator", role: "operator" });
    expect(ids).toEqual([DEVICE_ID]);
    expect(reason).toBe("r");
  });

  it("never logs tokens", async () => {
    await ctx.request("GET", "/api/v1/devices", { token: TOKENS.admin });
    await ctx.request("GET", "/api/v1/devices", { token: "secret-unknown-token" });
    const log = ctx.logLines.join("\n");
    expect(log).toContain('"path":"/api/v1/devices"');
    expect(log).not.toContain(TOKENS.admin);
    expect(log).not.toContain("secret-unknown-token");
  });
});

describe("bounded logging (HW-LOG-1)", () => {
  it("clips a 20 KB request path (any route, no token) in the request log line", async () => {
    const res = await ctx.request("GET", `/api/v1/${"z".repeat(20_000)}`);
    expect(res.status).toBe(404);
    const line = ctx.logLines.find((l) => l.includes('"msg":"request"'));
    expect(line).toBeDefined();
    expect(line!.length).toBeLessThan(1_000);
    expect(line).toContain("(20008 chars)");
  });
});

describe("validation (HW-HTTP-2): 400 naming the field, no service call", () => {
  const cases: Array<{ name: string; method: string; path: string; body?: unknown; raw?: string; contentType?: string; field: string }> = [
    { name: "bad device id in path", method: "GET", path: "/api/v1/devices/not-a-device", field: "deviceId" },
    { name: "upper-case device id in path", method: "POST", path: "/api/v1/devices/hw-0123456789ABCDEF01234567/quarantine", body: { reason: "x" }, field: "deviceId" },
    { name: "missing reason", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/quarantine`, body: {}, field: "reason" },
    { name: "empty reason", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/release`, body: { reason: "" }, field: "reason" },
    { name: "unknown body field", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/quarantine`, body: { reason: "x", reasn: "y" }, field: "reasn" },
    { name: "bad id in bulk", method: "POST", path: "/api/v1/quarantine", body: { deviceIds: [DEVICE_ID, "hw-1"], reason: "x" }, field: "deviceIds.1" },
    { name: "empty bulk", method: "POST", path: "/api/v1/release", body: { deviceIds: [], reason: "x" }, field: "deviceIds" },
    { name: "limit 0", method: "GET", path: "/api/v1/devices?limit=0", field: "limit" },
    { name: "limit over 1000", method: "GET", path: "/api/v1/devices?limit=1001", field: "limit" },
    { name: "limit not a number", method: "GET", path: `/api/v1/devices/${DEVICE_ID}/history?limit=ten`, field: "limit" },
    { name: "negative offset", method: "GET", path: "/api/v1/audit?offset=-1", field: "offset" },
    { name: "unknown enum in query", method: "GET", path: "/api/v1/devices?enrollment=maybe", field: "enrollment" },
    { name: "unknown role", method: "POST", path: "/api/v1/api-tokens", body: { role: "root", label: "x" }, field: "role" },
    { name: "ttl over 30 days", method: "POST", path: "/api/v1/enrollment-tokens", body: { ttlMs: 31 * 86_400_000 }, field: "ttlMs" },
    { name: "maxUses over cap", method: "POST", path: "/api/v1/enrollment-tokens", body: { maxUses: 100_001 }, field: "maxUses" },
    { name: "bad public key", method: "POST", path: "/api/v1/devices/preauthorize", body: { publicKey: "short", model: "S19" }, field: "publicKey" },
    {
      name: "bad measurement hash",
      method: "POST",
      path: "/api/v1/reference-values",
      body: { model: "S19", firmwareVersion: "1", measurements: [{ path: "/a", sha256: "zz", size: 1 }] },
      field: "measurements.0.sha256",
    },
    { name: "bad capture device id", method: "POST", path: "/api/v1/reference-values/capture", body: { deviceId: "hw-xyz" }, field: "deviceId" },
    { name: "malformed JSON", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/quarantine`, raw: "{not json", contentType: "application/json", field: "body" },
    { name: "wrong content type", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/quarantine`, raw: "reason=x", contentType: "text/plain", field: "content-type" },
    { name: "body without content type", method: "POST", path: `/api/v1/devices/${DEVICE_ID}/accept`, raw: '{"reason":"x"}', field: "content-type" },
  ];

  for (const testCase of cases) {
    it(testCase.name, async () => {
      const headers: Record<string, string> = {};
      if (testCase.contentType) headers["content-type"] = testCase.contentType;
      const res = await ctx.request(testCase.method, testCase.path, {
        token: TOKENS.admin,
        headers,
        ...(testCase.body === undefined ? {} : { body: testCase.body }),
        ...(testCase.raw === undefined ? {} : { raw: testCase.raw }),
      });
      expect(res.status).toBe(400);
      const error = await errorOf(res);
      expect(error.code).toBe("validation_error");
      expect(error.field).toBe(testCase.field);
      expect(ctx.service.domainCalls()).toEqual([]);
    });
  }

  it("enroll: a bad body names the field and never reaches the service", async () => {
    const res = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody({ deviceId: "hw-nothex" }) });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).field).toBe("deviceId");
    const extra = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody({ admin: true }) });
    expect((await errorOf(extra)).field).toBe("admin");
    expect(ctx.service.calls).toEqual([]);
  });

  // HW-MTLS-1: a client certificate only for a P-256 key; anything else is refused before the service runs.
  it.each([
    ["not PEM", "hello"],
    ["an Ed25519 key", generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString()],
    ["a P-384 key", generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey.export({ type: "spki", format: "pem" }).toString()],
  ])("enroll: tlsPublicKey that is %s is a 400 naming it, and nothing reaches the service", async (_what, tlsPublicKey) => {
    const res = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody({ tlsPublicKey }) });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).field).toBe("tlsPublicKey");
    expect(ctx.service.calls).toEqual([]);
  });

  it("applies documented defaults", async () => {
    const res = await ctx.request("POST", "/api/v1/enrollment-tokens", { token: TOKENS.operator });
    expect(res.status).toBe(201);
    expect(ctx.service.callsOf("createEnrollmentToken")[0]!.args[1]).toEqual({ ttlMs: 86_400_000, maxUses: 1 });
    await ctx.request("GET", "/api/v1/devices", { token: TOKENS.viewer });
    expect(ctx.service.callsOf("listDevices")[0]!.args[0]).toEqual({ limit: 100, offset: 0 });
    await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/accept`, { token: TOKENS.operator });
    expect(ctx.service.callsOf("acceptDevice")[0]!.args[2]).toBe("accept via API");
  });

  it("de-duplicates bulk device ids", async () => {
    const res = await ctx.request("POST", "/api/v1/quarantine", { token: TOKENS.operator, body: { deviceIds: [DEVICE_ID, DEVICE_ID, OTHER_ID], reason: "x" } });
    expect(res.status).toBe(202);
    expect(ctx.service.callsOf("quarantine")[0]!.args[1]).toEqual([DEVICE_ID, OTHER_ID]);
    expect(((await res.json()) as { commands: unknown[] }).commands).toHaveLength(2);
  });
});

describe("body limit: 413 before parsing, no service call", () => {
  it("refuses an oversized body by content-length", async () => {
    const big = JSON.stringify({ reason: "x".repeat(1024 * 1024) });
    const res = await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/quarantine`, {
      token: TOKENS.admin,
      raw: big,
      headers: { "content-type": "application/json", "content-length": String(big.length) },
    });
    expect(res.status).toBe(413);
    expect(res.headers.get("connection")).toBe("close");
    expect((await errorOf(res)).code).toBe("payload_too_large");
    expect(ctx.service.calls).toEqual([]);
  });

  it("refuses an oversized streamed enroll body (no content-length)", async () => {
    const small = setup({ maxBodyBytes: 4096 });
    const chunk = new TextEncoder().encode("x".repeat(1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 8) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await small.app.request("/api/v1/enroll", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(small.service.calls).toEqual([]);
  });

  it("rejects a configured limit below 1 KiB", () => {
    expect(() => setup({ maxBodyBytes: 10 })).toThrow(/maxBodyBytes/);
  });
});

describe("error mapping by class", () => {
  it("NotFoundError -> 404", async () => {
    ctx.service.failWith("getDevice", new NotFoundError("device", DEVICE_ID));
    const res = await ctx.request("GET", `/api/v1/devices/${DEVICE_ID}`, { token: TOKENS.viewer });
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({ code: "not_found", message: expect.stringContaining(DEVICE_ID) });
  });

  it("unknown routes -> 404 not_found", async () => {
    const res = await ctx.request("GET", "/api/v1/nope", { token: TOKENS.admin });
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("not_found");
    const wrongMethod = await ctx.request("DELETE", `/api/v1/devices/${DEVICE_ID}`, { token: TOKENS.admin });
    expect(wrongMethod.status).toBe(404);
    expect(ctx.service.calls).toEqual([]);
  });

  it("ConflictError -> 409", async () => {
    ctx.service.failWith("acceptDevice", new ConflictError("device hw-... is revoked; cannot accept"));
    const res = await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/accept`, { token: TOKENS.operator, body: {} });
    expect(res.status).toBe(409);
    expect((await errorOf(res)).code).toBe("conflict");
  });

  it("HW-FAULT-3: a database outage -> 503 unavailable with Retry-After, not a 500", async () => {
    const lost = Object.assign(new Error("Failed query: insert ..."), { cause: new Error("Connection terminated unexpectedly") });
    ctx.service.failWith("acceptDevice", lost);
    const res = await ctx.request("POST", `/api/v1/devices/${DEVICE_ID}/accept`, { token: TOKENS.operator, body: {} });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect((await errorOf(res)).code).toBe("unavailable");
  });

  it("service ValidationError -> 400 with its field", async () => {
    ctx.service.failWith("registerReferenceValues", new ValidationError("duplicate path", "measurements.1.path"));
    const res = await ctx.request("POST", "/api/v1/reference-values", { token: TOKENS.operator, body: ROUTES.find((r) => r.call === "registerReferenceValues")!.body });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ code: "validation_error", field: "measurements.1.path" });
  });

  it("unexpected errors -> 500 with a generic message, logged with the request id", async () => {
    ctx.service.failWith("listAudit", new Error("connection string postgres://secret@db"));
    const res = await ctx.request("GET", "/api/v1/audit", { token: TOKENS.admin, headers: { "x-request-id": "req-123" } });
    expect(res.status).toBe(500);
    const error = await errorOf(res);
    expect(error.code).toBe("internal");
    expect(error.message).not.toContain("secret");
    expect(res.headers.get("x-request-id")).toBe("req-123");
    const logged = ctx.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => entry.msg === "request failed");
    expect(logged).toMatchObject({ reqId: "req-123", level: 50 });
  });
});

describe("enroll", () => {
  it("200 for accepted and pending", async () => {
    for (const state of ["accepted", "pending"] as const) {
      ctx.service.enrollment = state;
      const res = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody() });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ deviceId: DEVICE_ID, enrollment: state });
    }
  });

  it("403 with the same body shape for rejected and revoked", async () => {
    for (const state of ["rejected", "revoked"] as const) {
      ctx.service.enrollment = state;
      const res = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody() });
      expect(res.status).toBe(403);
      expect(await res.json()).toEqual({ deviceId: DEVICE_ID, enrollment: state, commandPublicKey: expect.any(String) });
    }
  });

  it("VerificationError (and FreshnessError) -> 400 verification_failed", async () => {
    ctx.service.failWith("enroll", new VerificationError("bad signature"));
    const bad = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody() });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).code).toBe("verification_failed");
    ctx.service.failWith("enroll", new FreshnessError("ts too old"));
    const stale = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody() });
    expect((await errorOf(stale)).code).toBe("verification_failed");
  });

  it("needs no token", async () => {
    const res = await ctx.request("POST", "/api/v1/enroll", { body: enrollBody({ enrollmentToken: "tok" }) });
    expect(res.status).toBe(200);
    expect(ctx.service.callsOf("authenticateApiToken")).toEqual([]);
    expect(ctx.service.callsOf("enroll")[0]!.args[0]).toMatchObject({ enrollmentToken: "tok" });
  });
});

describe("system routes", () => {
  it("healthz", async () => {
    const res = await ctx.request("GET", "/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", version: "9.9.9", database: "up" });
  });

  it("HW-FAULT-3: with the database down, healthz stays 200 saying so and readyz is 503; both up again after", async () => {
    let database: "up" | "down" = "down";
    const app = createHttpApp({ service: new FakeControlPlaneService(), logger: pino({ level: "silent" }), registry: new Registry(), version: "9.9.9", probeDatabase: async () => database });
    const health = await app.request("/healthz");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "degraded", version: "9.9.9", database: "down" });
    expect((await app.request("/readyz")).status).toBe(503);
    database = "up";
    expect(await (await app.request("/healthz")).json()).toEqual({ status: "ok", version: "9.9.9", database: "up" });
    expect((await app.request("/readyz")).status).toBe(200);
  });

  it("metrics expose the request histogram by matched route", async () => {
    await ctx.request("GET", `/api/v1/devices/${DEVICE_ID}`, { token: TOKENS.viewer });
    await ctx.request("GET", "/nowhere/at/all");
    const res = await ctx.request("GET", "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain('hashward_http_request_duration_seconds_count{method="GET",route="/api/v1/devices/:deviceId",status="200"} 1');
    expect(text).toContain('route="unmatched",status="404"');
    expect(text).not.toContain(DEVICE_ID);
  });

  it("two apps can share one registry", () => {
    const registry = new Registry();
    const service = new FakeControlPlaneService();
    const logger = pino({ level: "silent" });
    createHttpApp({ service, logger, registry, version: "1" });
    expect(() => createHttpApp({ service, logger, registry, version: "1" })).not.toThrow();
  });
});

describe("OpenAPI 3.1 document", () => {
  type Operation = { security?: Array<Record<string, string[]>>; [ROLE_EXTENSION]?: string; responses: Record<string, unknown> };
  type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } };

  async function document(): Promise<Document> {
    const res = await ctx.request("GET", OPENAPI_PATH);
    expect(res.status).toBe(200);
    return (await res.json()) as Document;
  }

  const openapiPath = (path: string) =>
    path
      .split("?")[0]!
      .replace(DEVICE_ID, "{deviceId}")
      .replace(/reference-values\/ref-42\//, "reference-values/{id}/")
      .replace(/-tokens\/(tok|enr)_0123abcd\//, "-tokens/{id}/");

  it("lists every operator route with bearer security and its role", async () => {
    const doc = await document();
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    for (const route of ROUTES) {
      const operation = doc.paths[openapiPath(route.path)]?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.path}`).toBeDefined();
      expect(operation!.security).toEqual([{ bearerAuth: [] }]);
      expect(operation![ROLE_EXTENSION]).toBe(route.role);
      expect(Object.keys(operation!.responses)).toEqual(expect.arrayContaining([String(route.status), "400", "401", "403"]));
    }
  });

  it("marks public routes as such", async () => {
    const doc = await document();
    for (const [method, path] of [["post", "/api/v1/enroll"], ["get", "/healthz"], ["get", "/readyz"], ["get", "/metrics"], ["get", OPENAPI_PATH]] as const) {
      const operation = doc.paths[path]?.[method];
      expect(operation, `${method} ${path}`).toBeDefined();
      expect(operation!.security).toEqual([]);
      expect(operation![ROLE_EXTENSION]).toBe("none");
    }
  });

  it("documents nothing that is not routed, and routes nothing undocumented", async () => {
    const doc = await document();
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const routed = new Set([
      ...ROUTES.map((r) => `${r.method} ${openapiPath(r.path)}`),
      "POST /api/v1/enroll",
      "GET /healthz",
      "GET /readyz",
      "GET /metrics",
      `GET ${OPENAPI_PATH}`,
    ]);
    expect(new Set(documented)).toEqual(routed);
    const appRoutes = new Set(
      ctx.app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
    );
    expect(appRoutes).toEqual(routed);
  });
});
