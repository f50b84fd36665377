/**
 * Crash-safe file writes: a reader sees the old file or the new one, never a torn mix. Keys, tokens, agent
 * state and outbox entries all go through here (temp file in the same directory + fsync + rename + fsync of the dir).
 * A write that fails (ENOSPC on a full state dir, EROFS, ...) throws with the old file untouched and its temp file
 * removed (HW-FAULT-10): callers decide what to keep in memory, never a torn file.
 */
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

/** Writes `data` to `path` crash-safe with `mode` (see the file comment); throws what the file system throws, the old file intact. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  // `wx` + explicit mode: the file is created with its final permissions, never world-readable for a moment.
  const fd = openSync(temp, "wx", mode);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let offset = 0;
    while (offset < bytes.byteLength) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
    fchmodSync(fd, mode); // the umask may have narrowed `mode`; the caller asked for exactly this
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    try {
      unlinkSync(temp);
    } catch {
      // best effort: the temp name is unique and ignored by readers
    }
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temp, path);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
  fsyncDir(dir);
}

/** fsyncs a directory so a rename in it is durable; a file system that refuses is ignored (the rename is still atomic). */
export function fsyncDir(dir: string): void {
  // Makes the rename itself durable. Some filesystems refuse fsync on a directory; the rename is still atomic.
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // not supported here
  }
}
