/**
 * Signed updates end to end: the real control plane (TUF repository with online snapshot/timestamp keys only),
 * a release made OFFLINE with the release tool (root 2-of-3, targets keys), uploaded through the operator API,
 * and the compiled agent on an A/B simulated board in enforcing mode. The update command goes through
 * `POST /api/v1/devices/{id}/update`. Steps build on each other, so they share one plane and one miner.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runRelease } from "../../control-plane/src/release/index.js";
import { createSimulatedBoard, type SimulatedBoard } from "../../agent/src/platform/simulated.js";
import { testFirmwareImage } from "../../agent/src/update/testing/index.js";
import { ApiClient, planeFetch } from "../support/api.js";
import { loadDeviceKey } from "../support/device-key.js";
import { AGENT_BINARY, startAgent, startControlPlane, simulatedAgentConfig, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";

let plane: ControlPlane;
let admin: ApiClient;
let work: string;
let proc: ManagedProcess | undefined;
let board: SimulatedBoard;
let configFile: string;
let stateDir: string;
let deviceId: string;

/** The offline release tool, in-process (only `upload` talks to the plane). */
async function release(...argv: string[]): Promise<string> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runRelease(argv, { fetch: (url, init) => planeFetch(url, init), stdout: (t) => out.push(t), stderr: (t) => err.push(t) });
  if (code !== 0) throw new Error(`release ${argv.join(" ")} exited ${code}: ${err.join("")}`);
  return out.join("");
}

/** Reference values the way a release engineer makes them: `measure` on a board running the new firmware. */
async function referenceFor(version: string, image: Buffer): Promise<string> {
  const dir = join(work, `ref-${version}`);
  const refBoard = createSimulatedBoard(join(dir, "board"), { model: MODEL, firmwareVersion: "0.0.0", slots: true });
  writeFileSync(join(dir, "image"), image);
  await refBoard.slots.writeInactive(join(dir, "image"), image.byteLength);
  await refBoard.slots.bootTrial("b");
  await refBoard.slots.commit();
  const config = writeAgentConfig(dir, { ...agentConfigBase(join(dir, "state"), join(dir, "board")), firmwareVersion: version });
  const file = join(dir, "measure.json");
  writeFileSync(file, execFileSync(AGENT_BINARY, ["measure", "--config", config], { encoding: "utf8" }));
  return file;
}

function agentConfigBase(stateDir: string, boardRoot: string): Record<string, unknown> {
  return simulatedAgentConfig(plane, { stateDir, boardRoot, model: MODEL, firmwareVersion: "1.0.0" }, {
    measure: { paths: ["/firmware"] },
    guards: { enabled: false },
  });
}

async function signAndUpload(name: string, version: string, image: Buffer, models = MODEL): Promise<void> {
  const imageFile = join(work, `${name}.img`);
  writeFileSync(imageFile, image);
  const reference = await referenceFor(version, image);
  await release("sign", "--keys", join(work, "keys"), "--image", imageFile, "--name", name, "--version", version, "--models", models, "--reference", reference, "--repo", join(work, "repo"));
  await release("upload", "--url", plane.httpUrl, "--token-file", join(work, "admin.token"), "--repo", join(work, "repo"));
}

const device = () => admin.get(`/api/v1/devices/${deviceId}`);
const updateEvents = async (): Promise<{ phase: string; targetName: string; reason?: string }[]> => {
  const { events } = await admin.get(`/api/v1/devices/${deviceId}/events?limit=500`).catch(() => ({ events: [] }));
  return (events as { kind: string; detail: { phase: string; targetName: string; reason?: string } }[]).filter((e) => e.kind === "update-progress").map((e) => e.detail);
};
/** The command once the device answered it: status "acked" (done) or "failed" with the agent's reason. */
const answered = async (seq: number) => {
  const { commands } = await admin.get(`/api/v1/devices/${deviceId}/commands`);
  const command = (commands as { seq: number; status: string; reason: string | null }[]).find((c) => c.seq === seq);
  return command && (command.status === "acked" || command.status === "failed") ? command : undefined;
};

function run(): ManagedProcess {
  proc = startAgent("update-miner", configFile);
  return proc;
}

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new ApiClient(plane.httpUrl, plane.adminToken);
  work = tempDir("update-agent").path;
  writeFileSync(join(work, "admin.token"), plane.adminToken);
  // Offline: root keys 2-of-3 and a targets key; root v1 carries the plane's exported online keys.
  writeFileSync(join(work, "online-keys.json"), JSON.stringify(await admin.get("/api/v1/tuf/online-keys")));
  await release("keys", "init", "--dir", join(work, "keys"), "--root-keys", "3", "--root-threshold", "2");
  await release("root", "init", "--keys", join(work, "keys"), "--online-keys", join(work, "online-keys.json"), "--repo", join(work, "repo"));
  await release("upload", "--url", plane.httpUrl, "--token-file", join(work, "admin.token"), "--repo", join(work, "repo"));

  const dir = join(work, "miner");
  mkdirSync(dir);
  board = createSimulatedBoard(join(dir, "board"), { model: MODEL, firmwareVersion: "1.0.0", slots: true });
  stateDir = join(dir, "state");
  const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: "update-e2e" });
  configFile = writeAgentConfig(dir, {
    ...agentConfigBase(stateDir, board.root),
    enrollmentToken: token.token,
    mode: "enforcing",
    // The device's TUF root is provisioned, never fetched from the plane unauthenticated.
    update: { trustedRootFile: join(work, "repo", "1.root.json") },
  });
}, 120_000);

afterAll(async () => {
  await proc?.kill("SIGKILL");
  await plane?.proc.kill("SIGKILL");
});

describe("signed updates (real plane, offline-signed release, compiled agent, A/B board)", () => {
  it("enforcing mode disables the vendor upgrade path at start", async () => {
    run();
    deviceId = await waitFor("device key", () => loadDeviceKey(stateDir)?.deviceId);
    await waitFor("device connected", async () => (await device().catch(() => undefined))?.connected === true);
    expect(existsSync(join(board.root, "www/upgrade.cgi"))).toBe(false);
    expect(existsSync(join(board.root, "www/upgrade.cgi.disabled"))).toBe(true);
  });

  it("a signed release installs into the inactive slot and the device attests trusted against the release's reference values", async () => {
    await signAndUpload("fw-1.1.0", "1.1.0", testFirmwareImage(MODEL, "1.1.0"));
    const command = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: "fw-1.1.0" });
    const trusted = await waitFor(
      "trusted on 1.1.0",
      async () => {
        const d = await device();
        return d.appraisal === "trusted" && d.lastAppraisal?.summary?.includes("1.1.0") && d;
      },
      { timeoutMs: 60_000 },
    );
    expect(trusted.lastAppraisal.status).toBe("affirming");
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.1.0\n`);
    const ack = await waitFor("update acked", () => answered(command.seq));
    expect(ack.status).toBe("acked");
    const phases = await waitFor("committed event", async () => {
      const events = await updateEvents();
      return events.some((e) => e.phase === "committed") && events.map((e) => e.phase);
    });
    expect(phases).toEqual(expect.arrayContaining(["download", "verify", "install", "health-check", "committed"]));
  });

  it("the update survives an agent restart (hello reports the new firmware, still trusted)", async () => {
    await proc!.kill("SIGTERM");
    run();
    await waitFor("hello with 1.1.0 and trusted", async () => {
      const d = await device();
      return d.connected && d.firmwareVersion === "1.1.0" && d.appraisal === "trusted" && d;
    }, { timeoutMs: 30_000 });
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    const state = JSON.parse(readFileSync(join(stateDir, "update.json"), "utf8"));
    expect(state).toMatchObject({ floor: "1.1.0", firmwareVersion: "1.1.0" });
  });

  it("an older signed release is refused by the anti-rollback floor; the board is unchanged", async () => {
    await signAndUpload("fw-1.0.5", "1.0.5", testFirmwareImage(MODEL, "1.0.5"));
    const command = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: "fw-1.0.5" });
    const ack = await waitFor("update answered", () => answered(command.seq), { timeoutMs: 30_000 });
    expect(ack.status).toBe("failed");
    expect(ack.reason).toMatch(/1\.0\.5 is not above the anti-rollback floor 1\.1\.0/);
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.1.0\n`);
  });

  it("a signed release for another model is refused; the board is unchanged", async () => {
    await signAndUpload("fw-s9-2.0.0", "2.0.0", testFirmwareImage("S9", "2.0.0"), "S9");
    const command = await admin.post(`/api/v1/devices/${deviceId}/update`, { targetName: "fw-s9-2.0.0" });
    const ack = await waitFor("update answered", () => answered(command.seq), { timeoutMs: 30_000 });
    expect(ack.status).toBe("failed");
    expect(ack.reason).toMatch(/for S9, not this S19/);
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
  });

  it("an out-of-band firmware change is caught by attestation as contraindicated executables", async () => {
    appendFileSync(board.resolve("/firmware/bmminer"), "\n# trojan: dev fee\n");
    const view = await waitFor("contraindicated", async () => {
      const d = await device();
      return d.appraisal === "contraindicated" && d;
    }, { timeoutMs: 30_000 });
    expect(view.lastAppraisal.trustworthiness.executables).toBe("contraindicated");
    expect(view.lastAppraisal.differences).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: "/firmware/bmminer", claim: "executables", kind: "changed" })]),
    );
  });
});
