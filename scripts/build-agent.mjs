#!/usr/bin/env node
/**
 * Builds the agent as single-file Bun executables, fully offline:
 *   dist/agent/hashward-agent-linux-x64    (bun build --compile --target=bun-linux-x64, uses the installed bun)
 *   dist/agent/hashward-agent-linux-arm64  (--target=bun-linux-arm64 --compile-executable-path
 *                                           .cache/bun-linux-aarch64/bun, fetched by fetch-cross-runtime.mjs)
 *   dist/agent/hashward-agent-node.mjs     (plain JS bundle for Node >= 20: 32-bit ARM boards, no Bun target)
 *   dist/agent/hashward-agent-linux-x64-testhooks  (the x64 binary WITH the test hooks, for tests only: the
 *                                           install checkpoint pause, HASHWARD_AGENT_TEST_PAUSE_AT)
 * The version from package.json is embedded with --define, and HASHWARD_AGENT_TEST_HOOKS (false in the release
 * outputs, so the hooks are dead code and removed; true in the -testhooks build). Both Bun binaries need only
 * GLIBC_2.17 (Bun's baseline).
 * Skips work when every output is newer than every agent/ and shared/ source (keeps `npm test` fast);
 * `--force` rebuilds. `--only=x64|arm64|node|x64-testhooks` builds one target.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(repoRoot, "dist", "agent");
const entry = join(repoRoot, "agent", "src", "main.ts");
const crossBun = join(repoRoot, ".cache", "bun-linux-aarch64", "bun");
const force = process.argv.includes("--force");
const only = process.argv.find((a) => a.startsWith("--only="))?.slice("--only=".length);

const version = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")).version;
const targets = [
  { arch: "x64", target: "bun-linux-x64", extra: [] },
  { arch: "arm64", target: "bun-linux-arm64", extra: () => [`--compile-executable-path=${crossBun}`] },
  // 32-bit ARM controllers (Zynq/BeagleBone) are not a Bun target: the same code as one JS file for Node >= 20.
  { arch: "node", target: "node", extra: ["--define=HASHWARD_AGENT_NODE_BUNDLE=true"] },
  // Tests that SIGKILL the agent at an install checkpoint run this build; no release output has the hooks.
  { arch: "x64-testhooks", target: "bun-linux-x64", extra: [], testHooks: true },
].filter((t) => !only || t.arch === only);
if (targets.length === 0) fail(`--only must be x64, arm64, node or x64-testhooks, got ${JSON.stringify(only)}`);

function fail(message) {
  console.error(`build-agent: ${message}`);
  process.exit(1);
}

/** Newest mtime of the inputs that end up in the binary. */
function newestInput() {
  let newest = 0;
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules") walk(path);
      } else if (/\.(ts|js|mjs|json)$/.test(entry.name) && !entry.name.endsWith(".test.ts")) {
        newest = Math.max(newest, statSync(path).mtimeMs);
      }
    }
  };
  walk(join(repoRoot, "agent"));
  walk(join(repoRoot, "shared"));
  for (const file of ["package.json", "package-lock.json", "scripts/build-agent.mjs"]) {
    const path = join(repoRoot, file);
    if (existsSync(path)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const bunBin = join(repoRoot, "node_modules", "bun", "bin", "bun.exe");
const bun = existsSync(bunBin) ? bunBin : "bun";
const inputMtime = newestInput();
mkdirSync(outDir, { recursive: true });

for (const t of targets) {
  const outfile = join(outDir, t.arch === "node" ? "hashward-agent-node.mjs" : `hashward-agent-linux-${t.arch}`);
  if (!force && existsSync(outfile) && statSync(outfile).mtimeMs > inputMtime) {
    console.log(`build-agent: ${relative(repoRoot, outfile)} is up to date (${mib(outfile)})`);
    continue;
  }
  if (t.arch === "arm64" && !existsSync(crossBun)) {
    fail(`${relative(repoRoot, crossBun)} is missing; run "node scripts/fetch-cross-runtime.mjs" (npm install does it)`);
  }
  const compile = t.arch !== "node";
  const args = [
    "build",
    ...(compile ? ["--compile"] : []),
    // No identifier minification: error class names reach operators (ack reasons, logs), and Bun's --keep-names
    // does not keep class names (checked with 1.4.5); the binary's size is the runtime's anyway.
    "--minify-syntax",
    "--minify-whitespace",
    `--target=${t.target}`,
    ...(typeof t.extra === "function" ? t.extra() : t.extra),
    `--define=HASHWARD_AGENT_VERSION=${JSON.stringify(version)}`,
    `--define=HASHWARD_AGENT_TEST_HOOKS=${t.testHooks === true}`,
    // The binary must not pick up a stray bunfig.toml/.env from whatever directory it runs in.
    ...(compile ? ["--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"] : []),
    // Bytecode skips parsing ~1 MB of JS at every start (`measure` and `version` CPU), and --smol
    // (Bun's smaller heap, GC sooner) fits a controller board with 256-512 MB that bmminer mostly needs: idle
    // RssAnon 22.7 -> 18.2 MiB measured together. Costs ~5 MB of binary (2.5 MB gzip). Both work cross-compiled
    // (test/e2e/arm64.test.ts runs the arm64 binary under qemu-user).
    ...(compile ? ["--bytecode", "--compile-exec-argv=--smol"] : []),
    entry,
    `--outfile=${outfile}`,
  ];
  const started = Date.now();
  try {
    execFileSync(bun, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    fail(`bun build for ${t.target} failed:\n${error.stderr?.toString() || error.message}`);
  }
  console.log(`build-agent: built ${relative(repoRoot, outfile)} (${mib(outfile)}, ${Date.now() - started} ms, version ${version})`);
}

function mib(path) {
  return `${(statSync(path).size / 1024 / 1024).toFixed(1)} MiB`;
}
