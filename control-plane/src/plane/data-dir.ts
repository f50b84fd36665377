/**
 * HW-DATA-1 (docs/rules.md): the data folder holds the database, the command-signing key, the TUF online keys and
 * the admin token; no other local user may read or change any of it. At start the folder is created 0700, or,
 * when it exists, refused if another user owns it and otherwise tightened to 0700 with everything below it
 * (files and folders lose every group/other bit; a warn line says how many were fixed). The entry point also sets
 * umask 077 (control-plane/src/main.ts). PGlite's emscripten file system sets its files' modes itself (0666/0777
 * whatever the umask, measured on Bun and Node), so the database files are made private again once the database
 * is open (privatizeDatabaseFiles); a file it creates later is still unreachable for other users, because the
 * folder above it is 0700.
 */
import { chmod, lstat, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { ConfigError } from "../../../shared/errors/index.js";

/** Group and other permission bits. */
const SHARED_BITS = 0o077;

/** Removes group/other bits from everything below `dir` (not following symlinks); returns how many were changed. */
async function tightenTree(dir: string): Promise<number> {
  let changed = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue; // chmod would follow it out of the folder
    const stats = await lstat(path);
    if ((stats.mode & SHARED_BITS) !== 0) {
      await chmod(path, stats.mode & 0o7700);
      changed += 1;
    }
    if (entry.isDirectory()) changed += await tightenTree(path);
  }
  return changed;
}

/**
 * Makes `dataDir` private (HW-DATA-1). Throws ConfigError naming HASHWARD_DATA_DIR when the folder is not a
 * directory or belongs to another user (checked only where the process has a uid, i.e. POSIX).
 */
export async function secureDataDir(dataDir: string, logger: Logger): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const stats = await lstat(dataDir);
  if (!stats.isDirectory()) throw new ConfigError(`HASHWARD_DATA_DIR=${dataDir}: not a directory`, "HASHWARD_DATA_DIR");
  const uid = typeof process.getuid === "function" ? process.getuid() : null;
  if (uid !== null && stats.uid !== uid) {
    throw new ConfigError(
      `HASHWARD_DATA_DIR=${dataDir}: owned by uid ${stats.uid}, not by this process (uid ${uid}); refusing to keep keys and the database there`,
      "HASHWARD_DATA_DIR",
    );
  }
  const before = stats.mode & 0o7777;
  if ((before & SHARED_BITS) !== 0) await chmod(dataDir, 0o700);
  const below = await tightenTree(dataDir);
  if ((before & SHARED_BITS) !== 0 || below > 0) {
    logger.warn(
      { dataDir, mode: before.toString(8), tightenedEntries: below },
      "data folder was readable by other users; tightened to 0700 (files 0600)",
    );
  }
}

/** After the database opened: removes group/other bits PGlite set on its own files (HW-DATA-1); logs at debug. */
export async function privatizeDatabaseFiles(dataDir: string, logger: Logger): Promise<void> {
  const changed = await tightenTree(dataDir);
  if (changed > 0) logger.debug({ dataDir, tightenedEntries: changed }, "database files made private");
}
