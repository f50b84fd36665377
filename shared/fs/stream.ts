/**
 * Streamed file writes: a body (an image upload, a download) written through one FileHandle, received chunks
 * (~64 KiB each from node:https) gathered into writes of WRITE_BATCH_BYTES: one write and one await per MiB instead
 * of per chunk (a 64 MB update download). `writeStreamAtomic` adds what writeFileAtomicSync guarantees for small files:
 * a temporary file in the same directory, fsync, rename, directory fsync, so a reader sees the old file or the
 * complete new one; a failed or refused stream leaves no file behind.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir } from "./atomic.js";

/** Bytes gathered before one write. */
export const WRITE_BATCH_BYTES = 1024 * 1024;

/** How a stream is written. */
export interface StreamWriteOptions {
  /** File mode of a created file; default 0o600. */
  mode?: number;
  /** Open flags: "w" truncates an existing file (a download retried from byte 0), "wx" refuses one; default "w". */
  flags?: "w" | "wx";
  /** Sees each chunk before it is written (count, cap, hash); throwing stops the write and is rethrown. */
  onChunk?(chunk: Uint8Array): void;
  /** fsync the file before closing it; default false. */
  sync?: boolean;
}

/** The chunks of a web ReadableStream (none for a null body); the reader's lock is released (the stream not cancelled) when iteration stops. */
export async function* readableChunks(body: ReadableStream<Uint8Array> | null): AsyncGenerator<Uint8Array> {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Writes `chunks` to `path`; resolves with the byte count. Throws what `onChunk`, the stream or the file system
 * throws (the file is left as far as it got, less the bytes gathered for the next write).
 */
export async function writeStreamToFile(path: string, chunks: AsyncIterable<Uint8Array>, options: StreamWriteOptions = {}): Promise<number> {
  const handle = await open(path, options.flags ?? "w", options.mode ?? 0o600);
  let length = 0;
  // Each chunk is copied in as it arrives, so a producer may reuse its chunk's memory once it yields the next.
  const batch = Buffer.allocUnsafe(WRITE_BATCH_BYTES);
  let filled = 0;
  try {
    for await (const chunk of chunks) {
      options.onChunk?.(chunk);
      length += chunk.byteLength;
      for (let offset = 0; offset < chunk.byteLength; ) {
        const n = Math.min(chunk.byteLength - offset, batch.byteLength - filled);
        batch.set(chunk.subarray(offset, offset + n), filled);
        filled += n;
        offset += n;
        if (filled === batch.byteLength) {
          await handle.write(batch, 0, filled);
          filled = 0;
        }
      }
    }
    if (filled > 0) await handle.write(batch, 0, filled);
    if (options.sync) await handle.sync();
  } finally {
    await handle.close();
  }
  return length;
}

/**
 * Writes `chunks` to `path` atomically (temp file in the same directory, fsync, rename, directory fsync).
 * `beforeRename` checks the complete temp file's content (e.g. its hash) and throws to refuse it. Any failure
 * removes the temp file and leaves `path` as it was; resolves with the byte count.
 */
export async function writeStreamAtomic(
  path: string,
  chunks: AsyncIterable<Uint8Array>,
  options: Omit<StreamWriteOptions, "flags" | "sync"> & { beforeRename?(): void | Promise<void> } = {},
): Promise<number> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(8).toString("hex")}.tmp`);
  try {
    const length = await writeStreamToFile(temp, chunks, { ...options, flags: "wx", sync: true });
    await options.beforeRename?.();
    await rename(temp, path);
    fsyncDir(dir);
    return length;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
