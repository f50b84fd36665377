import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDirPool } from "../testing/index.js";
import { createSimulatedBoard } from "./index.js";

describe("simulated board", () => {
  const dirs = tempDirPool();
  afterEach(dirs.cleanup);
  const board = () => createSimulatedBoard(dirs.make(), { model: "S19" });

  it("creates the board tree", () => {
    const b = board();
    for (const p of ["firmware/bmminer", "firmware/lib/libcgminer.so", "config/cgminer.conf", "dev/mtd2", "www/upgrade.cgi", "run/miner.state"]) {
      expect(existsSync(join(b.root, p))).toBe(true);
    }
    expect(b.describe()).toMatchObject({ kind: "simulated", miner: "running", network: "open" });
  });

  it("quarantine stops mining, restricts the network and disables the upgrade path; idempotent; release undoes it", async () => {
    const b = board();
    expect(await b.isQuarantined()).toBe(false);
    await b.quarantine({ controlPlaneHosts: ["plane.example.net", "mqtt.example.net", "plane.example.net"] });
    await b.quarantine({ controlPlaneHosts: ["plane.example.net", "mqtt.example.net"] });
    expect(await b.isQuarantined()).toBe(true);
    expect(b.minerState()).toBe("stopped");
    expect(b.networkPolicy()).toEqual({ mode: "restricted", allow: ["mqtt.example.net", "plane.example.net"] });
    expect(existsSync(join(b.root, "www/upgrade.cgi"))).toBe(false);
    expect(statSync(join(b.root, "www/upgrade.cgi.disabled")).mode & 0o111).toBe(0);
    await b.release();
    await b.release();
    expect(await b.isQuarantined()).toBe(false);
    expect(b.minerState()).toBe("running");
    expect(b.networkPolicy()).toEqual({ mode: "open" });
    expect(statSync(join(b.root, "www/upgrade.cgi")).mode & 0o100).toBe(0o100);
  });
});
