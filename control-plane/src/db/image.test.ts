import { appendFileSync, chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { afterEach, describe, expect, it } from "vitest";
import { DatabaseImageError, devices, MIGRATIONS_FOLDER, openDatabase } from "./index.js";
import { ensureDatabaseImage, imageKey } from "./image.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const dirs = tempDirPool("dbimage");
afterEach(dirs.cleanup);

// PGlite's initdb takes seconds, many more on a loaded machine: generous limits, no timing asserted.
const SLOW = 300_000;

describe("prepared PGlite image", () => {
  it(
    "a fresh data dir starts from the image: migrated, empty, and its writes never reach the image or another plane",
    async () => {
      const cache = join(dirs.make(), "cache");
      const firstDir = dirs.make();
      const first = await openDatabase({ dataDir: firstDir, imageCacheDir: cache });
      await first.db.insert(devices).values({ id: "hw-first", publicKey: "pk", model: "S19", enrollment: "pending" });
      await first.close();
      const images = readdirSync(cache).filter((name) => name.startsWith("pglite-"));
      expect(images).toEqual([`pglite-${imageKey(MIGRATIONS_FOLDER)}`]);
      expect(readdirSync(cache).filter((name) => name.startsWith("building-"))).toEqual([]);

      const second = await openDatabase({ dataDir: dirs.make(), imageCacheDir: cache });
      expect(await second.db.select().from(devices)).toEqual([]);
      await second.db.insert(devices).values({ id: "hw-second", publicKey: "pk2", model: "S19", enrollment: "pending" });
      await second.close();

      // A data dir that already holds a database is opened, never replaced by the image.
      const reopened = await openDatabase({ dataDir: firstDir, imageCacheDir: cache });
      expect((await reopened.db.select().from(devices)).map((d) => d.id)).toEqual(["hw-first"]);
      await reopened.close();
    },
    SLOW,
  );

  it(
    "a changed or added migration selects a new image with it applied; the stale one is not used",
    async () => {
      const root = dirs.make();
      const cache = join(root, "cache");
      const migrations = join(root, "drizzle");
      cpSync(MIGRATIONS_FOLDER, migrations, { recursive: true });
      const before = imageKey(migrations);
      const staleImage = await ensureDatabaseImage(cache, migrations);

      // Sibling changes: editing an existing migration's bytes, and adding a new migration, both change the key.
      appendFileSync(join(migrations, "0000_init.sql"), "\n-- edited\n");
      const edited = imageKey(migrations);
      expect(edited).not.toBe(before);
      const journalFile = join(migrations, "meta", "_journal.json");
      const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { entries: Array<Record<string, unknown>> };
      journal.entries.push({ idx: journal.entries.length, version: "7", when: Date.now(), tag: "9999_image_test", breakpoints: true });
      writeFileSync(journalFile, JSON.stringify(journal));
      writeFileSync(join(migrations, "9999_image_test.sql"), `CREATE TABLE "image_probe" ("id" text PRIMARY KEY);`);
      const added = imageKey(migrations);
      expect(new Set([before, edited, added]).size).toBe(3);

      const fresh = await ensureDatabaseImage(cache, migrations);
      expect(fresh).not.toBe(staleImage);
      expect(fresh.endsWith(added)).toBe(true);
      const copy = join(root, "copy");
      cpSync(fresh, copy, { recursive: true });
      const client = await PGlite.create(copy);
      const probe = await client.query<{ name: string | null }>(`select to_regclass('public.image_probe')::text as name`);
      expect(probe.rows[0]?.name).toBe("image_probe");
      await client.close();
    },
    SLOW,
  );

  it("HW-DB-2: an image cache writable by others is refused with an error naming it, and no database is created", async () => {
    const cache = join(dirs.make(), "cache");
    mkdirSync(cache);
    chmodSync(cache, 0o777);
    const dataDir = dirs.make();
    const opening = openDatabase({ dataDir, imageCacheDir: cache });
    await expect(opening).rejects.toBeInstanceOf(DatabaseImageError);
    await expect(opening).rejects.toThrow(cache);
    expect(existsSync(join(dataDir, "pglite"))).toBe(false);
    expect(readdirSync(cache)).toEqual([]);
  });
});
