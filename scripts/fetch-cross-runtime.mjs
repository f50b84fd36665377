#!/usr/bin/env node
/**
 * Makes sure `.cache/bun-linux-aarch64/bun` exists for the installed Bun version, so `build-agent.mjs` can
 * cross-compile the arm64 agent offline (`--compile-executable-path`). Run by `postinstall`.
 *
 * `@oven/bun-linux-aarch64` cannot be a normal dependency: npm refuses its `cpu` field on x64. So we
 * `npm pack` the exact version (the registry through its ordinary client; nothing else touches the network)
 * and extract it with `tar`. Idempotent and quiet when the binary is already there.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cacheDir = join(repoRoot, ".cache");
const targetDir = join(cacheDir, "bun-linux-aarch64");
const targetBin = join(targetDir, "bun");
const versionFile = join(targetDir, "VERSION");

function fail(message) {
  console.error(`fetch-cross-runtime: ${message}`);
  process.exit(1);
}

function installedBunVersion() {
  const pkgPath = join(repoRoot, "node_modules", "bun", "package.json");
  if (!existsSync(pkgPath)) return null;
  return JSON.parse(readFileSync(pkgPath, "utf8")).version;
}

const version = installedBunVersion();
if (!version) {
  // `npm install --omit=dev` has no bun: nothing to cross-compile with, so nothing to fetch.
  process.exit(0);
}
const quiet = !process.argv.includes("--verbose");

if (existsSync(targetBin) && existsSync(versionFile) && readFileSync(versionFile, "utf8").trim() === version) {
  if (!quiet) console.log(`fetch-cross-runtime: ${targetBin} (bun ${version}) present`);
  process.exit(0);
}

const spec = `@oven/bun-linux-aarch64@${version}`;
mkdirSync(cacheDir, { recursive: true });
let tarball;
try {
  const out = execFileSync("npm", ["pack", spec, "--pack-destination", cacheDir, "--json", "--silent"], {
    cwd: cacheDir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const parsed = JSON.parse(out.slice(out.indexOf("[")));
  tarball = join(cacheDir, parsed[0].filename);
} catch (error) {
  fail(
    `could not fetch ${spec} with "npm pack" (${error.stderr?.toString().trim() || error.message}). ` +
      "The arm64 agent cannot be cross-compiled without it; retry with network access to the npm registry.",
  );
}

const staging = join(cacheDir, `bun-linux-aarch64.tmp-${process.pid}`);
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
try {
  execFileSync("tar", ["-xzf", tarball, "-C", staging, "--strip-components=1"], { stdio: ["ignore", "ignore", "pipe"] });
} catch (error) {
  rmSync(staging, { recursive: true, force: true });
  fail(`could not extract ${tarball}: ${error.stderr?.toString().trim() || error.message}`);
}
const extractedBin = join(staging, "bin", "bun");
if (!existsSync(extractedBin)) {
  rmSync(staging, { recursive: true, force: true });
  fail(`${tarball} has no bin/bun`);
}
chmodSync(extractedBin, 0o755);
writeFileSync(join(staging, "bin", "VERSION"), `${version}\n`);
// Swap in atomically so a half-extracted tree never looks present.
rmSync(targetDir, { recursive: true, force: true });
renameSync(join(staging, "bin"), targetDir);
rmSync(staging, { recursive: true, force: true });
rmSync(tarball, { force: true });
console.log(`fetch-cross-runtime: installed ${targetBin} (bun ${version})`);
