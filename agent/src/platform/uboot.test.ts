/**
 * UBootSlots against the real libubootenv tools on a file-backed redundant environment, with the real boot
 * script (scripts/board/hashward-boot.cmd) run as U-Boot would at every power-on (testing/uboot.ts), and the
 * update engine on top (HW-BOARD-2, HW-UPD-4, HW-UPD-5).
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, type Command } from "../../../shared/index.js";
import { parseAgentConfig } from "../config/index.js";
import { silentLogger } from "../log/index.js";
import { tempDir } from "../testing/index.js";
import { CHECKPOINTS, UpdateEngine, type Checkpoint } from "../update/index.js";
import { TestTufRepo } from "../update/testing/index.js";
import { initTrustedRoot, TufClient } from "../update/tuf.js";
import { AntminerPlatform, NodeCommandExecutor, type CommandExecutor } from "./antminer.js";
import { RecordingExecutor } from "./testing/index.js";
import { createPlatform } from "./index.js";
import { PlatformError } from "./simulated.js";
import { UBootEmulator, ubootEmulatorSkipReason } from "./testing/uboot.js";
import type { SlotName } from "./types.js";
import { UBootSlots, type SlotDevice } from "./uboot.js";

const MODEL = "S19";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** A raw root-filesystem image; `health` is what the slot's health check will find in it. */
const image = (version: string, health: "pass" | "fail" = "pass") => Buffer.from(`ROOTFS ${MODEL} ${version} selftest=${health}\n`.repeat(500));
const IMAGE_A = image("1.0.0");

function command(seq: number, targetName: string): Command {
  return { v: PROTOCOL_VERSION, type: "command", deviceId: `hw-${"0".repeat(24)}`, seq, issuedAt: 0, expiresAt: 1, action: "update", params: { targetName }, sig: "A".repeat(86) };
}

const skip = ubootEmulatorSkipReason();

describe.skipIf(skip !== null)(`U-Boot A/B slots (libubootenv + hashward-boot.cmd)${skip ? `: skipped, ${skip}` : ""}`, () => {
  let dir: { path: string; cleanup: () => void };
  let board: UBootEmulator;
  let healthScript: string;

  beforeEach(() => {
    dir = tempDir("uboot");
    board = new UBootEmulator(dir.path, IMAGE_A);
    // The trial slot's health check: the booted slot's image must not say selftest=fail.
    healthScript = board.writeHealthScript(join(dir.path, "health.sh"));
  });
  afterEach(() => dir.cleanup());

  const slots = (opts: { devices?: Record<SlotName, SlotDevice>; executor?: CommandExecutor; reboot?: () => Promise<void>; rebootWaitMs?: number } = {}) =>
    new UBootSlots({
      slots: opts.devices ?? { a: { kind: "block", path: board.slotFiles.a }, b: { kind: "block", path: board.slotFiles.b } },
      fwEnvConfig: board.fwEnvConfig,
      cmdlineFile: board.cmdlineFile,
      reboot: opts.reboot ?? (async () => void board.boot()),
      healthCommand: [healthScript],
      ...(opts.rebootWaitMs !== undefined ? { rebootWaitMs: opts.rebootWaitMs } : {}),
      ...(opts.executor ? { executor: opts.executor } : {}),
    });
  const stage = (bytes: Buffer) => {
    const file = join(dir.path, `stage-${sha(bytes).slice(0, 8)}.img`);
    writeFileSync(file, bytes);
    return file;
  };

  it("writes only the inactive slot and reads it back; the switch boots it on trial through U-Boot; commit clears the trial", async () => {
    const s = slots();
    expect(await s.status()).toEqual({ active: "a", fallback: null });
    const next = image("1.1.0");
    expect(await s.writeInactive(stage(next), next.length)).toBe("b");
    expect(board.slotBytes("a", IMAGE_A.length)).toEqual(IMAGE_A); // HW-UPD-4: the running slot untouched
    expect(board.slotBytes("b", next.length)).toEqual(next);
    expect(board.env()["hashward_slot"]).toBe("a"); // nothing points at the new slot yet
    await s.bootTrial("b");
    expect(board.bootedSlot()).toBe("b");
    expect(board.env()).toMatchObject({ hashward_slot: "b", hashward_fallback: "a", upgrade_available: "1", bootcount: "1", bootlimit: "3" });
    expect(await s.status()).toEqual({ active: "b", fallback: "a" });
    // on trial, the fallback is the only known-good slot: it is not written
    await expect(s.writeInactive(stage(next), next.length)).rejects.toThrow(/on trial/);
    expect(await s.healthCheck()).toEqual({ healthy: true });
    await s.commit();
    expect(board.env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0", bootcount: "0" });
    expect(board.env()["hashward_fallback"]).toBeUndefined();
    // committed: every later power-on boots b
    expect(board.boot()).toBe("b");
    expect(board.boot()).toBe("b");
    expect(await s.status()).toEqual({ active: "b", fallback: null });
  });

  it("rollback selects the fallback in one write and reboots into it", async () => {
    const s = slots();
    const bad = image("1.1.0", "fail");
    await s.writeInactive(stage(bad), bad.length);
    await s.bootTrial("b");
    expect((await s.healthCheck()).healthy).toBe(false);
    await s.rollback();
    expect(board.bootedSlot()).toBe("a");
    expect(board.env()).toMatchObject({ hashward_slot: "a", upgrade_available: "0" });
    expect(await s.status()).toEqual({ active: "a", fallback: null });
    await s.rollback(); // idempotent
    expect(board.boots).toBe(3);
  });

  it("a trial that is never committed: U-Boot falls back after bootlimit boots (altbootcmd) and the slot is not tried again", async () => {
    const s = slots();
    const next = image("1.1.0");
    await s.writeInactive(stage(next), next.length);
    await s.bootTrial("b"); // boot 1 on trial
    expect(board.boot()).toBe("b"); // 2
    expect(board.boot()).toBe("b"); // 3 = bootlimit
    expect(board.boot()).toBe("a"); // 4 > bootlimit: altbootcmd
    expect(board.env()).toMatchObject({ hashward_slot: "a", upgrade_available: "0", bootcount: "0", hashward_failed: "b" });
    expect(await s.status()).toEqual({ active: "a", fallback: null });
    await expect(s.bootTrial("b")).rejects.toThrow(/fell back to slot a/);
    // a freshly written image clears that verdict
    await s.writeInactive(stage(next), next.length);
    expect(board.env()["hashward_failed"]).toBeUndefined();
  });

  it("an image that reads back different is refused and U-Boot still points at the running slot (UBI volume)", async () => {
    const volumes = { a: join(dir.path, "ubi0_0"), b: join(dir.path, "ubi0_1") };
    copyFileSync(board.slotFiles.a, volumes.a);
    copyFileSync(board.slotFiles.b, volumes.b);
    const real = new NodeCommandExecutor();
    let flip = true;
    const tools = new RecordingExecutor();
    const executor: CommandExecutor = {
      run: async (command, args) => {
        if (command === "ubiupdatevol") {
          await tools.run(command, args);
          const bytes = readFileSync(args[1]!);
          if (flip) bytes[10] = bytes[10]! ^ 0xff; // a flash that does not keep what it was given
          writeFileSync(args[0]!, bytes);
          return { code: 0, stdout: "", stderr: "" };
        }
        return real.run(command, args);
      },
    };
    const s = slots({ devices: { a: { kind: "ubi", volume: volumes.a }, b: { kind: "ubi", volume: volumes.b } }, executor });
    const next = image("1.1.0");
    const envBefore = board.env();
    await expect(s.writeInactive(stage(next), next.length)).rejects.toThrow(PlatformError);
    await expect(s.writeInactive(stage(next), next.length)).rejects.toThrow(/reads back sha256/);
    expect(board.env()).toEqual(envBefore);
    expect(tools.calls.every((c) => c.startsWith(`ubiupdatevol ${volumes.b} `))).toBe(true); // never the running volume
    flip = false;
    expect(await s.writeInactive(stage(next), next.length)).toBe("b");
    expect(readFileSync(volumes.b).subarray(0, next.length)).toEqual(next);
  });

  it("MTD slots: flash_erase + nandwrite -p on the inactive partition, read back with nanddump", async () => {
    const mtd = { a: join(dir.path, "mtd4"), b: join(dir.path, "mtd5") };
    copyFileSync(board.slotFiles.a, mtd.a);
    copyFileSync(board.slotFiles.b, mtd.b);
    const calls: string[] = [];
    const real = new NodeCommandExecutor();
    // mtd-utils on files: erase to 0xff, write at 0, dump the first -l bytes
    const executor: CommandExecutor = {
      run: async (command, args) => {
        calls.push([command, ...args].join(" "));
        if (command === "flash_erase") writeFileSync(args[1]!, Buffer.alloc(readFileSync(args[1]!).length, 0xff));
        else if (command === "nandwrite") {
          const flash = readFileSync(args[2]!);
          readFileSync(args[3]!).copy(flash);
          writeFileSync(args[2]!, flash);
        } else if (command === "nanddump") writeFileSync(args[args.indexOf("-f") + 1]!, readFileSync(args.at(-1)!).subarray(0, Number(args[args.indexOf("-l") + 1])));
        else return real.run(command, args);
        return { code: 0, stdout: "", stderr: "" };
      },
    };
    const s = slots({ devices: { a: { kind: "mtd", device: mtd.a }, b: { kind: "mtd", device: mtd.b } }, executor });
    const next = image("1.1.0");
    expect(await s.writeInactive(stage(next), next.length)).toBe("b");
    const flashCalls = calls.filter((c) => /^(flash_erase|nandwrite|nanddump)/.test(c));
    expect(flashCalls.map((c) => c.split(" ")[0])).toEqual(["flash_erase", "nandwrite", "nanddump"]);
    expect(flashCalls.every((c) => c.includes(mtd.b) && !c.includes(mtd.a))).toBe(true);
    expect(flashCalls[1]).toContain("-p");
    expect(readFileSync(mtd.a)).toEqual(readFileSync(board.slotFiles.a));
  });

  it("a power cut inside the switch's fw_setenv (torn copy) leaves the previous environment: the old slot boots", async () => {
    // A reboot that does not happen: bootTrial gives up (rebootWaitMs 0) without anything else touching the env.
    const s = slots({ reboot: async () => undefined, rebootWaitMs: 0 });
    const next = image("1.1.0");
    await s.writeInactive(stage(next), next.length);
    const files = readFileSync(board.fwEnvConfig, "utf8").trim().split("\n").map((l) => l.split(" ")[0]!);
    const before = files.map((f) => readFileSync(f));
    await expect(s.bootTrial("b")).rejects.toThrow(/still running slot a/);
    const written = files.filter((f, i) => !readFileSync(f).equals(before[i]!));
    expect(written).toHaveLength(1); // one write for the whole switch, into the older copy
    const torn = readFileSync(written[0]!);
    torn.fill(0xff, 100);
    writeFileSync(written[0]!, torn);
    expect(board.env()).toMatchObject({ hashward_slot: "a" });
    expect(board.env()["upgrade_available"]).not.toBe("1");
    expect(board.boot()).toBe("a");
    expect(board.slotBytes("a", IMAGE_A.length)).toEqual(IMAGE_A);
  });

  it("a switch whose reboot never happened is undone by rollback: U-Boot points at the running slot again", async () => {
    const s = slots({ reboot: async () => undefined, rebootWaitMs: 0 });
    const next = image("1.1.0");
    await s.writeInactive(stage(next), next.length);
    await expect(s.bootTrial("b")).rejects.toThrow(PlatformError);
    expect(board.env()).toMatchObject({ hashward_slot: "b", upgrade_available: "1" });
    await expect(s.writeInactive(stage(next), next.length)).rejects.toThrow(/will boot slot b next/);
    await s.rollback();
    expect(board.env()).toMatchObject({ hashward_slot: "a", upgrade_available: "0" });
    expect(board.boot()).toBe("a");
  });

  it("the agent config wires UBootSlots into the Antminer platform, paths under its root", async () => {
    const root = join(dir.path, "root");
    mkdirSync(join(root, "dev"), { recursive: true });
    mkdirSync(join(root, "proc"), { recursive: true });
    mkdirSync(join(root, "etc"), { recursive: true });
    copyFileSync(board.slotFiles.a, join(root, "dev/mmcblk0p2"));
    copyFileSync(board.slotFiles.b, join(root, "dev/mmcblk0p3"));
    copyFileSync(board.cmdlineFile, join(root, "proc/cmdline"));
    copyFileSync(board.fwEnvConfig, join(root, "etc/fw_env.config"));
    const config = parseAgentConfig({
      controlPlaneUrl: "https://plane.example.net",
      mqttUrl: "mqtts://plane.example.net:8883",
      stateDir: "/state",
      model: MODEL,
      firmwareVersion: "1.0.0",
      platform: { kind: "antminer", root, slots: { a: { kind: "block", path: "/dev/mmcblk0p2" }, b: { kind: "block", path: "/dev/mmcblk0p3" } } },
    });
    const platform = createPlatform(config);
    expect(platform.slots).toBeInstanceOf(UBootSlots);
    expect(platform.describe()).toMatchObject({ kind: "antminer", slots: "u-boot" });
    expect(await platform.slots!.status()).toEqual({ active: "a", fallback: null });
    const next = image("1.1.0");
    expect(await platform.slots!.writeInactive(stage(next), next.length)).toBe("b");
    expect(readFileSync(join(root, "dev/mmcblk0p3")).subarray(0, next.length)).toEqual(next);
    expect(readFileSync(join(root, "dev/mmcblk0p2"))).toEqual(readFileSync(board.slotFiles.a));
  });

  describe("the update engine on a U-Boot Antminer", () => {
    let repo: TestTufRepo;
    let stateDir: string;
    let events: Record<string, unknown>[];

    beforeEach(async () => {
      repo = await new TestTufRepo(join(dir.path, "repo")).start();
      stateDir = join(dir.path, "state");
      initTrustedRoot(join(stateDir, "tuf"), repo.rootFile);
      events = [];
    });
    afterEach(async () => repo.stop());

    const engine = (checkpoint?: (point: Checkpoint) => Promise<void>) =>
      new UpdateEngine({
        stateDir,
        model: MODEL,
        configuredFirmwareVersion: "1.0.0",
        platform: new AntminerPlatform({ root: dir.path, executor: new RecordingExecutor(), slots: slots() }),
        tuf: new TufClient({ metadataDir: join(stateDir, "tuf"), metadataUrl: repo.metadataUrl, targetsUrl: repo.targetsUrl, metadataTimeoutMs: 5_000, targetTimeoutMs: 5_000 }),
        maxImageBytes: 64 * 1024 * 1024,
        progress: (_severity, detail) => events.push(detail),
        attest: async () => undefined,
        log: silentLogger(),
        now: Date.now,
        ...(checkpoint ? { checkpoint } : {}),
      });
    const publish = (version: string, health: "pass" | "fail" = "pass") => {
      const bytes = image(version, health);
      repo.addTarget("fw", bytes, { hardwareModels: [MODEL], version });
      repo.publish();
      return bytes;
    };

    it("installs a signed raw image, reboots into it through U-Boot, commits and raises the floor", async () => {
      const bytes = publish("1.1.0");
      const e = engine();
      expect(await e.handle(command(1, "fw"))).toEqual({ status: "done" });
      expect(board.bootedSlot()).toBe("b");
      expect(board.slotBytes("b", bytes.length)).toEqual(bytes);
      expect(board.env()).toMatchObject({ hashward_slot: "b", upgrade_available: "0" });
      expect(e.floor).toBe("1.1.0");
    });

    it("U-Boot fell back while the agent never came up on the new slot: the agent records rolled-back, floor unchanged", async () => {
      publish("1.1.0");
      let frozen!: () => void;
      const reached = new Promise<void>((resolve) => (frozen = resolve));
      void engine(async (p) => {
        if (p !== "trial") return;
        frozen();
        await new Promise(() => undefined); // the agent dies on the new slot before its health check
      }).handle(command(1, "fw"));
      await reached;
      while (board.boot() === "b"); // the new slot keeps failing until U-Boot gives up
      const restarted = engine();
      await restarted.resume();
      expect(restarted.store.journal).toMatchObject({ phase: "rolled-back" });
      expect(events.at(-1)).toMatchObject({ phase: "rolled-back" });
      expect(String(events.at(-1)!["reason"])).toMatch(/fell back/);
      expect(restarted.floor).toBe("1.0.0");
      expect(board.bootedSlot()).toBe("a");
      expect(board.slotBytes("a", IMAGE_A.length)).toEqual(IMAGE_A);
    });

    describe("a power cut at each checkpoint leaves a bootable board; the next start completes or rolls back (HW-UPD-5)", () => {
      for (const point of CHECKPOINTS) {
        for (const healthy of [true, false]) {
          it(`${point}, ${healthy ? "healthy" : "failing"} image`, async () => {
            const bytes = publish("1.1.0", healthy ? "pass" : "fail");
            let frozen!: () => void;
            const reached = new Promise<void>((resolve) => (frozen = resolve));
            void engine(async (p) => {
              if (p !== point) return;
              frozen();
              await new Promise(() => undefined); // power cut: nothing after this line runs
            }).handle(command(7, "fw"));
            await reached;

            // Power on: U-Boot boots a complete image, the old one or the new one.
            const booted = board.boot();
            const complete = booted === "a" ? board.slotBytes("a", IMAGE_A.length).equals(IMAGE_A) : board.slotBytes("b", bytes.length).equals(bytes);
            expect(complete).toBe(true);
            expect(board.slotBytes("a", IMAGE_A.length)).toEqual(IMAGE_A);

            const restarted = engine();
            await restarted.resume();
            const outcome = await restarted.handle(command(7, "fw")); // the plane re-sends the unacked command
            expect(outcome.status).toBe(healthy ? "done" : "failed");
            expect(board.bootedSlot()).toBe(healthy ? "b" : "a");
            expect(board.env()).toMatchObject({ hashward_slot: healthy ? "b" : "a", upgrade_available: "0" });
            expect(restarted.floor).toBe(healthy ? "1.1.0" : "1.0.0");
            expect(board.slotBytes("a", IMAGE_A.length)).toEqual(IMAGE_A);
            // and the next power-on boots the same slot again
            expect(board.boot()).toBe(healthy ? "b" : "a");
          });
        }
      }
    });
  });
});
