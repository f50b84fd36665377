/**
 * HW-UPD-1..8, "device left unchanged in every attack", with the COMPILED agent: a simulated A/B board whose
 * `update.*` points at an in-process TUF repository (TestTufRepo), connected to a fake plane (open broker,
 * pinned test command key). For each attack the test stages it on the repository, sends a signed `update`
 * command (next seq), waits for the device's signed ack (`failed`, `rejected: ...`), and checks that every file
 * under the board root is byte-for-byte (and mode-for-mode) what it was, and that `<stateDir>/update.json`
 * (anti-rollback floor, running version, journal) did not move. A last, valid release installs, proving the same
 * setup could install all along. One agent, one repository, attacks in order (TUF state carries over, which the
 * rollback cases rely on).
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulatedBoard, type SimulatedBoard } from "../../agent/src/platform/simulated.js";
import { TestTufRepo, testFirmwareImage } from "../../agent/src/update/testing/index.js";
import { keyPairFromPrivate, signObject, verifySignedObject } from "../../shared/crypto/index.js";
import { ackSchema, downTopic, eventSchema } from "../../shared/protocol/index.js";
import { loadDeviceKey } from "../support/device-key.js";
import { startFakePlane, type FakePlane } from "../support/fake-plane.js";
import { startAgent, writeAgentConfig, type ManagedProcess } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const MODEL = "S19";

let work: string;
let plane: FakePlane;
let repo: TestTufRepo;
let board: SimulatedBoard;
let stateDir: string;
let agent: ManagedProcess | undefined;
let deviceId: string;
let devicePublicKey: Uint8Array;
let seq = 0;
/** The board right after the agent started; every rejected attack must leave exactly this. */
let pristine: Record<string, string>;
/** Metadata signed before a release was withdrawn, replayed by the rollback attacks. */
let replayed: { timestamp: Buffer; snapshotVersion: number; snapshotBytes: Buffer };

/** Every entry under `root`: type, permission bits, and content hash (files) or target (links). */
function boardTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[r] = `link ${mode} -> ${readlinkSync(path)}`;
      else if (st.isDirectory()) {
        out[r] = `dir ${mode}`;
        walk(path, r);
      } else out[r] = `file ${mode} ${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
    }
  };
  walk(root, "");
  return out;
}

const updateState = () => JSON.parse(readFileSync(join(stateDir, "update.json"), "utf8")) as { floor: string; firmwareVersion: string; journal: unknown };

function release(name: string, version: string, models = [MODEL]): Buffer {
  const image = testFirmwareImage(MODEL, version);
  repo.addTarget(name, image, { hardwareModels: models, version });
  return image;
}

/** Sends a signed update command with the next seq and returns that seq. */
async function sendUpdate(targetName: string): Promise<number> {
  seq += 1;
  const now = Date.now();
  const command = signObject(
    { v: 1, type: "command", deviceId, seq, issuedAt: now, expiresAt: now + 120_000, action: "update", params: { targetName } },
    plane.commandKey.privateKey,
  );
  await plane.observer.publishAsync(downTopic(deviceId, "command"), JSON.stringify(command), { qos: 1 });
  return seq;
}

/** The device's ack for `seq`, once its signature verifies with the device key. */
async function signedAck(forSeq: number, what: string) {
  const received = await waitFor(
    `ack for seq ${forSeq} (${what})`,
    () => plane.received.find((r) => r.topic === `asic/v1/${deviceId}/up/ack` && r.message?.seq === forSeq),
    { timeoutMs: 30_000 },
  );
  const ack = ackSchema.parse(received.message);
  verifySignedObject(ack, devicePublicKey);
  return ack;
}

/** The signed update-progress phases the device reported for `forSeq`, in order. */
function phases(forSeq: number): string[] {
  return plane.received
    .filter((r) => r.topic === `asic/v1/${deviceId}/up/event` && r.message?.kind === "update-progress" && r.message.detail?.seq === forSeq)
    .map((r) => {
      const event = eventSchema.parse(r.message);
      verifySignedObject(event, devicePublicKey);
      return String(event.detail["phase"]);
    });
}

/** Sends the update for `targetName`, expects a signed `rejected:` ack matching `reason`, and an untouched device. */
async function expectRejected(what: string, targetName: string, reason: RegExp): Promise<void> {
  const boardBefore = boardTree(board.root);
  const stateBefore = updateState();
  const sent = await sendUpdate(targetName);
  const ack = await signedAck(sent, what);
  expect(ack, agent?.tail()).toMatchObject({ deviceId, seq: sent, action: "update", status: "failed", containment: "none" });
  expect(ack.reason).toMatch(/^rejected: /);
  // Readable for an operator: no minified class names such as "UT: Expected hash ..." from the compiled binary.
  expect(ack.reason).not.toMatch(/^rejected: [A-Za-z]{1,3}: /);
  expect(ack.reason).toMatch(reason);
  await waitFor(`rejected progress event for seq ${sent}`, () => phases(sent).includes("rejected"));
  expect(phases(sent).filter((p) => ["install", "health-check", "committed", "rolled-back"].includes(p))).toEqual([]);
  // The board, byte for byte, and the anti-rollback state.
  expect(boardTree(board.root)).toEqual(boardBefore);
  expect(boardTree(board.root)).toEqual(pristine);
  expect(updateState()).toEqual(stateBefore);
  expect(updateState()).toMatchObject({ floor: "1.0.0", firmwareVersion: "1.0.0", journal: null });
  expect(existsSync(join(stateDir, "update", "download"))).toBe(false);
  expect(agent?.running).toBe(true);
}

beforeAll(async () => {
  work = tempDir("update-attacks").path;
  plane = await startFakePlane();
  // Targets signed 2-of-3, so "below threshold" is a real signature short of it.
  repo = await new TestTufRepo(join(work, "repo"), { targetsKeys: 3, targetsThreshold: 2 }).start();

  // A release published, then withdrawn: its validly signed metadata is what the rollback attacks replay.
  release("fw-withdrawn", "1.1.0");
  repo.publish();
  replayed = {
    timestamp: readFileSync(repo.metadataPath("timestamp.json")),
    snapshotVersion: repo.versions.snapshot,
    snapshotBytes: readFileSync(repo.metadataPath(`${repo.versions.snapshot}.snapshot.json`)),
  };
  repo.targets.delete("fw-withdrawn");
  repo.publish();

  board = createSimulatedBoard(join(work, "board"), { model: MODEL, firmwareVersion: "1.0.0", slots: true });
  stateDir = join(work, "state");
  const config = writeAgentConfig(work, {
    controlPlaneUrl: plane.httpUrl,
    mqttUrl: plane.mqttUrl,
    allowPlaintext: true, // a stand-in plane for attacks on the command path (test/support/fake-plane.ts)
    stateDir,
    model: MODEL,
    firmwareVersion: "1.0.0",
    platform: { kind: "simulated", root: board.root },
    measure: { paths: ["/firmware"] },
    watch: false,
    guards: { enabled: false },
    heartbeatIntervalMs: 1000,
    update: { trustedRootFile: repo.rootFile, metadataUrl: repo.metadataUrl, targetsUrl: repo.targetsUrl, metadataTimeoutMs: 10_000, targetTimeoutMs: 20_000 },
  });
  agent = startAgent("update-attacks", config);
  const hello = await waitFor("the agent's hello", () => plane.received.find((r) => r.topic.endsWith("/up/hello")));
  deviceId = hello.message.deviceId;
  const key = await waitFor("the device key", () => loadDeviceKey(stateDir));
  expect(key.deviceId).toBe(deviceId);
  devicePublicKey = keyPairFromPrivate(key.privateKey).publicKey;
  await waitFor("update.json", () => existsSync(join(stateDir, "update.json")));
  pristine = boardTree(board.root);
  expect(await board.slots.status()).toEqual({ active: "a", fallback: null });
}, 60_000);

afterAll(async () => {
  await agent?.kill("SIGKILL");
  await repo?.stop();
  await plane?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("update attacks against the compiled agent: rejected, device unchanged", () => {
  it("an image whose hash differs from the signed one", async () => {
    const image = release("fw-tampered", "1.1.0");
    repo.publish();
    const tampered = Buffer.from(image);
    tampered[tampered.byteLength - 1] = tampered.at(-1)! ^ 1; // same length, one bit off
    writeFileSync(join(repo.dir, repo.targetPath("fw-tampered").slice("/tuf/".length)), tampered);
    await expectRejected("tampered image", "fw-tampered", /Expected hash [0-9a-f]{64} but got/);
    // It was fetched (the check is the hash, not a missing file).
    expect(repo.requests).toContain(repo.targetPath("fw-tampered"));
  });

  it("targets metadata signed below threshold (1 of the 2 required keys)", async () => {
    release("fw-below-threshold", "1.1.0");
    repo.publish({ targetsSigners: repo.keys.targets.slice(0, 1) });
    await expectRejected("below threshold", "fw-below-threshold", /targets was signed by 1\/2 keys/);
  });

  it("a target added with only the control plane's online keys (snapshot + timestamp)", async () => {
    release("fw-online-keys", "1.1.0");
    repo.publish({ targetsSigners: [repo.keys.snapshot, repo.keys.timestamp] });
    await expectRejected("online keys only", "fw-online-keys", /targets was signed by 0\/2 keys/);
  });

  it("an expired timestamp (freeze)", async () => {
    release("fw-frozen", "1.1.0");
    repo.publish({ timestampExpiresInMs: -60_000 });
    await expectRejected("expired timestamp", "fw-frozen", /timestamp\.json is expired/);
  });

  it("a snapshot that does not match the timestamp (mix-and-match)", async () => {
    release("fw-mixed", "1.1.0");
    repo.publish();
    const older = readFileSync(repo.metadataPath(`${repo.versions.snapshot}.snapshot.json`));
    repo.publish();
    // The timestamp signs snapshot vN+1; the server answers that name with the (validly signed) vN.
    writeFileSync(repo.metadataPath(`${repo.versions.snapshot}.snapshot.json`), older);
    await expectRejected("mix-and-match", "fw-mixed", /snapshot metadata .*Expected hash/);
  });

  it("older metadata versions (rollback): a replayed timestamp that still lists a withdrawn release", async () => {
    writeFileSync(repo.metadataPath("timestamp.json"), replayed.timestamp);
    await expectRejected("timestamp rollback", "fw-withdrawn", /timestamp version 1 is less than current version \d+/);
  });

  it("older metadata versions (rollback): a fresh timestamp naming an older snapshot (online key misused)", async () => {
    repo.signTimestamp({ snapshotVersion: replayed.snapshotVersion, snapshotBytes: replayed.snapshotBytes });
    await expectRejected("snapshot rollback", "fw-withdrawn", /snapshot version 1 is less than current version \d+/);
  });

  it("a target larger than signed (endless data)", async () => {
    release("fw-endless", "1.1.0");
    repo.publish();
    // No content-length: the signed length is the only bound.
    const stream = repo.serveEndless("fw-endless");
    await expectRejected("endless data", "fw-endless", /more than the \d+ bytes allowed/);
    expect(stream.sent()).toBeLessThan(64 * 1024 * 1024);
  });

  it("a firmware version not above the anti-rollback floor", async () => {
    release("fw-0.9.0", "0.9.0");
    repo.publish();
    await expectRejected("older firmware", "fw-0.9.0", /0\.9\.0 is not above the anti-rollback floor 1\.0\.0/);
  });

  it("a target for another model", async () => {
    release("fw-s9", "1.1.0", ["S9"]);
    repo.publish();
    await expectRejected("other model", "fw-s9", /for S9, not this S19/);
  });

  it("a valid signed release still installs on the same setup (ack done, boot switched, floor raised)", async () => {
    release("fw-good", "1.2.0");
    repo.publish();
    const sent = await sendUpdate("fw-good");
    const ack = await signedAck(sent, "valid update");
    expect(ack, agent?.tail()).toMatchObject({ seq: sent, action: "update", status: "done" });
    await waitFor("committed progress event", () => phases(sent).includes("committed"));
    expect(phases(sent)).toEqual(["download", "verify", "install", "health-check", "committed"]);
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    expect(readFileSync(join(board.root, "boot/active"), "utf8")).toBe("b\n");
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.2.0\n`);
    expect(updateState()).toMatchObject({ floor: "1.2.0", firmwareVersion: "1.2.0" });
  });
});
