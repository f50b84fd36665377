/** Bad operator input against the real control plane: a clear error naming the field, and nothing written. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../support/api.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";

let plane: ControlPlane;
let admin: ApiClient;
const unknownId = "hw-0123456789abcdef01234567";

async function auditCount(): Promise<number> {
  const { entries } = await admin.get("/api/v1/audit?limit=1000");
  return entries.length;
}

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
});

afterAll(async () => {
  await plane?.proc.kill("SIGTERM");
});

describe("operator API input (real control plane)", () => {
  it("serves health and an OpenAPI 3.1 document", async () => {
    expect((await new ApiClient(plane.httpUrl).request("GET", "/healthz")).status).toBe(200);
    const doc = await new ApiClient(plane.httpUrl).get("/api/v1/openapi.json");
    expect(doc.openapi).toMatch(/^3\.1/);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/api/v1/devices", "/api/v1/devices/{deviceId}/quarantine"]));
  });

  it.each([
    ["POST", "/api/v1/enrollment-tokens", { maxUses: -1 }, "maxUses"],
    ["POST", "/api/v1/reference-values", { model: "S19", firmwareVersion: "1", measurements: [{ path: "/x", sha256: "nothex", size: 1 }] }, "measurements.0.sha256"],
    ["POST", "/api/v1/quarantine", { deviceIds: ["not-a-device"], reason: "x" }, "deviceIds.0"],
    ["POST", `/api/v1/devices/bad-id/quarantine`, { reason: "x" }, "deviceId"],
    ["POST", "/api/v1/api-tokens", { role: "root", label: "x" }, "role"],
  ])("%s %s with a bad field -> 400 naming it, nothing written", async (method, path, body, field) => {
    const before = await auditCount();
    const response = await admin.request(method, path, body);
    expect(response.status).toBe(400);
    expect(response.body.error.field).toBe(field);
    expect(await auditCount()).toBe(before);
  });

  it("malformed JSON and oversized bodies are refused before anything is written", async () => {
    const before = await auditCount();
    expect((await admin.request("POST", "/api/v1/enrollment-tokens", "{not json")).status).toBe(400);
    const huge = { deviceIds: [unknownId], reason: "x".repeat(2 * 1024 * 1024) };
    expect((await admin.request("POST", "/api/v1/quarantine", huge)).status).toBe(413);
    expect(await auditCount()).toBe(before);
  });

  it("unknown devices are 404 and nothing is written", async () => {
    const before = await auditCount();
    for (const [method, path] of [
      ["GET", `/api/v1/devices/${unknownId}`],
      ["POST", `/api/v1/devices/${unknownId}/quarantine`],
      ["POST", `/api/v1/devices/${unknownId}/accept`],
      ["POST", `/api/v1/devices/${unknownId}/attest`],
    ] as const) {
      const response = await admin.request(method, path, method === "POST" ? { reason: "x" } : undefined);
      expect(response.status, `${method} ${path}`).toBe(404);
    }
    expect(await auditCount()).toBe(before);
  });

  it("401 without a token, 403 with a role too low", async () => {
    expect((await new ApiClient(plane.httpUrl).request("GET", "/api/v1/devices")).status).toBe(401);
    expect((await new ApiClient(plane.httpUrl, "hwa_wrong").request("GET", "/api/v1/devices")).status).toBe(401);
    const viewer = await admin.post("/api/v1/api-tokens", { role: "viewer", label: "e2e viewer" });
    const asViewer = new ApiClient(plane.httpUrl, viewer.token);
    expect((await asViewer.request("GET", "/api/v1/devices")).status).toBe(200);
    expect((await asViewer.request("POST", "/api/v1/enrollment-tokens", {})).status).toBe(403);
    expect((await asViewer.request("GET", "/api/v1/audit")).status).toBe(403);
  });

  it("records every operator action in the audit log", async () => {
    const before = await auditCount();
    await admin.post("/api/v1/enrollment-tokens", { ttlMs: 60_000, maxUses: 1 });
    const { entries } = await admin.get("/api/v1/audit?limit=1000");
    expect(entries.length).toBe(before + 1);
    expect(entries.some((e: any) => /enrollment/i.test(e.action))).toBe(true);
  });
});
