import { open } from "node:fs/promises";
import { Readable } from "node:stream";

/**
 * The bytes of `path` as a Readable of 1 MiB chunks, each a fresh Buffer (TargetFile.verify may queue them), read
 * with plain FileHandle reads: Bun's `createReadStream` hashes at a fraction of the disk's speed (issue 13, as in
 * agent/src/measure). For TargetFile.verify (TUF 5.7.3 length and hashes), which takes a Readable.
 */
export function fileChunks(path: string): Readable {
  return Readable.from(readChunks(path));
}

async function* readChunks(path: string): AsyncGenerator<Buffer> {
  const file = await open(path, "r");
  try {
    for (;;) {
      const buffer = Buffer.allocUnsafe(1024 * 1024);
      const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) return;
      yield bytesRead === buffer.byteLength ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}
