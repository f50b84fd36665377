/**
 * `npm run fuzz`: only the fuzz suites, FUZZ_RUNS cases per parser (default 10,000), one summary line per parser
 * printed at the end (fuzz/summary.ts). `npm test` runs the same files with the main config at 200 cases.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

const summaryFile = process.env.FUZZ_SUMMARY_FILE ?? join(mkdtempSync(join(tmpdir(), "hw-fuzz-")), "summary.jsonl");
process.env.FUZZ_SUMMARY_FILE = summaryFile;

export default defineConfig({
  test: {
    include: ["fuzz/**/*.test.ts"],
    globalSetup: ["fuzz/summary.ts"],
    env: { FUZZ_RUNS: process.env.FUZZ_RUNS ?? "10000", FUZZ_SUMMARY_FILE: summaryFile },
    // 10,000 cases of a slow parser (a TCP exchange, an HTTP request on PGlite) take minutes on a shared machine.
    testTimeout: 1_800_000,
    hookTimeout: 300_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
