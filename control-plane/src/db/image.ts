/**
 * A prepared PGlite database image: a closed PGlite data directory on which every committed drizzle-kit migration
 * has been applied and nothing else written. Creating a PGlite database runs initdb inside WebAssembly, which takes
 * most of a fresh plane's start (about 12 s of 13 s on a 2-core machine); copying a prepared directory and
 * opening it costs as much as a restart. PGlite's own `loadDataDir` tarball works too but unpacks through its
 * in-memory file system, measurably slower than a native recursive copy, so the image is kept as a plain directory.
 *
 * The migrations stay the source of truth: the image is named by a hash of the PGlite version and every migration
 * file (`imageKey`), so a changed, added or removed migration, or a PGlite upgrade, selects a new image and the
 * stale one is never used; openDatabase still runs the migrator on the copy (a no-op when it is current).
 * Images are made at install (`npm run db:image`, run by postinstall) or lazily by the first plane that needs one,
 * built in a temporary directory and renamed into place, so concurrent builders never expose a half-built image.
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";

/** Default image cache: `<repository>/.cache/pglite-image` (git-ignored), overridden by HASHWARD_PGLITE_IMAGE_DIR. */
export const DEFAULT_IMAGE_CACHE_DIR = fileURLToPath(new URL("../../../.cache/pglite-image", import.meta.url));

/** PGlite's version (its data directory format follows its PostgreSQL build); package.json is not exported, its files are. */
function pgliteVersion(): string {
  const wasm = createRequire(import.meta.url).resolve("@electric-sql/pglite/pglite.wasm");
  return (JSON.parse(readFileSync(join(dirname(wasm), "..", "package.json"), "utf8")) as { version: string }).version;
}

/** Written inside a finished image; an image directory without it is never used. */
const IMAGE_MARKER = "hashward-image.json";

/** Thrown when the image cache cannot be trusted or used; the message names the directory and what is wrong. */
export class DatabaseImageError extends Error {
  override name = "DatabaseImageError";
}

/** The image cache chosen by the environment: a directory, or `false` when HASHWARD_PGLITE_IMAGE_DIR is `off`. */
export function imageCacheDirFromEnv(env: NodeJS.ProcessEnv = process.env): string | false {
  const value = env.HASHWARD_PGLITE_IMAGE_DIR;
  if (value === "off") return false;
  return value === undefined || value === "" ? DEFAULT_IMAGE_CACHE_DIR : value;
}

/**
 * The image's name: hex SHA-256 over the PGlite version and, in journal order, every migration file's name and bytes
 * (and the journal itself). Any change to either gives a new key, which is how a stale image is detected.
 */
export function imageKey(migrationsFolder: string): string {
  const hash = createHash("sha256");
  hash.update(`pglite ${pgliteVersion()}\n`);
  const journal = readFileSync(join(migrationsFolder, "meta", "_journal.json"));
  hash.update(journal);
  const entries = (JSON.parse(journal.toString("utf8")) as { entries: Array<{ tag: string }> }).entries;
  for (const { tag } of entries) {
    hash.update(`\n${tag}\n`);
    hash.update(readFileSync(join(migrationsFolder, `${tag}.sql`)));
  }
  return hash.digest("hex");
}

/**
 * HW-DB-2: an image is only as trustworthy as the directory it sits in (a planted image would start the plane with
 * someone else's rows), so the cache must be owned by this user and not writable by group or others.
 * @throws DatabaseImageError naming the directory otherwise.
 */
function assertPrivateDirectory(directory: string): void {
  const stats = statSync(directory);
  if (!stats.isDirectory()) throw new DatabaseImageError(`database image cache ${directory} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) {
    throw new DatabaseImageError(`database image cache ${directory} is owned by uid ${stats.uid}, not this user (${uid}); refusing to use it (HW-DB-2)`);
  }
  if ((stats.mode & 0o022) !== 0) {
    throw new DatabaseImageError(
      `database image cache ${directory} is writable by group or others (mode ${(stats.mode & 0o777).toString(8)}); refusing to use it (HW-DB-2)`,
    );
  }
}

/**
 * Returns the directory of the current image in `cacheDir` for these migrations, building it first when missing
 * (seconds: PGlite initdb plus the migrations). Safe to call from several processes at once.
 * @throws DatabaseImageError when the cache directory is not private to this user (HW-DB-2); errors from PGlite
 *   or a migration when building fails (nothing is left behind but a temporary directory that is removed).
 */
export async function ensureDatabaseImage(cacheDir: string, migrationsFolder: string): Promise<string> {
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  assertPrivateDirectory(cacheDir);
  const key = imageKey(migrationsFolder);
  const image = join(cacheDir, `pglite-${key}`);
  if (existsSync(join(image, IMAGE_MARKER))) return image;

  const building = mkdtempSync(join(cacheDir, "building-"));
  try {
    const client = await PGlite.create(join(building, "pglite"));
    try {
      await migratePglite(drizzlePglite({ client }) as never, { migrationsFolder });
    } finally {
      await client.close();
    }
    writeFileSync(join(building, "pglite", IMAGE_MARKER), `${JSON.stringify({ key, createdAt: new Date().toISOString() })}\n`);
    try {
      renameSync(join(building, "pglite"), image);
    } catch (error) {
      // Another process finished the same image first: use theirs.
      if (!existsSync(join(image, IMAGE_MARKER))) throw error;
    }
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
  return image;
}

/** True when `directory` is absent or empty: the only case an image is copied into (never over a database). */
export function isFreshDirectory(directory: string): boolean {
  return !existsSync(directory) || readdirSync(directory).length === 0;
}

/**
 * Copies `image` to `target` (which must be absent or empty) through a temporary sibling renamed into place, so a
 * crash mid-copy never leaves a half-copied database where the plane would open it.
 */
export function copyDatabaseImage(image: string, target: string): void {
  const staging = `${target}.copying-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  cpSync(image, staging, { recursive: true });
  rmSync(join(staging, IMAGE_MARKER), { force: true });
  if (existsSync(target)) rmdirSync(target); // absent or empty (checked by the caller); rmdir refuses anything else
  renameSync(staging, target);
}
