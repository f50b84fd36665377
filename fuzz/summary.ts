/** Global setup of `npm run fuzz`: at the end, prints cases run and failures per parser, and the wall time. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";

export function setup(): () => void {
  const file = process.env.FUZZ_SUMMARY_FILE;
  const started = Date.now();
  if (file) writeFileSync(file, "");
  return () => {
    if (!file || !existsSync(file)) return;
    const rows = readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { parser: string; runs: number; failures: number; ms: number });
    const width = Math.max(6, ...rows.map((r) => r.parser.length));
    const lines = [
      "",
      `fuzz summary (FUZZ_RUNS=${process.env.FUZZ_RUNS ?? "10000"})`,
      `${"parser".padEnd(width)}  ${"cases".padStart(7)}  ${"failures".padStart(8)}  ${"ms".padStart(8)}`,
      ...rows.map((r) => `${r.parser.padEnd(width)}  ${String(r.runs).padStart(7)}  ${String(r.failures).padStart(8)}  ${String(r.ms).padStart(8)}`),
      `${rows.length} parser properties, ${rows.reduce((n, r) => n + r.runs, 0)} cases, ${rows.reduce((n, r) => n + r.failures, 0)} failing, wall time ${Math.round((Date.now() - started) / 1000)} s`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  };
}
