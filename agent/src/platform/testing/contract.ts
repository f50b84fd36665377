/**
 * The Platform contract: one suite of the promises of agent/src/platform/types.ts, run against
 * every implementation (the simulated board, AntminerPlatform on a recorded board, the recording fake) by
 * platform/contract.test.ts, so a fake cannot promise what the real boards do not keep (or the reverse); and the
 * A/B slot contract (UpdateSlots), run against the simulated board's slots and UBootSlots on the emulated U-Boot.
 *
 * What each implementation is observed doing goes through `observe()`, outside the Platform interface (the
 * board's files, the recorded kernel, the fake's calls): isQuarantined() alone would let a board that only
 * claims quarantine pass.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PlatformError } from "../paths.js";
import type { Platform, UpdateSlots } from "../types.js";

/** What the board does, as seen from outside the Platform. */
export interface ObservedBoard {
  /** The miner process runs (hashes). */
  mining: boolean;
  /** While the network is restricted: the hosts still allowed (sorted, unique); null when open. */
  allowedHosts: string[] | null;
  /** The vendor upgrade path (upgrade.cgi) can be used. */
  vendorUpgradeOpen: boolean;
}

/** One implementation, freshly made for one test. */
export interface PlatformUnderTest {
  platform: Platform;
  observe(): ObservedBoard | Promise<ObservedBoard>;
  /** Removes what `make` created (temp dirs, timers). */
  cleanup(): void;
}

/** IP literals, so that no implementation needs a resolver; one repeated, to check they are deduplicated. */
const PLANE_HOSTS = ["198.51.100.20", "192.0.2.10", "198.51.100.20"];
const ALLOWED = ["192.0.2.10", "198.51.100.20"];

/** Paths that would leave the root or are not device paths: every implementation refuses them (PlatformError). */
export const REFUSED_DEVICE_PATHS = ["/../etc/passwd", "/config/../../etc/passwd", "/..", "/config/..", "relative/cgminer.conf", "", "../etc/passwd", "/config/cgminer.conf\0.png", "\0"];

/** Registers the contract suite for one implementation; `make` is called once per test. */
export function platformContract(name: string, make: () => PlatformUnderTest): void {
  describe(`Platform contract: ${name}`, () => {
    const withBoard = (run: (board: PlatformUnderTest) => Promise<void> | void) => async () => {
      const board = make();
      try {
        await run(board);
      } finally {
        board.cleanup();
      }
    };

    it(
      "resolves device paths under its root",
      withBoard(({ platform }) => {
        expect(platform.root).toMatch(/^\//);
        expect(platform.resolve("/config/cgminer.conf")).toBe(join(platform.root, "config/cgminer.conf"));
        expect(platform.resolve("//config//cgminer.conf")).toBe(join(platform.root, "config/cgminer.conf"));
        expect(platform.resolve("/")).toBe(platform.root);
      }),
    );

    it.each(REFUSED_DEVICE_PATHS)(
      "refuses the device path %j with a PlatformError",
      (devicePath) =>
        withBoard(({ platform }) => {
          expect(() => platform.resolve(devicePath)).toThrow(PlatformError);
        })(),
    );

    it(
      "describes itself with its kind and root",
      withBoard(({ platform }) => {
        const description = platform.describe();
        expect(description.kind).toMatch(/^[a-z-]+$/);
        expect(description.root).toBe(platform.root);
      }),
    );

    it(
      "starts released: mining, network open, upgrade path open",
      withBoard(async ({ platform, observe }) => {
        expect(await platform.isQuarantined()).toBe(false);
        expect(await observe()).toEqual({ mining: true, allowedHosts: null, vendorUpgradeOpen: true });
      }),
    );

    it(
      "HW-Q-2: quarantine stops mining, allows only the plane's hosts and shuts the upgrade path; idempotent",
      withBoard(async ({ platform, observe }) => {
        await platform.quarantine({ controlPlaneHosts: PLANE_HOSTS });
        await platform.quarantine({ controlPlaneHosts: PLANE_HOSTS });
        expect(await platform.isQuarantined()).toBe(true);
        expect(await observe()).toEqual({ mining: false, allowedHosts: ALLOWED, vendorUpgradeOpen: false });
      }),
    );

    it(
      "release undoes the quarantine; idempotent, also when never quarantined",
      withBoard(async ({ platform, observe }) => {
        await platform.release();
        await platform.quarantine({ controlPlaneHosts: PLANE_HOSTS });
        await platform.release();
        await platform.release();
        expect(await platform.isQuarantined()).toBe(false);
        expect(await observe()).toEqual({ mining: true, allowedHosts: null, vendorUpgradeOpen: true });
      }),
    );

    it(
      "HW-UPD-6: after disableVendorUpgrade the upgrade path stays shut through quarantine and release",
      withBoard(async ({ platform, observe }) => {
        if (!platform.disableVendorUpgrade) return; // optional capability
        await platform.disableVendorUpgrade();
        await platform.disableVendorUpgrade();
        expect((await observe()).vendorUpgradeOpen).toBe(false);
        await platform.quarantine({ controlPlaneHosts: PLANE_HOSTS });
        await platform.release();
        expect(await observe()).toEqual({ mining: true, allowedHosts: null, vendorUpgradeOpen: false });
      }),
    );

    it(
      "miner restart leaves the miner running",
      withBoard(async ({ platform, observe }) => {
        if (!platform.miner) return; // optional capability
        await platform.miner.restart();
        await platform.miner.restart();
        expect((await observe()).mining).toBe(true);
      }),
    );
  });
}

/** One UpdateSlots implementation, freshly made for one test, booted from slot a. */
export interface SlotsUnderTest {
  slots: UpdateSlots;
  /** Writes an image of `version` for this board to a file; `healthy: false` makes the slot fail its health check. */
  stage(version: string, healthy?: boolean): { file: string; bytes: number };
  cleanup(): void;
}

/** Registers the A/B slot contract (HW-UPD-4, HW-UPD-5) for one implementation; `make` is called once per test. */
export function slotsContract(name: string, make: () => SlotsUnderTest): void {
  describe(`UpdateSlots contract: ${name}`, () => {
    const withSlots = (run: (under: SlotsUnderTest) => Promise<void>) => async () => {
      const under = make();
      try {
        await run(under);
      } finally {
        under.cleanup();
      }
    };

    it(
      "HW-UPD-4: writes only the inactive slot, boots it on trial, refuses to write the fallback, commits",
      withSlots(async ({ slots, stage }) => {
        expect(await slots.status()).toEqual({ active: "a", fallback: null });
        await slots.rollback(); // not on trial: nothing to undo
        await slots.commit(); // nothing to commit
        expect(await slots.status()).toEqual({ active: "a", fallback: null });
        const next = stage("1.1.0");
        expect(await slots.writeInactive(next.file, next.bytes)).toBe("b");
        expect(await slots.status()).toEqual({ active: "a", fallback: null });
        await slots.bootTrial("b");
        expect(await slots.status()).toEqual({ active: "b", fallback: "a" });
        await expect(slots.writeInactive(next.file, next.bytes)).rejects.toBeInstanceOf(PlatformError);
        expect(await slots.healthCheck()).toEqual({ healthy: true });
        await slots.commit();
        await slots.commit();
        expect(await slots.status()).toEqual({ active: "b", fallback: null });
      }),
    );

    it(
      "HW-UPD-5: an unhealthy trial slot is rolled back to the fallback; rollback is idempotent",
      withSlots(async ({ slots, stage }) => {
        const bad = stage("1.1.0", false);
        expect(await slots.writeInactive(bad.file, bad.bytes)).toBe("b");
        await slots.bootTrial("b");
        expect((await slots.healthCheck()).healthy).toBe(false);
        await slots.rollback();
        await slots.rollback();
        expect(await slots.status()).toEqual({ active: "a", fallback: null });
        expect(await slots.healthCheck()).toEqual({ healthy: true });
      }),
    );
  });
}
