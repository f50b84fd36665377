/**
 * `npm run db:image` (also run by postinstall): builds the prepared PGlite image for the committed migrations in the
 * image cache (HASHWARD_PGLITE_IMAGE_DIR, default `.cache/pglite-image`), so that the first `npm start` on a fresh
 * data dir copies it instead of running initdb (control-plane/src/db/image.ts). Removes images of older migrations.
 * Never fails an install: on error it says so and the plane builds the image itself when it first needs one.
 */
import { readdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { ensureDatabaseImage, imageCacheDirFromEnv, MIGRATIONS_FOLDER } from "../control-plane/src/db/index.js";

const cacheDir = imageCacheDirFromEnv();
if (cacheDir === false) {
  process.stdout.write("db:image: HASHWARD_PGLITE_IMAGE_DIR=off, nothing to prepare\n");
} else {
  try {
    const image = await ensureDatabaseImage(cacheDir, MIGRATIONS_FOLDER);
    for (const name of readdirSync(cacheDir)) {
      if (name.startsWith("pglite-") && name !== basename(image)) rmSync(join(cacheDir, name), { recursive: true, force: true });
    }
    process.stdout.write(`db:image: PGlite image ready in ${image}\n`);
  } catch (error) {
    process.stdout.write(`db:image: could not prepare the PGlite image (${(error as Error).message}); the plane will build it at first start\n`);
  }
}
