/**
 * The release CLI end to end in-process: offline keys, root and targets signing, root rotation, and `upload`
 * through the real HTTP app (routes/releases.ts) onto a real TUF repository and services (PGlite).
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/crypto/index.js";
import { openDatabase } from "../db/index.js";
import { createHttpApp, OPENAPI_PATH, ROLE_EXTENSION } from "../http/index.js";
import { createRolloutService } from "../rollouts/index.js";
import { createServiceContext, createServices, type DevicePublisher, type Services } from "../service/index.js";
import { createTufRepository, loadOrCreateOnlineKeys } from "../tuf/index.js";
import { runRelease } from "./index.js";
import { sha256OfBytes } from "./metadata.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const OPTIONS = { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "off" as const };
const publisher: DevicePublisher = { publish: async () => undefined, isConnected: () => false } as DevicePublisher;

describe("release CLI", () => {
  const dirs = tempDirPool("release");
  let dir: string;
  let close: () => Promise<void>;
  let services: Services;
  let app: ReturnType<typeof createHttpApp>;
  let adminTokenFile: string;
  let viewerToken: string;
  const out: string[] = [];
  const err: string[] = [];
  const io = {
    fetch: (url: string, init: RequestInit) => Promise.resolve(app.request(url, init)),
    stdout: (text: string) => void out.push(text),
    stderr: (text: string) => void err.push(text),
  };
  const run = async (...args: string[]) => {
    out.length = 0;
    err.length = 0;
    const code = await runRelease(args, io);
    return { code, out: out.join(""), err: err.join(""), json: () => JSON.parse(out.join("")) as Record<string, unknown> };
  };

  beforeAll(async () => {
    dir = dirs.make();
    const opened = await openDatabase({ dataDir: join(dir, "plane") });
    close = opened.close;
    const logger = pino({ level: "silent" });
    const commandKey = generateKeyPair();
    services = createServices({ db: opened.db, publisher, commandKey, logger, options: OPTIONS });
    const keys = await loadOrCreateOnlineKeys(join(dir, "plane"));
    const tuf = createTufRepository({
      db: opened.db,
      dataDir: join(dir, "plane"),
      keys,
      options: { timestampTtlMs: 86_400_000, snapshotTtlMs: 7 * 86_400_000, maxImageBytes: 1024 * 1024 },
      logger,
    });
    const ctx = createServiceContext({ db: opened.db, publisher, commandKey, logger, options: OPTIONS });
    const rollouts = createRolloutService({ ctx, targets: tuf, updateCommandTtlMs: 600_000 });
    app = createHttpApp({ service: services.service, logger, registry: new Registry(), version: "test", updates: { tuf, rollouts } });
    adminTokenFile = join(dir, "admin.token");
    writeFileSync(adminTokenFile, `${await services.ensureAdminToken()}\n`, { mode: 0o600 });
    viewerToken = (await services.service.createApiToken({ kind: "system", id: "test" }, { role: "viewer", label: "v" })).token;
  });
  afterAll(async () => {
    await services.close();
    await close();
    dirs.cleanup();
  });

  const admin = () => ({ Authorization: `Bearer ${readFileSync(adminTokenFile, "utf8").trim()}` });

  it("makes separated 0600 root and targets keys and refuses to overwrite them", async () => {
    const made = await run("keys", "init", "--dir", join(dir, "keys"), "--root-keys", "3", "--root-threshold", "2", "--targets-keys", "2", "--targets-threshold", "2");
    expect(made.code).toBe(0);
    expect(made.json()).toEqual({ dir: join(dir, "keys"), root: { keys: 3, threshold: 2 }, targets: { keys: 2, threshold: 2 } });
    expect(statSync(join(dir, "keys", "root", "root-1.json")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "keys", "targets", "targets-2.json")).mode & 0o777).toBe(0o600);
    expect((await run("keys", "init", "--dir", join(dir, "keys"))).code).toBe(1);
    expect((await run("keys", "init", "--dir", join(dir, "k2"), "--root-keys", "1", "--root-threshold", "2")).code).toBe(1);
    expect((await run("keys", "init")).code).toBe(2);
  });

  it("signs root v1 with the plane's exported online keys and uploads it", async () => {
    const response = await app.request("/api/v1/tuf/online-keys", { headers: admin() });
    expect(response.status).toBe(200);
    writeFileSync(join(dir, "online-keys.json"), await response.text());
    expect((await app.request("/api/v1/tuf/online-keys", { headers: { Authorization: `Bearer ${viewerToken}` } })).status).toBe(403);

    const repo = join(dir, "repo");
    expect((await run("root", "init", "--keys", join(dir, "keys"), "--online-keys", join(dir, "online-keys.json"), "--repo", repo)).code).toBe(0);
    const uploaded = await run("upload", "--url", "http://plane", "--token-file", adminTokenFile, "--repo", repo);
    expect(uploaded.err).toBe("");
    expect(uploaded.json()).toMatchObject({ roots: [1] });
    const root = await app.request("/tuf/metadata/root.json");
    expect(root.status).toBe(200);
    expect(await root.text()).toBe(JSON.stringify(JSON.parse(readFileSync(join(repo, "1.root.json"), "utf8"))));
  });

  it("signs a release, uploads image and targets, and registers its reference values", async () => {
    const repo = join(dir, "repo");
    const image = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
    writeFileSync(join(dir, "fw.img"), image);
    const measure = [
      { path: "/firmware/bmminer", kind: "file", size: 10, sha256: "d".repeat(64) },
      { path: "/etc/backdoor", kind: "missing", size: 0, sha256: "" },
    ];
    writeFileSync(join(dir, "measure.json"), JSON.stringify(measure));
    const signed = await run("sign", "--keys", join(dir, "keys"), "--repo", repo, "--image", join(dir, "fw.img"), "--name", "fw-s19-2.0.0", "--version", "2.0.0", "--models", "S19,S19j", "--reference", join(dir, "measure.json"));
    expect(signed.err).toBe("");
    expect(signed.json()).toMatchObject({ version: 1, target: { name: "fw-s19-2.0.0", sha256: sha256OfBytes(image), length: image.length } });
    // One definition of a version (shared/semver): what every agent would refuse is never signed.
    for (const version of ["two", "1.0.0-01", "1.0.0-a..b", "1.0.0-rc.", "v2.0.0", "2.0.0+"]) {
      const refused = await run("sign", "--keys", join(dir, "keys"), "--repo", repo, "--image", join(dir, "fw.img"), "--version", version, "--models", "S19", "--reference", join(dir, "measure.json"));
      expect(refused.code, version).toBe(2);
      expect(refused.err, version).toMatch(/semantic version/);
    }
    // A model name the agent-side definition refuses is not signed either.
    expect((await run("sign", "--keys", join(dir, "keys"), "--repo", repo, "--image", join(dir, "fw.img"), "--version", "2.0.1", "--models", "S19,bad/model", "--reference", join(dir, "measure.json"))).code).toBe(2);

    const uploaded = await run("upload", "--url", "http://plane", "--token-file", adminTokenFile, "--repo", repo);
    expect(uploaded.err).toBe("");
    expect(uploaded.json()).toMatchObject({ roots: [], images: [sha256OfBytes(image)], targets: { targetsVersion: 1, snapshotVersion: 1, timestampVersion: 1 } });

    const refs = await services.service.listReferenceValues({ firmwareVersion: "2.0.0" });
    expect(refs.map((r) => [r.model, r.source, r.status]).sort()).toEqual([["S19", "release", "approved"], ["S19j", "release", "approved"]]);
    expect(refs[0]?.measurements).toContainEqual({ path: "/etc/backdoor", sha256: "", size: 0 });

    const target = await app.request(`/tuf/targets/${sha256OfBytes(image)}.fw-s19-2.0.0`);
    expect(target.status).toBe(200);
    expect(target.headers.get("content-length")).toBe(String(image.length));
    expect(new Uint8Array(await target.arrayBuffer())).toEqual(image);
    expect((await app.request(`/tuf/targets/${sha256OfBytes(image)}.other`)).status).toBe(404);
    expect((await app.request("/tuf/metadata/timestamp.json")).status).toBe(200);
    expect((await app.request("/tuf/metadata/1.snapshot.json")).headers.get("cache-control")).toMatch(/immutable/);
    const releases = await app.request("/api/v1/releases", { headers: { Authorization: `Bearer ${viewerToken}` } });
    expect(((await releases.json()) as { releases: Array<{ name: string }> }).releases.map((r) => r.name)).toEqual(["fw-s19-2.0.0"]);
  });

  it("refuses uploads from a viewer, an image over the cap, and an image that does not hash to its name", async () => {
    const viewer = { Authorization: `Bearer ${viewerToken}` };
    expect((await app.request("/api/v1/tuf/targets", { method: "POST", headers: { ...viewer, "Content-Type": "application/json" }, body: "{}" })).status).toBe(403);
    const big = new Uint8Array(2 * 1024 * 1024);
    const tooBig = await app.request(`/api/v1/tuf/images/${sha256OfBytes(big)}`, { method: "PUT", headers: { ...admin(), "Content-Type": "application/octet-stream" }, body: big });
    expect(tooBig.status).toBe(413);
    const wrong = await app.request(`/api/v1/tuf/images/${"0".repeat(64)}`, { method: "PUT", headers: { ...admin(), "Content-Type": "application/octet-stream" }, body: new Uint8Array(10) });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe("verification_failed");
  });

  it("rotates root: v2 signed by the old and the new root keys is accepted by the plane", async () => {
    const repo = join(dir, "repo");
    expect((await run("keys", "init", "--dir", join(dir, "keys2"), "--root-keys", "2", "--root-threshold", "2")).code).toBe(0);
    const rotated = await run("rotate-root", "--keys", join(dir, "keys"), "--new-keys", join(dir, "keys2"), "--repo", repo);
    expect(rotated.json()).toMatchObject({ version: 2 });
    const uploaded = await run("upload", "--url", "http://plane", "--token-file", adminTokenFile, "--repo", repo);
    expect(uploaded.json()).toMatchObject({ roots: [2] });
    const status = await app.request("/api/v1/tuf/status", { headers: admin() });
    expect(await status.json()).toMatchObject({ rootVersion: 2, targetsVersion: 1 });
  });

  it("documents every update route with its role", async () => {
    const doc = (await (await app.request(OPENAPI_PATH)).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    const role = (path: string, method: string) => doc.paths[path]?.[method]?.[ROLE_EXTENSION];
    expect(role("/tuf/metadata/{file}", "get")).toBe("none");
    expect(role("/tuf/targets/{file}", "get")).toBe("none");
    expect(role("/api/v1/tuf/root", "post")).toBe("admin");
    expect(role("/api/v1/tuf/images/{sha256}", "put")).toBe("operator");
    expect(role("/api/v1/tuf/targets", "post")).toBe("operator");
    expect(role("/api/v1/rollouts", "post")).toBe("operator");
    expect(role("/api/v1/rollouts/{id}", "get")).toBe("viewer");
    expect(role("/api/v1/rollouts/{id}/cancel", "post")).toBe("operator");
    expect(role("/api/v1/devices/{deviceId}/update", "post")).toBe("operator");
  });
});
