import pino from "pino";
import { Registry } from "prom-client";
import { beforeEach, describe, expect, it } from "vitest";
import { NotFoundError } from "../errors.js";
import { createHttpApp } from "../http/index.js";
import { DEVICE_ID, FakeControlPlaneService, OTHER_DEVICE_ID as OTHER_ID, REFERENCE_SET_ID, TOKENS } from "../http/testing/fake-service.js";
import { runCli } from "./index.js";

const BASE = "http://plane.test:1/";

function harness(env: Record<string, string | undefined> = { HASHWARD_URL: BASE, HASHWARD_TOKEN: TOKENS.admin }) {
  const service = new FakeControlPlaneService();
  const app = createHttpApp({ service, logger: pino({ level: "silent" }), registry: new Registry(), version: "1" });
  const files = new Map<string, string>();
  const out: string[] = [];
  const err: string[] = [];
  const requests: Array<{ url: string; method: string; body: string | null; ca?: string }> = [];
  const io = {
    env,
    // The fetch shim: the CLI talks to the real app in-process, no socket.
    fetch: async (url: string, init: RequestInit, ca?: string) => {
      requests.push({ url, method: init.method ?? "GET", body: typeof init.body === "string" ? init.body : null, ...(ca ? { ca } : {}) });
      return app.request(url, init);
    },
    readFile: async (path: string) => {
      const text = files.get(path);
      if (text === undefined) throw new Error(`ENOENT: ${path}`);
      return text;
    },
    stdout: (text: string) => void out.push(text),
    stderr: (text: string) => void err.push(text),
  };
  const run = async (...argv: string[]) => {
    out.length = 0;
    err.length = 0;
    const code = await runCli(argv, io);
    return { code, stdout: out.join(""), stderr: err.join("") };
  };
  return { service, files, run, requests };
}

let h: ReturnType<typeof harness>;
beforeEach(() => {
  h = harness();
});

describe("hashward CLI", () => {
  // HW-TLS-1: `npm start` makes a CA in ./data; the CLI trusts exactly it by default.
  it("trusts the plane's CA from the data dir by default, or the --ca-file / HASHWARD_CA_FILE given", async () => {
    const https = harness({ HASHWARD_URL: "https://plane.test:1/", HASHWARD_TOKEN: TOKENS.admin });
    https.files.set("./data/ca.pem", "CA FROM DATA DIR");
    https.files.set("other/ca.pem", "OTHER CA");
    expect((await https.run("health")).code).toBe(0);
    expect(https.requests.at(-1)?.ca).toBe("CA FROM DATA DIR");
    expect((await https.run("--ca-file", "other/ca.pem", "health")).code).toBe(0);
    expect(https.requests.at(-1)?.ca).toBe("OTHER CA");
    const named = harness({ HASHWARD_URL: "https://plane.test:1/", HASHWARD_TOKEN: TOKENS.admin, HASHWARD_DATA_DIR: "/srv/hashward" });
    named.files.set("/srv/hashward/ca.pem", "CA OF /srv");
    await named.run("health");
    expect(named.requests.at(-1)?.ca).toBe("CA OF /srv");
  });

  it("refuses an unreadable --ca-file with exit 2 and sends nothing", async () => {
    const https = harness({ HASHWARD_URL: "https://plane.test:1/", HASHWARD_TOKEN: TOKENS.admin });
    const result = await https.run("--ca-file", "missing.pem", "health");
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing.pem");
    expect(https.requests).toEqual([]);
  });

  it("policies set/list/delete and device-policy map to the policy routes", async () => {
    const body = { scope: { model: "S19" }, allowedUrls: ["stratum+tcp://pool.example.net:3333"] };
    h.files.set("pools.json", JSON.stringify(body));
    await h.run("policies", "set", "pools", "--file", "pools.json");
    await h.run("policies", "list", "indicators");
    await h.run("policies", "delete", "network", "pol_1");
    await h.run("device-policy", DEVICE_ID);
    expect(h.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      "PUT /api/v1/policies/pools",
      "GET /api/v1/policies/indicators",
      "DELETE /api/v1/policies/network/pol_1",
      `GET /api/v1/devices/${DEVICE_ID}/policy`,
    ]);
    expect(JSON.parse(h.requests[0]!.body!)).toEqual(body);
    expect((await h.run("policies", "set", "pools")).code).toBe(2);
    expect((await h.run("policies", "list", "firewall")).code).toBe(2);
  });

  it("webhooks add/list/deliveries/delete map to the webhook routes", async () => {
    await h.run("webhooks", "add", "--target", "https://hooks.example.net/hw", "--kinds", "device.quarantined,guard.alert", "--label", "ops");
    await h.run("webhooks", "list");
    await h.run("webhooks", "deliveries", "whe_0123456789abcdef01", "--limit", "5");
    await h.run("webhooks", "delete", "whe_0123456789abcdef01");
    expect(h.requests.map((r) => `${r.method} ${new URL(r.url).pathname}${new URL(r.url).search}`)).toEqual([
      "POST /api/v1/webhooks",
      "GET /api/v1/webhooks",
      "GET /api/v1/webhooks/whe_0123456789abcdef01/deliveries?limit=5",
      "DELETE /api/v1/webhooks/whe_0123456789abcdef01",
    ]);
    expect(JSON.parse(h.requests[0]!.body!)).toEqual({ url: "https://hooks.example.net/hw", kinds: ["device.quarantined", "guard.alert"], description: "ops" });
    expect((await h.run("webhooks", "add", "--kinds", "guard.alert")).code).toBe(2);
  });

  it("devices list passes filters and prints the JSON answer", async () => {
    const { code, stdout } = await h.run("devices", "list", "--containment", "quarantined", "--limit", "5");
    expect(code).toBe(0);
    expect(JSON.parse(stdout).devices[0].deviceId).toBe(DEVICE_ID);
    expect(h.service.callsOf("listDevices")[0]!.args[0]).toEqual({ containment: "quarantined", limit: 5, offset: 0 });
  });

  it("devices accept ID with a reason, as the token's principal", async () => {
    const { code } = await h.run("devices", "accept", DEVICE_ID, "--reason", "racked in row 3");
    expect(code).toBe(0);
    expect(h.service.callsOf("acceptDevice")[0]!.args).toEqual([
      { kind: "operator", id: "tok-admin", role: "admin" },
      DEVICE_ID,
      "racked in row 3",
    ]);
  });

  it("quarantine one ID uses the device route; several use the bulk route", async () => {
    expect((await h.run("quarantine", DEVICE_ID, "--reason", "pool hijack")).code).toBe(0);
    expect(h.requests.at(-1)!.url).toBe(`${BASE}api/v1/devices/${DEVICE_ID}/quarantine`);
    expect((await h.run("release", DEVICE_ID, OTHER_ID, "--reason", "cleaned")).code).toBe(0);
    expect(h.requests.at(-1)!.url).toBe(`${BASE}api/v1/release`);
    expect(h.service.callsOf("release")[0]!.args[1]).toEqual([DEVICE_ID, OTHER_ID]);
  });

  it("quarantine without a reason is a usage error and sends nothing", async () => {
    const { code, stderr } = await h.run("quarantine", DEVICE_ID);
    expect(code).toBe(2);
    expect(stderr).toContain("--reason");
    expect(h.requests).toEqual([]);
  });

  it("refs capture and approve", async () => {
    const captured = await h.run("refs", "capture", DEVICE_ID);
    expect(captured.code).toBe(0);
    expect(JSON.parse(captured.stdout).status).toBe("proposed");
    expect((await h.run("refs", "approve", REFERENCE_SET_ID)).code).toBe(0);
    expect(h.service.callsOf("approveReferenceValues")[0]!.args[1]).toBe(REFERENCE_SET_ID);
  });

  it("refs register reads the file", async () => {
    h.files.set("/tmp/refs.json", JSON.stringify({ model: "S19", firmwareVersion: "1.2.0", measurements: [{ path: "/a", sha256: "c".repeat(64), size: 3 }] }));
    expect((await h.run("refs", "register", "--file", "/tmp/refs.json")).code).toBe(0);
    expect(h.service.callsOf("registerReferenceValues")).toHaveLength(1);
  });

  it("tokens enrollment and api", async () => {
    const enrollment = await h.run("tokens", "enrollment", "--ttl-ms", "60000", "--max-uses", "10", "--label", "rack 7");
    expect(enrollment.code).toBe(0);
    expect(h.service.callsOf("createEnrollmentToken")[0]!.args[1]).toEqual({ ttlMs: 60000, maxUses: 10, label: "rack 7" });
    expect((await h.run("tokens", "api", "--role", "viewer", "--label", "grafana")).code).toBe(0);
    expect((await h.run("tokens", "enrollment", "--max-uses", "ten")).code).toBe(2);
  });

  it("tokens list, enrollment-list, revoke (either kind, by id prefix) and api --ttl-ms map to the token routes (HW-TOKEN-1)", async () => {
    expect((await h.run("tokens", "list")).code).toBe(0);
    expect((await h.run("tokens", "enrollment-list")).code).toBe(0);
    expect((await h.run("tokens", "revoke", "tok_0123abcd", "--reason", "leaked")).code).toBe(0);
    expect((await h.run("tokens", "revoke", "enr_0123abcd")).code).toBe(0);
    expect((await h.run("tokens", "api", "--role", "viewer", "--label", "ci", "--ttl-ms", "3600000")).code).toBe(0);
    expect(h.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      "GET /api/v1/api-tokens",
      "GET /api/v1/enrollment-tokens",
      "POST /api/v1/api-tokens/tok_0123abcd/revoke",
      "POST /api/v1/enrollment-tokens/enr_0123abcd/revoke",
      "POST /api/v1/api-tokens",
    ]);
    expect(h.service.callsOf("revokeApiToken")[0]!.args.slice(1)).toEqual(["tok_0123abcd", "leaked"]);
    expect(h.service.callsOf("createApiToken")[0]!.args[1]).toEqual({ role: "viewer", label: "ci", ttlMs: 3_600_000 });
    expect((await h.run("tokens", "revoke")).code).toBe(2);
  });

  it("reads the token from --token-file instead of the environment", async () => {
    const h2 = harness({ HASHWARD_URL: BASE });
    h2.files.set("/run/token", `${TOKENS.viewer}\n`);
    const { code } = await h2.run("--token-file", "/run/token", "devices", "get", DEVICE_ID);
    expect(code).toBe(0);
    expect(h2.service.callsOf("authenticateApiToken")[0]!.args[0]).toBe(TOKENS.viewer);
  });

  it("API errors go to stderr with exit 1", async () => {
    h.service.failWith("getDevice", new NotFoundError("device", DEVICE_ID));
    const { code, stdout, stderr } = await h.run("devices", "get", DEVICE_ID);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain("404");
    expect(stderr).toContain('"not_found"');
    const badId = await h.run("devices", "get", "nope");
    expect(badId.code).toBe(1);
    expect(badId.stderr).toContain('"field": "deviceId"');
  });

  it("missing configuration and unknown commands are usage errors", async () => {
    expect((await harness({ HASHWARD_URL: BASE }).run("devices", "list")).stderr).toContain("HASHWARD_TOKEN");
    expect((await h.run("devices", "explode")).code).toBe(2);
    expect((await h.run("--bogus")).code).toBe(2);
    expect((await h.run("--help")).code).toBe(0);
  });

  it("health needs no token", async () => {
    const { code, stdout } = await harness({ HASHWARD_URL: "http://plane.test:1" }).run("health");
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ status: "ok", version: "1", database: "up" });
  });
});
