/**
 * Signed releases end to end with the real tools: the release CLI run as the operator runs it
 * (`bun control-plane/src/release/main.ts`, i.e. `npm run release -- ...`), the real control plane as TUF
 * repository, the agent binary's TUF client (`hashward-agent tuf`, tuf-js) and a real agent installing the release.
 *  - the plane publishes only what verifies against the offline root, and serves it as consistent snapshots;
 *  - it renews its timestamp by itself before expiry (clients keep refreshing past the first timestamp's expiry);
 *  - a device that installed the release attests trusted against the release's reference values.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Metadata, MetadataKind, Root } from "@tufjs/models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFirmwareImage } from "../../agent/src/update/index.js";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { simulatedFirmwareFiles } from "../../agent/src/platform/simulated.js";
import { generateKeyPair, keyPairFromPrivate } from "../../shared/crypto/index.js";
import { tufKeyIdOf } from "../../shared/tuf/keys.js";
import { tufKeyId } from "../../control-plane/src/tuf/keys.js";
import { buildTargets, expiresIn, signWith } from "../../control-plane/src/release/metadata.js";
import { ApiClient } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { AGENT_BINARY, BUN, REPO_ROOT, startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";
let plane: ControlPlane;
let admin: ApiClient;
let dir: string;
let agent: ManagedProcess | undefined;

/** Runs the release CLI exactly as `npm run release -- ...` does. */
function release(...args: string[]): { code: number; out: string; err: string } {
  const result = spawnSync(BUN, ["control-plane/src/release/main.ts", ...args], { cwd: REPO_ROOT, encoding: "utf8" });
  return { code: result.status ?? -1, out: result.stdout, err: result.stderr };
}

function tuf(...args: string[]): { code: number; out: string } {
  const result = spawnSync(AGENT_BINARY, ["tuf", ...args], { encoding: "utf8" });
  return { code: result.status ?? -1, out: `${result.stdout}${result.stderr}` };
}

function agentConfig(name: string, firmwareVersion: string, slots: boolean, extra: Record<string, unknown> = {}) {
  const base = tempDir(name).path;
  const boardRoot = join(base, "board");
  createSimulatedBoard(boardRoot, { model: MODEL, firmwareVersion, slots });
  const stateDir = join(base, "state");
  const configFile = writeAgentConfig(
    base,
    simulatedAgentConfig(plane, { stateDir, boardRoot, model: MODEL, firmwareVersion }, {
      measure: { paths: ["/firmware", "/config"] },
      heartbeatIntervalMs: 1000,
      ...extra,
    }),
  );
  return { boardRoot, stateDir, configFile };
}

beforeAll(async () => {
  // Short online-metadata lifetimes, so renewal happens within the test.
  plane = await startControlPlane({ env: { HASHWARD_TUF_TIMESTAMP_TTL_MS: "6000", HASHWARD_TUF_RENEW_CHECK_MS: "200", HASHWARD_ROLLOUT_TICK_MS: "200" } });
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  dir = tempDir("release-e2e").path;
  writeFileSync(join(dir, "admin.token"), `${plane.adminToken}\n`, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await plane?.proc.kill("SIGKILL");
});

describe("signed releases (release CLI -> plane TUF repository -> tuf-js clients)", () => {
  const repo = () => join(dir, "repo");
  const keys = () => join(dir, "keys");
  const upload = () => release("upload", "--url", plane.httpUrl, "--token-file", join(dir, "admin.token"), "--ca-file", join(plane.dataDir, "ca.pem"), "--repo", repo());

  it("publishes root v1 and a release made offline with the CLI", async () => {
    expect(release("keys", "init", "--dir", keys(), "--root-keys", "3", "--root-threshold", "2", "--targets-keys", "2", "--targets-threshold", "2").code).toBe(0);
    writeFileSync(join(dir, "online-keys.json"), JSON.stringify(await admin.get("/api/v1/tuf/online-keys")));
    expect(release("root", "init", "--keys", keys(), "--online-keys", join(dir, "online-keys.json"), "--repo", repo()).code).toBe(0);

    // Reference values of the release: `hashward-agent measure` of a board running that firmware.
    const reference = agentConfig("reference-board", "2.0.0", true);
    writeFileSync(join(dir, "measure.json"), execFileSync(AGENT_BINARY, ["measure", "--config", reference.configFile], { encoding: "utf8" }));
    const files = Object.entries(simulatedFirmwareFiles(MODEL, "2.0.0")).map(([path, content]) => ({ path, content, ...(path === "bmminer" ? { mode: 0o755 } : {}) }));
    writeFileSync(join(dir, "fw.img"), buildFirmwareImage(files));
    const signed = release("sign", "--keys", keys(), "--repo", repo(), "--image", join(dir, "fw.img"), "--name", "fw-s19-2.0.0", "--version", "2.0.0", "--models", MODEL, "--reference", join(dir, "measure.json"));
    expect(signed.err).toBe("");
    const uploaded = upload();
    expect(uploaded.err).toBe("");
    expect(JSON.parse(uploaded.out)).toMatchObject({ roots: [1], targets: { targetsVersion: 1 } });
    const refs = await admin.get(`/api/v1/reference-values?model=${MODEL}&firmwareVersion=2.0.0`);
    expect(refs.referenceValues[0]).toMatchObject({ source: "release", status: "approved" });
  }, 60_000);

  it("refuses targets signed with only the plane's online keys or below the targets threshold", async () => {
    const previous = JSON.parse(readFileSync(join(repo(), "targets.json"), "utf8"));
    const forged = buildTargets(null, [{ name: "evil", length: 1, sha256: "0".repeat(64), custom: { hardwareModels: [MODEL], version: "9.0.0", referenceMeasurements: [] } }], expiresIn(86_400_000), previous.signed.version + 1);
    const response = await admin.request("POST", "/api/v1/tuf/targets", signWith(forged, [generateKeyPair(), generateKeyPair()]).toJSON());
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("verification_failed");
    // Below threshold: one of the two targets keys only (the operator's key dir has both).
    const oneKey = JSON.parse(readFileSync(join(keys(), "targets", "targets-1.json"), "utf8"));
    const below = signWith(forged, [keyPairFromPrivate(new Uint8Array(Buffer.from(oneKey.private, "hex")))]).toJSON();
    expect((await admin.request("POST", "/api/v1/tuf/targets", below)).status).toBe(400);
    expect((await admin.get("/api/v1/tuf/status")).targetsVersion).toBe(previous.signed.version);
  });

  it("serves a repository the agent's tuf-js client verifies and downloads from, across timestamp renewals", async () => {
    const client = tempDir("tuf-client").path;
    expect(tuf("--metadata-dir", join(client, "md"), "init", join(repo(), "1.root.json")).code).toBe(0);
    const metadataUrl = `${plane.httpUrl}/tuf/metadata/`;
    const download = () =>
      tuf("--metadata-dir", join(client, "md"), "--metadata-url", metadataUrl, "--ca-file", join(plane.dataDir, "ca.pem"), "--target-name", "fw-s19-2.0.0", "--target-base-url", `${plane.httpUrl}/tuf/targets/`, "--target-dir", join(client, "out"), "download");
    const first = download();
    expect(first.code, first.out).toBe(0);
    expect(readFileSync(join(client, "out", "fw-s19-2.0.0"))).toEqual(readFileSync(join(dir, "fw.img")));

    // The first timestamp lives 6 s; the plane re-signs it when a third is left, with no operator action.
    const before = (await admin.get("/api/v1/tuf/status")).timestampVersion;
    await waitFor("a renewed timestamp past the first one's expiry", async () => {
      const status = await admin.get("/api/v1/tuf/status");
      return status.timestampVersion >= before + 2 || undefined;
    }, { timeoutMs: 20_000, intervalMs: 250 });
    const refreshed = tuf("--metadata-dir", join(client, "md"), "--metadata-url", metadataUrl, "--ca-file", join(plane.dataDir, "ca.pem"), "refresh");
    expect(refreshed.code, refreshed.out).toBe(0);
  }, 60_000);

  it("a device installs the release and then attests trusted against the release's reference values", async () => {
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1 });
    const device = agentConfig("release-device", "1.0.0", true, { enrollmentToken: token.token, update: { trustedRootFile: join(repo(), "1.root.json") } });
    agent = startAgent("release-device", device.configFile);
    const deviceId = await waitFor("device key", () => loadDeviceKey(device.stateDir)?.deviceId);
    await waitFor("device connected", async () => (await admin.get(`/api/v1/devices/${deviceId}`)).connected || undefined);
    await admin.ok("POST", `/api/v1/devices/${deviceId}/update`, { targetName: "fw-s19-2.0.0" });
    const view = await waitFor("device trusted on 2.0.0", async () => {
      const d = await admin.get(`/api/v1/devices/${deviceId}`);
      return (d.firmwareVersion === "2.0.0" && d.appraisal === "trusted" && d) || undefined;
    }, { timeoutMs: 60_000, intervalMs: 250 });
    expect(view.lastAppraisal.referenceId).toBe((await admin.get(`/api/v1/reference-values?model=${MODEL}&firmwareVersion=2.0.0`)).referenceValues[0].id);
    expect(readFileSync(join(device.boardRoot, "boot/active"), "utf8").trim()).toBe("b");
  }, 90_000);

  // Last in this file: its API calls leave keep-alive sockets that the blocking spawnSync of the tuf CLI in the
  // tests above would let the server close under the client ("other side closed").
  it("refuses, over the API, a root v2 counting one targets key twice and a release version agents would refuse", async () => {
    const keyPair = (role: string, i: number) => keyPairFromPrivate(new Uint8Array(Buffer.from(JSON.parse(readFileSync(join(keys(), role, `${role}-${i}.json`), "utf8")).private, "hex")));
    // HW-TUF-4: root v2 lists targets key 1 twice (hex and PEM, each under its own key id) with threshold 2.
    const current = Metadata.fromJSON(MetadataKind.Root, JSON.parse(readFileSync(join(repo(), "root.json"), "utf8")));
    const json = current.signed.toJSON() as { version: number; keys: Record<string, unknown>; roles: Record<string, { keyids: string[]; threshold: number }> };
    json.version = current.signed.version + 1;
    const targetsKey = keyPair("targets", 1).publicKey;
    const pem = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(targetsKey)]), format: "der", type: "spki" }).export({ type: "spki", format: "pem" }).toString();
    const alias = { keytype: "ed25519", scheme: "ed25519", keyval: { public: pem } };
    json.keys[tufKeyIdOf(alias)] = alias;
    json.roles["targets"] = { keyids: [tufKeyId(targetsKey), tufKeyIdOf(alias)], threshold: 2 };
    const doubled = signWith(new Metadata(Root.fromJSON(json as never)), [keyPair("root", 1), keyPair("root", 2)]).toJSON();
    const refused = await admin.request("POST", "/api/v1/tuf/root", doubled);
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/lists one public key twice/);
    expect((await admin.get("/api/v1/tuf/status")).rootVersion).toBe(current.signed.version);

    // HW-UPD-3: a release versioned 1.0.0-01, signed to threshold by the real targets keys, is not published.
    const previous = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(readFileSync(join(repo(), "targets.json"), "utf8")));
    const published = previous.signed.targets["fw-s19-2.0.0"]!;
    for (const version of ["1.0.0-01", "1.0.0-a..b", "1.0.0-rc."]) {
      const next = buildTargets(previous, [{ name: "fw-s19-odd", length: published.length, sha256: published.hashes.sha256!, custom: { hardwareModels: [MODEL], version, referenceMeasurements: [] } }], expiresIn(86_400_000));
      const response = await admin.request("POST", "/api/v1/tuf/targets", signWith(next, [keyPair("targets", 1), keyPair("targets", 2)]).toJSON());
      expect(response.status, version).toBe(400);
      expect(JSON.stringify(response.body), version).toMatch(/custom\.version/);
    }
    expect((await admin.get("/api/v1/tuf/status")).targetsVersion).toBe(previous.signed.version);
  });
});
