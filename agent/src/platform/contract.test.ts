/** Every Platform implementation runs the one contract suite (testing/contract.ts). */
import { tempDir } from "../testing/index.js";
import { createSimulatedBoard } from "./simulated.js";
import { antminerTestBoard, platformContract, RecordingPlatform } from "./testing/index.js";

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
