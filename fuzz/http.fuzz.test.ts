/**
 * HW-FUZZ-1 / HW-HTTP-2 on the HTTP bodies of every route in the OpenAPI document (operator routes, enrollment and
 * the TUF repository), against the real services on an embedded PGlite database, in process (`app.request()`).
 * Valid seed bodies are mutated field-wise and byte-wise, sent with every kind of token, content type and path
 * parameter. Properties: the answer is never a 5xx; a refusal is one of 400/401/403/404/409/413/415/429 with the
 * error body; a refused request changes nothing in the database (every table's content digest is unchanged, but for
 * the token's last-used time, which the plane refreshes on any authenticated request).
 */
import { join } from "node:path";
import { sql } from "drizzle-orm";
import fc from "fast-check";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../control-plane/src/config/index.js";
import { openDatabase, type OpenedDatabase } from "../control-plane/src/db/index.js";
import { createHttpApp } from "../control-plane/src/http/index.js";
import { loadOrCreateCommandKey } from "../control-plane/src/keys/index.js";
import { createPolicyService } from "../control-plane/src/policy/index.js";
import { createUpdates } from "../control-plane/src/rollouts/updates.js";
import { createServices } from "../control-plane/src/service/index.js";
import type { DevicePublisher } from "../control-plane/src/service/index.js";
import { boundedAsync, deeplyNested, fuzzAsync, mutatedBytes, mutatedObject } from "./support.js";
import { loopbackPlaneEnv } from "../test/support/processes.js";
import { tempDirPool } from "../test/support/temp-dir.js";

const DEVICE = "hw-0123456789abcdef01234567";
const SHA = "b".repeat(64);
const REFUSALS = new Set([400, 401, 403, 404, 409, 413, 415, 429]);

/** A valid body per route (method + OpenAPI path); routes without one get `{}` as their seed. */
const SEEDS: Record<string, unknown> = {
  "POST /api/v1/enrollment-tokens": { ttlMs: 60_000, maxUses: 5, label: "rack 7" },
  "POST /api/v1/api-tokens": { role: "viewer", label: "grafana" },
  "POST /api/v1/devices/preauthorize": { publicKey: "E".repeat(43), model: "S19" },
  "POST /api/v1/devices/{deviceId}/accept": { reason: "racked" },
  "POST /api/v1/devices/{deviceId}/reject": {},
  "POST /api/v1/devices/{deviceId}/revoke": { reason: "sold" },
  "POST /api/v1/devices/{deviceId}/quarantine": { reason: "pool hijack" },
  "POST /api/v1/devices/{deviceId}/release": { reason: "cleaned" },
  "POST /api/v1/devices/{deviceId}/update": { targetName: "fw-s19-2.0.0" },
  "POST /api/v1/quarantine": { deviceIds: [DEVICE], reason: "rack 7" },
  "POST /api/v1/release": { deviceIds: [DEVICE], reason: "rack 7" },
  "POST /api/v1/reference-values": { model: "S19", firmwareVersion: "1.2.0", measurements: [{ path: "/usr/bin/bmminer", sha256: SHA, size: 1, claim: "executables" }] },
  "POST /api/v1/reference-values/capture": { deviceId: DEVICE },
  "PUT /api/v1/policies/pools": { scope: { model: "S19" }, allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["^farm\\.rig[0-9]+$"] },
  "PUT /api/v1/policies/network": { scope: {}, allowedHosts: ["ntp.example.com", "10.0.0.5:123"] },
  "PUT /api/v1/policies/indicators": { scope: {}, indicators: [{ id: "preload", kind: "file-present", path: "/etc/ld.so.preload", severity: "critical", description: "ld.so.preload" }] },
  "POST /api/v1/rollouts": { targetName: "fw-s19-2.0.0", selector: { model: "S19" }, groups: [{ size: 5 }, { percent: 25 }], successThreshold: 90, errorThreshold: 20 },
  "POST /api/v1/tuf/root": { signed: { _type: "root", version: 1 }, signatures: [] },
  "POST /api/v1/tuf/targets": { signed: { _type: "targets", version: 2, targets: {} }, signatures: [] },
  "POST /enroll": { v: 1, type: "enroll", deviceId: DEVICE, publicKey: "C".repeat(43), model: "S19", firmwareVersion: "1.2.0", agentVersion: "0.1.0", ts: 1_700_000_000_000, sig: "D".repeat(86) },
};

let app: ReturnType<typeof createHttpApp>;
let opened: OpenedDatabase;
const dirs = tempDirPool("fuzz-http");
let dataDir: string;
let tokens: Record<"admin" | "viewer" | "none" | "bogus", string | null>;
let routes: { method: string; path: string; hasBody: boolean }[] = [];
let tables: string[] = [];
const closers: (() => Promise<void>)[] = [];

/**
 * The database's next transaction id (pg_snapshot_xmax of the current snapshot; reading it assigns none). Every
 * transaction that writes takes an id, so an unchanged value means the request wrote nothing at all. One cheap
 * query per case; the full content digest (`contentDigest`) double-checks the fixed-input test below.
 */
async function fingerprint(): Promise<string> {
  const result = (await opened.db.execute(sql.raw("select pg_snapshot_xmax(pg_current_snapshot())::text as x"))) as unknown as { rows: { x: string }[] };
  return result.rows[0]!.x;
}

/**
 * Digest of every table's content, without `api_tokens.last_used_at`: the plane refreshes it (at most once a
 * minute per token) on any authenticated request, refused ones included; that bookkeeping is not a change the
 * request made.
 */
async function contentDigest(): Promise<string> {
  const parts = tables.map((t) => sql.raw(`select '${t}' as t, count(*)::text as n, md5(coalesce(string_agg((to_jsonb(x) - 'last_used_at')::text, '|' order by (to_jsonb(x) - 'last_used_at')::text), '')) as h from "${t}" x`));
  const result = (await opened.db.execute(sql.join(parts, sql.raw(" union all ")))) as unknown as { rows: { t: string; n: string; h: string }[] };
  return result.rows.map((r) => `${r.t}:${r.n}:${r.h}`).join(",");
}

beforeAll(async () => {
  dataDir = dirs.make();
  const config = loadConfig(loopbackPlaneEnv(dataDir));
  const logger = pino({ level: "silent" });
  opened = await openDatabase({ dataDir });
  closers.push(() => opened.close());
  const commandKey = (await loadOrCreateCommandKey(dataDir)).keyPair;
  const publisher = { publish: async () => undefined, isConnected: () => false } as unknown as DevicePublisher;
  const options = { commandTtlMs: config.commandTtlMs, challengeTtlMs: config.challengeTtlMs, staleAfterMs: config.staleAfterMs, autoQuarantine: config.autoQuarantine, maxPendingDevices: config.maxPendingDevices };
  const services = createServices({ db: opened.db as never, publisher, commandKey, logger, now: Date.now, options });
  closers.unshift(() => services.deviceSide.flush());
  const policies = createPolicyService({ db: opened.db as never, publisher, commandKey, logger, now: Date.now, options });
  const updates = await createUpdates({ config, db: opened.db as never, publisher, commandKey, options, logger });
  app = createHttpApp({ service: services.service, logger, registry: new Registry(), version: "0.0.0-fuzz", updates, policies });
  const admin = (await services.ensureAdminToken())!;
  const viewer = (await (await app.request("/api/v1/api-tokens", { method: "POST", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ role: "viewer", label: "fuzz" }) })).json()) as { token: string };
  tokens = { admin, viewer: viewer.token, none: null, bogus: "hwa_not-a-real-token" };
  const doc = (await (await app.request("/api/v1/openapi.json")).json()) as { paths: Record<string, Record<string, { requestBody?: unknown }>> };
  routes = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ method: method.toUpperCase(), path, hasBody: op.requestBody !== undefined })));
  const listed = (await opened.db.execute(sql.raw("select tablename from pg_tables where schemaname = 'public' order by 1"))) as unknown as { rows: { tablename: string }[] };
  tables = listed.rows.map((r) => r.tablename);
}, 300_000);

afterAll(async () => {
  for (const close of closers) await close().catch(() => undefined);
  dirs.cleanup();
});

const paramValue = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(DEVICE, SHA, "fw-s19-2.0.0", "ref-1", "pools", "1", "root.json", "1.root.json", "timestamp.json") },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }).map((s) => encodeURIComponent(s) || "x") },
  { weight: 1, arbitrary: fc.constantFrom("..%2F..%2Fetc%2Fpasswd", "%00", "%ff", "a".repeat(400), "__proto__", "constructor") },
);

type Case = { route: number; token: keyof typeof tokens; param: string; body: { kind: "json"; value: unknown } | { kind: "bytes"; value: Uint8Array } | { kind: "none" }; contentType: string };

function caseArbitrary(): fc.Arbitrary<Case> {
  return fc.integer({ min: 0, max: Math.max(0, routes.length - 1) }).chain((route) => {
    const r = routes[route]!;
    const seed = SEEDS[`${r.method} ${r.path}`] ?? {};
    const body = fc.oneof(
      { weight: 5, arbitrary: mutatedObject(seed).map((value) => ({ kind: "json" as const, value })) },
      { weight: 3, arbitrary: mutatedBytes(Buffer.from(JSON.stringify(seed))).map((value) => ({ kind: "bytes" as const, value })) },
      { weight: 1, arbitrary: fc.constant({ kind: "json" as const, value: seed }) },
      { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 50_000 }).map((d) => ({ kind: "bytes" as const, value: new Uint8Array(Buffer.from(deeplyNested(d))) })) },
    );
    return fc.record({
      route: fc.constant(route),
      token: fc.constantFrom<keyof typeof tokens>("admin", "admin", "admin", "viewer", "none", "bogus"),
      param: paramValue,
      body,
      contentType: fc.constantFrom("application/json", "application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream", ""),
    });
  });
}

async function send(c: Case): Promise<Response> {
  const r = routes[c.route]!;
  const path = r.path.replace(/\{[^}]+\}/g, c.param);
  const headers: Record<string, string> = {};
  if (tokens[c.token]) headers.authorization = `Bearer ${tokens[c.token]}`;
  if (c.contentType) headers["content-type"] = c.contentType;
  const body = c.body.kind === "json" ? JSON.stringify(c.body.value) : c.body.kind === "bytes" ? Buffer.from(c.body.value) : r.method === "GET" || r.method === "DELETE" ? undefined : "";
  return app.request(path, { method: r.method, headers, ...(body === undefined || r.method === "GET" ? {} : { body }) });
}

describe("HW-FUZZ-1: HTTP bodies of every route (real services, PGlite, app.request)", () => {
  it("the OpenAPI document lists the routes the fuzzer sends to", () => {
    expect(routes.length).toBeGreaterThan(30);
    expect(routes.map((r) => `${r.method} ${r.path}`)).toEqual(expect.arrayContaining(Object.keys(SEEDS).filter((k) => k !== "POST /enroll" && !k.includes("/tuf/")).slice(0, 5)));
  });

  let digest: string | undefined;
  it("every route: a fuzzed body is never a 5xx; a refusal is a documented 4xx and writes nothing", async () => {
    await fuzzAsync(
      "HTTP bodies (every route)",
      fc.asyncProperty(caseArbitrary(), async (c) => {
        // The cheap detector first; the content digest only when a transaction wrote (a 2xx, a last_used_at refresh).
        const before = await fingerprint();
        digest ??= await contentDigest();
        const outcome = await boundedAsync(async () => {
          const res = await send(c);
          return { status: res.status, text: await res.text() };
        }, []);
        if (!outcome.ok) return;
        const { status, text } = outcome.value;
        const r = routes[c.route]!;
        expect(status, `${r.method} ${r.path}: ${text.slice(0, 200)}`).toBeLessThan(500);
        const wrote = (await fingerprint()) !== before;
        if (status >= 400) {
          expect(REFUSALS.has(status), `${r.method} ${r.path} answered ${status}`).toBe(true);
          if (wrote) expect(await contentDigest(), `${r.method} ${r.path} answered ${status} but wrote`).toBe(digest);
        }
        if (wrote) digest = await contentDigest();
      }),
    );
  });

  it("the write detector sees a write: a valid request that creates an enrollment token moves it", async () => {
    const xmax = await fingerprint();
    const res = await app.request("/api/v1/enrollment-tokens", { method: "POST", headers: { authorization: `Bearer ${tokens.admin}`, "content-type": "application/json" }, body: JSON.stringify({ ttlMs: 60_000, maxUses: 1, label: "probe" }) });
    expect(res.status).toBe(201);
    expect(await fingerprint()).not.toBe(xmax);
  });

  it("every route once with malformed JSON and once with an oversized body: 4xx, nothing written", async () => {
    for (const r of routes) {
      if (r.method === "GET") continue;
      for (const body of ["{not json", Buffer.alloc(1024 * 1024 + 1, 0x20)]) {
        const before = await contentDigest();
        const res = await app.request(r.path.replace(/\{[^}]+\}/g, DEVICE), { method: r.method, headers: { authorization: `Bearer ${tokens.admin}`, "content-type": "application/json" }, body });
        expect(res.status, `${r.method} ${r.path}`).toBeLessThan(500);
        expect(res.status, `${r.method} ${r.path}`).toBeGreaterThanOrEqual(400);
        expect(await contentDigest(), `${r.method} ${r.path}`).toBe(before);
      }
    }
  });

  // Found by this campaign (10,000 cases): GET /api/v1/rollouts/%00 answered 500 (PostgreSQL text cannot hold U+0000).
  it("regression: a NUL in any path parameter or body string is a 4xx, never a 500, and writes nothing", async () => {
    const withParams = routes.filter((r) => r.path.includes("{"));
    for (const r of withParams) {
      const before = await contentDigest();
      const res = await app.request(r.path.replace(/\{[^}]+\}/g, "%00"), { method: r.method, headers: { authorization: `Bearer ${tokens.admin}`, "content-type": "application/json" }, ...(r.method === "GET" ? {} : { body: JSON.stringify(SEEDS[`${r.method} ${r.path}`] ?? {}) }) });
      expect(res.status, `${r.method} ${r.path}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${r.method} ${r.path}`).toBeLessThan(500);
      expect(await contentDigest()).toBe(before);
    }
    const before = await contentDigest();
    const res = await app.request("/api/v1/enrollment-tokens", { method: "POST", headers: { authorization: `Bearer ${tokens.admin}`, "content-type": "application/json" }, body: JSON.stringify({ ttlMs: 60_000, maxUses: 1, label: "rack\u00007" }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("validation_error");
    expect(await contentDigest()).toBe(before);
  });
});
