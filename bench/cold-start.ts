/**
 * Plane cold start: wall time from spawning the control plane (as `npm start` runs it: Bun, embedded aedes, PGlite)
 * to its "control plane ready" line, on a fresh data dir. Three cases, each BENCH_RUNS times (default 2), median:
 *   image     = fresh data dir, the prepared PGlite image for the current migrations (built before timing)
 *   no image  = fresh data dir with HASHWARD_PGLITE_IMAGE_DIR=off: initdb + every migration, the old path
 *   restart   = the baseline: the same plane started again on a data dir that already holds its database
 * Ratios: image / restart (1 = a fresh start costs no more than a restart) and no image / image (the speed-up).
 * Usage: npx tsx bench/cold-start.ts
 */
import { join } from "node:path";
import { ensureDatabaseImage, imageCacheDirFromEnv, MIGRATIONS_FOLDER } from "../control-plane/src/db/index.js";
import { startControlPlane } from "../test/support/processes.js";
import { tempDir } from "../test/support/temp-dir.js";
import { emitResult, envInt, median, printTable, progress, ratio, round } from "./support/report.js";

const RUNS = envInt("BENCH_RUNS", 2, { max: 20 });

async function timeStart(label: string, dataDir: string, env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const plane = await startControlPlane({ dataDir, env });
  const ms = performance.now() - started;
  await plane.proc.kill("SIGTERM");
  progress(`${label}: ${Math.round(ms)} ms`);
  return ms;
}

const cache = imageCacheDirFromEnv();
if (cache === false) throw new Error("HASHWARD_PGLITE_IMAGE_DIR=off: this bench measures the prepared image, unset it");
progress(`preparing the image in ${cache} (not timed)`);
await ensureDatabaseImage(cache, MIGRATIONS_FOLDER);

const image: number[] = [];
const noImage: number[] = [];
const restart: number[] = [];
for (let run = 0; run < RUNS; run++) {
  const dataDir = join(tempDir("bench-cold").path, "data");
  image.push(await timeStart("image (fresh data dir)", dataDir, {}));
  restart.push(await timeStart("restart (existing data dir)", dataDir, {}));
  noImage.push(await timeStart("no image (fresh data dir, initdb)", join(tempDir("bench-cold").path, "data"), { HASHWARD_PGLITE_IMAGE_DIR: "off" }));
}

const imageMs = round(median(image), 0);
const noImageMs = round(median(noImage), 0);
const restartMs = round(median(restart), 0);
printTable(`cold start to "control plane ready", median of ${RUNS}`, [
  ["fresh data dir, prepared image", `${imageMs} ms`, `/restart ${ratio(imageMs, restartMs)}`],
  ["fresh data dir, no image (initdb)", `${noImageMs} ms`, `/image ${ratio(noImageMs, imageMs)}`],
  ["restart on an existing data dir", `${restartMs} ms`, "baseline"],
]);
emitResult("cold-start", {
  runs: RUNS,
  imageMs,
  noImageMs,
  restartMs,
  runsImageMs: image.map((ms) => round(ms, 0)),
  runsNoImageMs: noImage.map((ms) => round(ms, 0)),
  runsRestartMs: restart.map((ms) => round(ms, 0)),
  ratioImageToRestart: ratio(imageMs, restartMs),
  ratioNoImageToImage: ratio(noImageMs, imageMs),
});
