/**
 * Policy routes in-process (`app.request`) over the real services on PGlite: roles, validation naming the field
 * before any write, the change + delivery answer, the device's effective policy, and the OpenAPI document.
 */
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, signObject, toBase64Url } from "../../../../shared/crypto/index.js";
import type { Command } from "../../../../shared/protocol/index.js";
import { openDatabase, type OpenedDatabase } from "../../db/index.js";
import { createPolicyService } from "../../policy/index.js";
import { createServices, type DevicePublisher, type Services } from "../../service/index.js";
import { createHttpApp, OPENAPI_PATH, ROLE_EXTENSION } from "../index.js";
import { tempDirPool } from "../../../../test/support/temp-dir.js";

const POOL = "stratum+tcp://pool.example.com:3333";

describe("policy routes", () => {
  const dirs = tempDirPool("policy-routes");
  let dataDir: string;
  let opened: OpenedDatabase;
  let services: Services;
  const sent: Command[] = [];
  const tokens: Record<"viewer" | "operator", string> = { viewer: "", operator: "" };
  let app: ReturnType<typeof createHttpApp>;
  let deviceId: string;

  beforeAll(async () => {
    dataDir = dirs.make();
    opened = await openDatabase({ dataDir });
    const publisher: DevicePublisher = {
      async publish(_id: string, _kind: "challenge" | "command", message: unknown) {
        sent.push(message as Command);
      },
      isConnected: () => true,
    } as DevicePublisher;
    const logger = pino({ level: "silent" });
    const deps = {
      db: opened.db,
      publisher,
      commandKey: generateKeyPair(),
      logger,
      options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "contraindicated" as const },
    };
    services = createServices(deps);
    const policies = createPolicyService(deps);
    app = createHttpApp({ service: services.service, logger, registry: new Registry(), version: "0.0.0-test", policies });
    const admin = { kind: "system", id: "test" } as const;
    tokens.viewer = (await services.service.createApiToken(admin, { role: "viewer", label: "v" })).token;
    tokens.operator = (await services.service.createApiToken(admin, { role: "operator", label: "o" })).token;

    const keys = generateKeyPair();
    deviceId = deviceIdFromPublicKey(keys.publicKey);
    await services.service.enroll(
      signObject(
        { v: 1 as const, type: "enroll" as const, deviceId, publicKey: toBase64Url(keys.publicKey), model: "S19", firmwareVersion: "1.0.0", agentVersion: "0.1.0", ts: Date.now() },
        keys.privateKey,
      ),
    );
    await services.service.acceptDevice(admin, deviceId, "test");
  });
  afterAll(async () => {
    await services?.close();
    await opened?.close();
    dirs.cleanup();
  });

  const request = (method: string, path: string, token?: string, body?: unknown) =>
    app.request(path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it("needs a token to read and an operator to write", async () => {
    expect((await request("GET", "/api/v1/policies/pools")).status).toBe(401);
    expect((await request("GET", "/api/v1/policies/pools", tokens.viewer)).status).toBe(200);
    expect((await request("PUT", "/api/v1/policies/pools", tokens.viewer, { allowedUrls: [POOL] })).status).toBe(403);
    expect((await request("DELETE", "/api/v1/policies/pools/pol_x", tokens.viewer)).status).toBe(403);
    expect(sent).toEqual([]);
  });

  it("answers 400 naming the field, storing nothing", async () => {
    const cases: Array<[string, unknown, string]> = [
      ["pools", { allowedUrls: ["http://pool.example.com:80"] }, "allowedUrls.0"],
      ["pools", { allowedUrls: [POOL], workerPatterns: ["farm.*"] }, "workerPatterns.0"],
      ["pools", { allowedUrls: [POOL], workerPatterns: ["^farm(.*$"] }, "workerPatterns.0"],
      ["network", { allowedHosts: ["bad host"] }, "allowedHosts.0"],
      ["indicators", { indicators: [{ id: "x", kind: "file-present", severity: "critical", description: "d" }] }, "indicators.0.path"],
      ["pools", { scope: { deviceIds: ["nope"] }, allowedUrls: [POOL] }, "scope.deviceIds.0"],
      // HW-ALERT-3: farm-alert thresholds, each bound and the window they must fit.
      ["farm-alerts", { zeroHashrateSamples: 0 }, "zeroHashrateSamples"],
      ["farm-alerts", { hashrateDropRatio: 1.2 }, "hashrateDropRatio"],
      ["farm-alerts", { fanStoppedRpm: "300" }, "fanStoppedRpm"],
      ["farm-alerts", { windowSamples: 20, minPoolSwitches: 21 }, "minPoolSwitches"],
      ["farm-alerts", { fanFloorRpm: 300 }, "fanFloorRpm"],
    ];
    for (const [kind, body, field] of cases) {
      const res = await request("PUT", `/api/v1/policies/${kind}`, tokens.operator, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe(field);
    }
    expect(((await (await request("GET", "/api/v1/policies/pools", tokens.viewer)).json()) as { policies: unknown[] }).policies).toEqual([]);
    expect(((await (await request("GET", "/api/v1/policies/farm-alerts", tokens.viewer)).json()) as { policies: unknown[] }).policies).toEqual([]);
  });

  it("HW-ALERT-3: stores farm-alert thresholds (defaults filled in), sends devices nothing, and shows them in the device's effective policy", async () => {
    const before = sent.length;
    const res = await request("PUT", "/api/v1/policies/farm-alerts", tokens.operator, { scope: { deviceIds: [deviceId] }, fanStoppedRpm: 800 });
    expect(res.status).toBe(200);
    const change = (await res.json()) as { policy: Record<string, unknown>; delivery: unknown };
    expect(change.policy).toMatchObject({ kind: "farm-alerts", fanStoppedRpm: 800, zeroHashrateSamples: 18, hashrateDropRatio: 0.3 });
    expect(change.delivery).toEqual({ version: null, devices: 0 });
    expect(sent.length).toBe(before);
    const effective = (await (await request("GET", `/api/v1/devices/${deviceId}/policy`, tokens.viewer)).json()) as { farmAlerts: { fanStoppedRpm: number }; sources: Record<string, { level: string }> };
    expect(effective.farmAlerts.fanStoppedRpm).toBe(800);
    expect(effective.sources["farm-alerts"]!.level).toBe("devices");
    const list = (await (await request("GET", "/api/v1/policies/farm-alerts", tokens.viewer)).json()) as { builtInDefault: { fanStoppedRpm: number } };
    expect(list.builtInDefault.fanStoppedRpm).toBe(300);
    expect((await request("DELETE", `/api/v1/policies/farm-alerts/${change.policy.id as string}`, tokens.operator)).status).toBe(200);
  });

  it("stores a policy, delivers it signed, and shows the device's effective policy", async () => {
    const res = await request("PUT", "/api/v1/policies/pools", tokens.operator, { allowedUrls: [POOL], workerPatterns: ["^farm\\.rig[0-9]+$"] });
    expect(res.status).toBe(200);
    const change = (await res.json()) as { policy: { id: string; version: number; kind: string; scope: object }; delivery: { version: number; devices: number } };
    expect(change.policy).toMatchObject({ kind: "pools", scope: {}, allowedUrls: [POOL] });
    expect(change.delivery).toEqual({ version: change.policy.version, devices: 1 });
    expect(sent.at(-1)).toMatchObject({ deviceId, action: "set-policy", params: { policy: { version: change.policy.version, pools: { allowedUrls: [POOL] } } } });

    const list = (await (await request("GET", "/api/v1/policies/pools", tokens.viewer)).json()) as { kind: string; policies: Array<{ id: string }>; builtInDefault: unknown };
    expect(list).toMatchObject({ kind: "pools", builtInDefault: null });
    expect(list.policies.map((p) => p.id)).toEqual([change.policy.id]);
    const indicators = (await (await request("GET", "/api/v1/policies/indicators", tokens.viewer)).json()) as { builtInDefault: { indicators: Array<{ id: string }> } };
    expect(indicators.builtInDefault.indicators.map((i) => i.id)).toContain("ld-so-preload");
    // the built-in Hive OS markers come back whole through the API, new fields included (HW-GUARD-5, HW-GUARD-9)
    expect(indicators.builtInDefault.indicators).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: "ntpd-oversized", kind: "file-size-above", path: "/usr/bin/ntpd", maxBytes: 499_999 }),
        expect.objectContaining({ id: "known-bad-names", kind: "named-file", maxDepth: 6 }),
        expect.objectContaining({ id: "hive-suspicious-nvdata-shadow", kind: "reappearing-file", presentSeverity: "warning", severity: "critical" }),
      ]),
    );

    const view = await request("GET", `/api/v1/devices/${deviceId}/policy`, tokens.viewer);
    expect(view.status).toBe(200);
    expect(await view.json()).toMatchObject({ deviceId, deliverable: true, delivered: { version: change.policy.version, current: true }, acked: null, upToDate: false });
    expect((await request("GET", "/api/v1/devices/hw-ffffffffffffffffffffffff/policy", tokens.viewer)).status).toBe(404);
  });

  it("deletes by kind and id: 404 for an unknown id, 409 for a device's last pool policy", async () => {
    const network = (await (await request("PUT", "/api/v1/policies/network", tokens.operator, { scope: { model: "S19" }, allowedHosts: ["ntp.example.com:123"] })).json()) as {
      policy: { id: string };
    };
    expect((await request("DELETE", `/api/v1/policies/pools/${network.policy.id}`, tokens.operator)).status).toBe(404);
    const deleted = await request("DELETE", `/api/v1/policies/network/${network.policy.id}`, tokens.operator);
    expect(deleted.status).toBe(200);
    expect(((await deleted.json()) as { delivery: { devices: number } }).delivery.devices).toBe(1);
    const pools = (await (await request("GET", "/api/v1/policies/pools", tokens.viewer)).json()) as { policies: Array<{ id: string }> };
    expect((await request("DELETE", `/api/v1/policies/pools/${pools.policies[0]!.id}`, tokens.operator)).status).toBe(409);
    expect((await request("DELETE", "/api/v1/policies/colors/x", tokens.operator)).status).toBe(400);
  });

  it("documents every policy route with its role", async () => {
    const doc = (await (await app.request(OPENAPI_PATH)).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    const expected: Array<[string, string, string]> = [
      ["/api/v1/policies/pools", "get", "viewer"],
      ["/api/v1/policies/pools", "put", "operator"],
      ["/api/v1/policies/network", "get", "viewer"],
      ["/api/v1/policies/network", "put", "operator"],
      ["/api/v1/policies/indicators", "get", "viewer"],
      ["/api/v1/policies/indicators", "put", "operator"],
      ["/api/v1/policies/{kind}/{id}", "delete", "operator"],
      ["/api/v1/devices/{deviceId}/policy", "get", "viewer"],
    ];
    for (const [path, method, role] of expected) {
      const operation = doc.paths[path]?.[method];
      expect(operation, `${method} ${path}`).toBeDefined();
      expect(operation![ROLE_EXTENSION]).toBe(role);
      expect(operation!.security).toEqual([{ bearerAuth: [] }]);
    }
  });
});
