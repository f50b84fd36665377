import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createSimulatedBoard, PlatformError } from "../platform/simulated.js";
import { tempDirPool } from "../testing/index.js";
import { testFirmwareImage } from "./testing/index.js";

describe("simulated board: A/B slots and the vendor upgrade path", () => {
  const dirs = tempDirPool("slots");
  afterEach(dirs.cleanup);
  const board = (slots = true) => createSimulatedBoard(join(dirs.make(), "board"), { model: "S19", slots });

  it("writes only the inactive slot, boots it on trial, commits or rolls back", async () => {
    const b = board();
    const image = join(b.root, "..", "img");
    writeFileSync(image, testFirmwareImage("S19", "1.1.0"));
    expect(b.resolve("/firmware/bmminer")).toBe(join(b.root, "slots/a/firmware/bmminer"));
    expect(await b.slots.writeInactive(image, testFirmwareImage("S19", "1.1.0").byteLength)).toBe("b");
    expect(await b.slots.status()).toEqual({ active: "a", fallback: null });
    await b.slots.bootTrial("b");
    expect(await b.slots.status()).toEqual({ active: "b", fallback: "a" });
    expect(b.resolve("/firmware")).toBe(join(b.root, "slots/b/firmware"));
    // the fallback is never overwritten while on trial
    await expect(b.slots.writeInactive(image, 1)).rejects.toThrow(PlatformError);
    expect(await b.slots.healthCheck()).toEqual({ healthy: true });
    await b.slots.rollback();
    expect(await b.slots.status()).toEqual({ active: "a", fallback: null });
    await b.slots.rollback(); // idempotent
    await b.slots.bootTrial("b");
    await b.slots.commit();
    await b.slots.commit();
    expect(await b.slots.status()).toEqual({ active: "b", fallback: null });
  });

  it("a board without slots says so; /firmware stays where it was", async () => {
    const b = board(false);
    expect(b.resolve("/firmware")).toBe(join(b.root, "firmware"));
    await expect(b.slots.status()).rejects.toThrow(/no A\/B slots/);
  });
});
