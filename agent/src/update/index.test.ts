import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, type Command } from "../../../shared/index.js";
import { silentLogger } from "../log/index.js";
import { createSimulatedBoard, type SimulatedBoard } from "../platform/simulated.js";
import { tempDir } from "../testing/index.js";
import { CHECKPOINTS, UpdateEngine, type Checkpoint } from "./index.js";
import { updateProgressDetailSchema } from "../../../shared/protocol/update.js";
import { TestTufRepo, testFirmwareImage } from "./testing/index.js";
import { initTrustedRoot, TufClient } from "./tuf.js";

const MODEL = "S19";

function command(seq: number, params: Record<string, unknown>): Command {
  // The engine runs after the CommandHandler verified the signature (HW-CMD-1); the sig here is a placeholder.
  return { v: PROTOCOL_VERSION, type: "command", deviceId: `hw-${"0".repeat(24)}`, seq, issuedAt: 0, expiresAt: 1, action: "update", params, sig: "A".repeat(86) };
}

/** Every file under the board root with its hash: "unchanged" means exactly this. */
function boardSnapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(path).isDirectory()) walk(path, r);
      else out[r] = createHash("sha256").update(readFileSync(path)).digest("hex");
    }
  };
  walk(root, "");
  return out;
}

describe("UpdateEngine", () => {
  let dir: { path: string; cleanup: () => void };
  let repo: TestTufRepo;
  let board: SimulatedBoard;
  let stateDir: string;
  let events: Record<string, unknown>[];
  let attested: number;

  let savedTmpdir: string | undefined;
  beforeEach(async () => {
    dir = tempDir("update");
    // A private TMPDIR: the downloads' temporary files (BoundedFetcher) must all be gone after each update.
    savedTmpdir = process.env.TMPDIR;
    process.env.TMPDIR = join(dir.path, "tmp");
    mkdirSync(process.env.TMPDIR);
    repo = await new TestTufRepo(join(dir.path, "repo"), { targetsKeys: 3, targetsThreshold: 2 }).start();
    board = createSimulatedBoard(join(dir.path, "board"), { model: MODEL, firmwareVersion: "1.0.0", slots: true });
    stateDir = join(dir.path, "state");
    initTrustedRoot(join(stateDir, "tuf"), repo.rootFile);
    events = [];
    attested = 0;
  });
  afterEach(async () => {
    await repo.stop();
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
    dir.cleanup();
  });

  function engine(checkpoint?: (point: Checkpoint) => Promise<void>, opts: { maxImageBytes?: number } = {}): UpdateEngine {
    return new UpdateEngine({
      stateDir,
      model: MODEL,
      configuredFirmwareVersion: "1.0.0",
      platform: board,
      tuf: new TufClient({ metadataDir: join(stateDir, "tuf"), metadataUrl: repo.metadataUrl, targetsUrl: repo.targetsUrl, metadataTimeoutMs: 5_000, targetTimeoutMs: 5_000 }),
      maxImageBytes: opts.maxImageBytes ?? 64 * 1024 * 1024,
      // Every progress detail the engine sends is the wire contract's (shared/protocol/update.ts).
      progress: (_severity, detail) => events.push(updateProgressDetailSchema.parse(detail)),
      attest: async () => {
        attested++;
      },
      log: silentLogger(),
      now: Date.now,
      ...(checkpoint ? { checkpoint } : {}),
    });
  }

  function release(name: string, version: string, opts: { models?: string[]; selftest?: string } = {}): Buffer {
    const image = testFirmwareImage(MODEL, version, opts.selftest ? { selftest: opts.selftest } : {});
    repo.addTarget(name, image, { hardwareModels: opts.models ?? [MODEL], version });
    return image;
  }

  const phases = () => events.map((e) => e["phase"]);

  it("installs a target named with directories: fetched as dir/<sha256>.name (TUF 5.7.3, consistent snapshot)", async () => {
    release("models/S19/fw-1.1.0", "1.1.0");
    repo.publish();
    expect(await engine().handle(command(1, { targetName: "models/S19/fw-1.1.0" }))).toEqual({ status: "done" });
    expect(repo.requests).toContain(repo.targetPath("models/S19/fw-1.1.0"));
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.1.0\n`);
  });

  it("installs a signed release into the inactive slot, commits, raises the floor, survives a restart", async () => {
    release("fw-1.1.0", "1.1.0");
    repo.publish();
    const e = engine();
    expect(await e.handle(command(1, { targetName: "fw-1.1.0", rolloutId: "r1" }))).toEqual({ status: "done" });
    expect(phases()).toEqual(["download", "verify", "install", "health-check", "committed"]);
    expect(events.at(-1)).toMatchObject({ targetName: "fw-1.1.0", version: "1.1.0", rolloutId: "r1", seq: 1, slot: "b" });
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} 1.1.0\n`);
    expect(e.floor).toBe("1.1.0");
    expect(e.firmwareVersion).toBe("1.1.0");
    expect(attested).toBe(1);
    // trusted metadata kept under non-versioned names
    expect(readdirSync(join(stateDir, "tuf")).sort()).toEqual(["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
    expect(readdirSync(join(dir.path, "tmp"))).toEqual([]); // downloads' temporary files removed

    const restarted = engine();
    await restarted.resume();
    expect(restarted.firmwareVersion).toBe("1.1.0");
    expect(restarted.floor).toBe("1.1.0");
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
    // the same command redelivered after the restart gets the same answer, nothing installed twice
    events = [];
    expect(await restarted.handle(command(1, { targetName: "fw-1.1.0" }))).toEqual({ status: "done" });
    expect(events).toEqual([]);
  });

  it("rolls back when the new slot fails its health check", async () => {
    release("fw-bad", "1.2.0", { selftest: "fail" });
    repo.publish();
    const e = engine();
    const outcome = await e.handle(command(1, { targetName: "fw-bad" }));
    expect(outcome.status).toBe("failed");
    expect(outcome.reason).toMatch(/rolled back: health check failed.*self-test/);
    expect(phases()).toEqual(["download", "verify", "install", "health-check", "rolled-back"]);
    expect(await board.slots.status()).toEqual({ active: "a", fallback: null });
    expect(e.floor).toBe("1.0.0");
    expect(e.firmwareVersion).toBe("1.0.0");
  });

  describe("attacks: rejected, board unchanged", () => {
    async function expectRejected(targetName: string, reason: RegExp, prepare?: () => void): Promise<void> {
      const e = engine();
      prepare?.();
      const before = boardSnapshot(board.root);
      const outcome = await e.handle(command(1, { targetName }));
      expect(outcome.status).toBe("failed");
      if (process.env.HASHWARD_TEST_VERBOSE) console.log(targetName, outcome.reason);
      expect(outcome.reason).toMatch(reason);
      expect(phases().at(-1)).toBe("rejected");
      expect(boardSnapshot(board.root)).toEqual(before);
      expect(e.floor).toBe("1.0.0");
      expect(e.store.journal).toBeNull();
      expect(existsSync(join(stateDir, "update", "download"))).toBe(false);
      expect(readdirSync(join(dir.path, "tmp"))).toEqual([]); // no temporary download left behind
    }

    it("an image whose hash differs from the signed one", async () => {
      const image = release("fw", "1.1.0");
      repo.publish();
      const tampered = Buffer.from(image);
      tampered[tampered.byteLength - 1] = tampered.at(-1)! ^ 1;
      writeFileSync(join(repo.dir, "targets", repo.targetPath("fw").split("/").pop()!), tampered);
      await expectRejected("fw", /Expected hash [0-9a-f]{64} but got/);
    });

    it("targets metadata signed below threshold", async () => {
      release("fw", "1.1.0");
      repo.publish({ targetsSigners: repo.keys.targets.slice(0, 1) });
      await expectRejected("fw", /targets was signed by 1\/2 keys/);
    });

    it("a target added with only the control plane's online keys (snapshot/timestamp)", async () => {
      release("fw", "1.1.0");
      repo.publish({ targetsSigners: [repo.keys.snapshot, repo.keys.timestamp] });
      await expectRejected("fw", /targets was signed by 0\/2 keys/);
    });

    it("an expired timestamp (freeze)", async () => {
      release("fw", "1.1.0");
      repo.publish({ timestampExpiresInMs: -60_000 });
      await expectRejected("fw", /timestamp.json is expired/);
    });

    it("a snapshot that does not match the timestamp (mix-and-match)", async () => {
      release("fw", "1.1.0");
      repo.publish();
      const good = readFileSync(repo.metadataPath("1.snapshot.json"));
      repo.publish(); // snapshot v2 lists targets v2
      // serve the v1 snapshot under the v2 name: its version and hash disagree with what timestamp signed
      writeFileSync(repo.metadataPath("2.snapshot.json"), good);
      await expectRejected("fw", /snapshot metadata .*Expected hash/);
    });

    it("older metadata versions (rollback)", async () => {
      release("other", "1.0.1", { models: ["S9"] });
      repo.publish();
      const oldTimestamp = readFileSync(repo.metadataPath("timestamp.json"));
      repo.publish();
      // the device learns timestamp v2 ...
      expect((await engine().handle(command(1, { targetName: "other" }))).status).toBe("failed");
      events = [];
      // ... then the server answers with v1 again while a new target appears only in older snapshot/targets
      release("fw", "1.1.0");
      writeFileSync(repo.metadataPath("timestamp.json"), oldTimestamp);
      await expectRejected("fw", /timestamp version 1 is less than current version 2/);
    });

    it("a version not above the anti-rollback floor", async () => {
      release("fw-old", "0.9.0");
      release("fw-same", "1.0.0");
      repo.publish();
      await expectRejected("fw-old", /0\.9\.0 is not above the anti-rollback floor 1\.0\.0/);
      await expectRejected("fw-same", /not above the anti-rollback floor/);
    });

    it("a version below the floor raised by an earlier install", async () => {
      release("fw-2", "2.0.0");
      repo.publish();
      expect((await engine().handle(command(1, { targetName: "fw-2" }))).status).toBe("done");
      release("fw-1.5", "1.5.0");
      repo.publish();
      const before = boardSnapshot(board.root);
      const outcome = await engine().handle(command(2, { targetName: "fw-1.5" }));
      expect(outcome.reason).toMatch(/1\.5\.0 is not above the anti-rollback floor 2\.0\.0/);
      expect(boardSnapshot(board.root)).toEqual(before);
    });

    it("a target for another model", async () => {
      release("fw-s9", "1.1.0", { models: ["S9", "L3+"] });
      repo.publish();
      await expectRejected("fw-s9", /for S9, L3\+, not this S19/);
    });

    it("a target larger than signed (endless data)", async () => {
      release("fw", "1.1.0");
      repo.publish();
      const stream = repo.serveEndless("fw");
      await expectRejected("fw", /more than the \d+ bytes allowed/);
      expect(stream.sent()).toBeLessThan(64 * 1024 * 1024);
    });

    it("a target missing from the signed metadata", async () => {
      release("fw", "1.1.0");
      repo.publish();
      await expectRejected("nope", /not in the signed targets metadata/);
    });
  });

  it("an unsigned target name in bad params is rejected without fetching", async () => {
    const e = engine();
    const outcome = await e.handle(command(1, { targetName: 42 }));
    expect(outcome.reason).toMatch(/invalid update params/);
    expect(repo.requests).toEqual([]);
  });

  describe("a crash at each checkpoint leaves a bootable board; the next start completes or rolls back", () => {
    for (const point of CHECKPOINTS) {
      for (const healthy of [true, false]) {
        it(`${point}, ${healthy ? "healthy" : "failing"} image`, async () => {
          release("fw", "1.1.0", healthy ? {} : { selftest: "fail" });
          repo.publish();
          let frozen!: () => void;
          const reached = new Promise<void>((resolve) => (frozen = resolve));
          // A checkpoint that never settles is SIGKILL at that line: nothing after it runs.
          const crashed = engine(async (p) => {
            if (p !== point) return;
            frozen();
            await new Promise(() => undefined);
          });
          void crashed.handle(command(7, { targetName: "fw" }));
          await reached;

          // The board boots a complete slot right now.
          const status = await board.slots.status();
          expect(existsSync(join(board.root, "slots", status.active, "firmware", "bmminer"))).toBe(true);

          const restarted = engine();
          await restarted.resume();
          const after = await board.slots.status();
          expect(after.fallback).toBeNull();
          const beforeSwitch = ["download", "verify", "install", "installed"].includes(point);
          if (beforeSwitch) {
            expect(after.active).toBe("a");
            expect(restarted.store.journal).toBeNull();
            // the plane re-sends the unacked command: it installs (or rolls back) from scratch
            const outcome = await restarted.handle(command(7, { targetName: "fw" }));
            expect(outcome.status).toBe(healthy ? "done" : "failed");
          } else {
            const outcome = await restarted.handle(command(7, { targetName: "fw" }));
            expect(outcome.status).toBe(healthy ? "done" : "failed");
          }
          const final = await board.slots.status();
          expect(final).toEqual({ active: healthy ? "b" : "a", fallback: null });
          expect(restarted.floor).toBe(healthy ? "1.1.0" : "1.0.0");
          expect(readFileSync(board.resolve("/firmware/etc/version"), "utf8")).toBe(`${MODEL} ${healthy ? "1.1.0" : "1.0.0"}\n`);
        });
      }
    }
  });

  it("a trial boot left without a journal is rolled back at start", async () => {
    release("fw", "1.1.0");
    repo.publish();
    await engine().handle(command(1, { targetName: "fw" }));
    // someone boots slot a on trial out of band
    writeFileSync(join(board.root, "boot/trial"), "b\n");
    writeFileSync(join(board.root, "boot/active"), "a\n");
    const e = engine();
    // a finished journal is not an install in progress
    await e.resume();
    expect(await board.slots.status()).toEqual({ active: "b", fallback: null });
  });

  it("refuses every update without a trusted root or slots", async () => {
    const e = new UpdateEngine({
      stateDir,
      model: MODEL,
      configuredFirmwareVersion: "1.0.0",
      platform: board,
      tuf: null,
      maxImageBytes: 1,
      progress: (_s, d) => events.push(d),
      attest: async () => undefined,
      log: silentLogger(),
      now: Date.now,
    });
    expect((await e.handle(command(1, { targetName: "fw" }))).reason).toMatch(/no trusted TUF root/);
  });

  it("refuses a target over update.maxImageBytes before downloading it", async () => {
    release("fw", "1.1.0");
    repo.publish();
    const outcome = await engine(undefined, { maxImageBytes: 100 }).handle(command(1, { targetName: "fw" }));
    expect(outcome.reason).toMatch(/over update.maxImageBytes 100/);
    expect(repo.requests.some((p) => p.startsWith("/tuf/targets/"))).toBe(false);
  });
});
