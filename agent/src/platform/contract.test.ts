/** Every Platform and UpdateSlots implementation runs the one contract suite (testing/contract.ts). */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe } from "vitest";
import { tempDir } from "../testing/index.js";
import { testFirmwareImage } from "../update/testing/index.js";
import { createSimulatedBoard } from "./simulated.js";
import { antminerTestBoard, platformContract, RecordingPlatform, slotsContract, UBootEmulator, ubootEmulatorSkipReason } from "./testing/index.js";
import { UBootSlots } from "./uboot.js";

platformContract("simulated board", () => {
  const dir = tempDir();
  const board = createSimulatedBoard(dir.path, { model: "S19" });
  return {
    platform: board,
    observe: () => {
      const network = board.networkPolicy();
      return { mining: board.minerState() === "running", allowedHosts: network.mode === "restricted" ? network.allow : null, vendorUpgradeOpen: !board.vendorUpgradeDisabled() };
    },
    cleanup: dir.cleanup,
  };
});

platformContract("Antminer (recorded commands)", () => {
  const board = antminerTestBoard({ noIp6tables: true });
  return {
    platform: board.platform,
    observe: () => {
      const { mining, allowed, upgradeCgiOpen } = board.state();
      return { mining, allowedHosts: allowed, vendorUpgradeOpen: upgradeCgiOpen };
    },
    cleanup: board.cleanup,
  };
});

platformContract("recording fake", () => {
  const dir = tempDir();
  const fake = new RecordingPlatform(dir.path);
  return {
    platform: fake,
    observe: () => ({ mining: !fake.quarantined, allowedHosts: fake.allowedHosts(), vendorUpgradeOpen: !fake.quarantined && !fake.vendorUpgradeLocked }),
    cleanup: dir.cleanup,
  };
});

/** Writes `bytes` to a file in `dir` named after `version`; the staged image a slot is written from. */
function stageImage(dir: string, version: string, bytes: Buffer): { file: string; bytes: number } {
  const file = join(dir, `image-${version}-${bytes.length}.bin`);
  writeFileSync(file, bytes);
  return { file, bytes: bytes.length };
}

slotsContract("simulated board", () => {
  const dir = tempDir("slots-contract");
  const board = createSimulatedBoard(join(dir.path, "board"), { model: "S19", slots: true });
  return {
    slots: board.slots,
    stage: (version, healthy = true) => stageImage(dir.path, version, testFirmwareImage("S19", version, healthy ? {} : { selftest: "fail" })),
    cleanup: dir.cleanup,
  };
});

const ubootSkip = ubootEmulatorSkipReason();
/** A raw root-filesystem image for the emulated U-Boot board; its health check fails on `selftest=fail`. */
const rootfs = (version: string, healthy = true) => Buffer.from(`ROOTFS S19 ${version} selftest=${healthy ? "pass" : "fail"}\n`.repeat(500));

describe.skipIf(ubootSkip !== null)(`U-Boot slots${ubootSkip ? `: skipped, ${ubootSkip}` : ""}`, () => {
  slotsContract("U-Boot (libubootenv + hashward-boot.cmd)", () => {
    const dir = tempDir("uboot-contract");
    const board = new UBootEmulator(dir.path, rootfs("1.0.0"));
    const slots = new UBootSlots({
      slots: { a: { kind: "block", path: board.slotFiles.a }, b: { kind: "block", path: board.slotFiles.b } },
      fwEnvConfig: board.fwEnvConfig,
      cmdlineFile: board.cmdlineFile,
      reboot: async () => void board.boot(),
      healthCommand: [board.writeHealthScript(join(dir.path, "health.sh"))],
    });
    return { slots, stage: (version, healthy = true) => stageImage(dir.path, version, rootfs(version, healthy)), cleanup: dir.cleanup };
  });
});
