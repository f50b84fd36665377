/**
 * Reading the board for the guards, always through Platform.resolve (the simulated board and a real
 * Antminer differ only in root), with size caps: a hostile file cannot make the agent read a gigabyte.
 */
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
}

export function platformReader(platform: Pick<Platform, "resolve">): BoardReader {
  return {
    readText(devicePath, maxBytes) {
      let fd: number;
      try {
        fd = openSync(platform.resolve(devicePath), "r");
      } catch {
        return null;
      }
      try {
        // /proc files report size 0: read until EOF or the cap, never by stat size.
        const buffer = Buffer.alloc(Math.min(maxBytes, 64 * 1024));
        const chunks: Buffer[] = [];
        let total = 0;
        while (total < maxBytes) {
          const n = readSync(fd, buffer, 0, Math.min(buffer.length, maxBytes - total), null);
          if (n <= 0) break;
          chunks.push(Buffer.from(buffer.subarray(0, n)));
          total += n;
        }
        return Buffer.concat(chunks).toString("utf8");
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
