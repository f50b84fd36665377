import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDirPool } from "../../test/support/temp-dir.js";
import { readableChunks, WRITE_BATCH_BYTES, writeStreamAtomic, writeStreamToFile } from "./stream.js";

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield Buffer.from(part);
}

describe("streamed writes", () => {
  const dirs = tempDirPool("stream");
  let dir: string;
  beforeEach(() => void (dir = dirs.make()));
  afterEach(() => dirs.cleanup());

  it("writes a stream atomically and counts its bytes", async () => {
    const path = join(dir, "image");
    await expect(writeStreamAtomic(path, chunks("ab", "cd"))).resolves.toBe(4);
    expect(readFileSync(path, "utf8")).toBe("abcd");
  });

  it("a refused stream (onChunk or beforeRename throws) leaves the old file and no temp file", async () => {
    const path = join(dir, "image");
    writeFileSync(path, "old");
    const capped = writeStreamAtomic(path, chunks("ab", "cd"), {
      onChunk(chunk) {
        if (chunk.byteLength > 0 && Buffer.from(chunk).toString() === "cd") throw new Error("too large");
      },
    });
    await expect(capped).rejects.toThrow("too large");
    await expect(writeStreamAtomic(path, chunks("new"), { beforeRename: () => Promise.reject(new Error("bad hash")) })).rejects.toThrow("bad hash");
    expect(readFileSync(path, "utf8")).toBe("old");
    expect(readdirSync(dir)).toEqual(["image"]);
  });

  it("writes a stream of odd-sized chunks across several batches byte for byte, even from a producer that reuses its buffer", async () => {
    const path = join(dir, "image");
    const expected = randomBytes(WRITE_BATCH_BYTES * 2 + 12_345);
    async function* reusing(): AsyncGenerator<Uint8Array> {
      const scratch = Buffer.alloc(65_537);
      for (let offset = 0; offset < expected.byteLength; offset += scratch.byteLength) {
        const n = expected.copy(scratch, 0, offset, offset + scratch.byteLength);
        yield scratch.subarray(0, n);
        scratch.fill(0xee); // the producer overwrites its chunk once the next one is asked for
      }
    }
    await expect(writeStreamToFile(path, reusing())).resolves.toBe(expected.byteLength);
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it("a web stream is written as received; a second write truncates (a retried download)", async () => {
    const path = join(dir, "download");
    await writeStreamToFile(path, readableChunks(new Response("0123456789").body!));
    await writeStreamToFile(path, readableChunks(new Response("xy").body!));
    expect(readFileSync(path, "utf8")).toBe("xy");
  });
});
