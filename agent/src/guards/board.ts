/**
 * Reading the board for the guards, always through Platform.resolve (the simulated board and a real
 * Antminer differ only in root), with size caps: a hostile file cannot make the agent read a gigabyte.
 */
import { createHash } from "node:crypto";
import { closeSync, lstatSync, openSync, readdirSync, readSync } from "node:fs";
import type { Platform } from "../platform/index.js";

export interface BoardStat {
  kind: "file" | "directory" | "other";
  mode: number;
  size: number;
}

export interface BoardReader {
  /** The file's text (at most maxBytes), or null when it is missing or unreadable. */
  readText(devicePath: string, maxBytes: number): string | null;
  stat(devicePath: string): BoardStat | null;
  /** Entry names of a directory (at most maxEntries), or null. */
  list(devicePath: string, maxEntries: number): string[] | null;
  /**
   * sha256 (hex) of a regular file of at most maxBytes, or null (missing, unreadable, larger). Cached by
   * (inode, size, mtime, ctime): an unchanged /usr/bin is not re-read every guard cycle.
   */
  sha256?(devicePath: string, maxBytes: number): string | null;
}

const HASH_CACHE_MAX = 8192;

export function platformReader(platform: Pick<Platform, "resolve">): BoardReader {
  const hashes = new Map<string, { stamp: string; sha256: string }>();
  // One read buffer for the reader's life: the reads are synchronous, so no two use it at once. A fresh zeroed
  // 64 KiB per file cost a guard cycle more than parsing what was read.
  const scratch = Buffer.allocUnsafe(64 * 1024);
  return {
    sha256(devicePath, maxBytes) {
      let hostPath: string;
      let stamp: string;
      try {
        hostPath = platform.resolve(devicePath);
        const st = lstatSync(hostPath, { bigint: true });
        if (!st.isFile() || st.size > BigInt(maxBytes)) return null;
        stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      } catch {
        return null;
      }
      const hit = hashes.get(hostPath);
      if (hit && hit.stamp === stamp) return hit.sha256;
      let fd: number;
      try {
        fd = openSync(hostPath, "r");
      } catch {
        return null;
      }
      try {
        const hash = createHash("sha256");
        const buffer = Buffer.alloc(64 * 1024);
        let total = 0;
        for (;;) {
          const n = readSync(fd, buffer, 0, buffer.length, null);
          if (n <= 0) break;
          total += n;
          if (total > maxBytes) return null; // grew while we read
          hash.update(buffer.subarray(0, n));
        }
        const sha256 = hash.digest("hex");
        if (hashes.size >= HASH_CACHE_MAX && !hashes.has(hostPath)) hashes.delete(hashes.keys().next().value!);
        hashes.set(hostPath, { stamp, sha256 });
        return sha256;
      } catch {
        return null;
      } finally {
        closeSync(fd);
      }
    },
    readText(devicePath, maxBytes) {
      let fd: number;
      try {
        fd = openSync(platform.resolve(devicePath), "r");
      } catch {
        return null;
      }
      try {
        // /proc files report size 0: read until EOF or the cap, never by stat size.
        const chunks: Buffer[] = [];
        let total = 0;
        while (total < maxBytes) {
          const n = readSync(fd, scratch, 0, Math.min(scratch.length, maxBytes - total), null);
          if (n <= 0) break;
          chunks.push(Buffer.from(scratch.subarray(0, n)));
          total += n;
        }
        return Buffer.concat(chunks, total).toString("utf8");
      } catch {
        return null;
      } finally {
        closeSync(fd);
      }
    },
    stat(devicePath) {
      try {
        const st = lstatSync(platform.resolve(devicePath));
        return { kind: st.isFile() ? "file" : st.isDirectory() ? "directory" : "other", mode: st.mode & 0o7777, size: st.size };
      } catch {
        return null;
      }
    },
    list(devicePath, maxEntries) {
      try {
        return readdirSync(platform.resolve(devicePath)).sort().slice(0, maxEntries);
      } catch {
        return null;
      }
    },
  };
}
