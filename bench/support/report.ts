/**
 * Output of every bench: a short human table on stdout, then, last, one JSON line `{"bench": name, ...figures}`
 * that scripts/run-bench.mjs collects. Figures are plain numbers (units in the key names) so runs can be diffed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "../../test/support/wait.js";

export const BENCH_DIR = fileURLToPath(new URL("..", import.meta.url));
export const RESULTS_DIR = join(BENCH_DIR, "results");

/** Integer knob from the environment, with the issue's size as the default and a hard cap so a typo stays bounded. */
export function envInt(name: string, fallback: number, { min = 1, max = 1_000_000 }: { min?: number; max?: number } = {}): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name}=${raw}: must be an integer in [${min}, ${max}]`);
  }
  return value;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest-rank: the smallest value with at least p% of the values at or below it.
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Rounds for display and for the JSON line: 3 significant decimals are plenty for a 2-core shared machine. */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export function ratio(value: number, baseline: number): number {
  return baseline > 0 ? round(value / baseline, 3) : Number.NaN;
}

export type Row = [label: string, value: string | number, note?: string];

export function printTable(title: string, rows: readonly Row[]): void {
  const width = Math.max(...rows.map(([label]) => label.length));
  const valueWidth = Math.max(...rows.map(([, value]) => String(value).length));
  const lines = rows.map(([label, value, note]) => `  ${label.padEnd(width)}  ${String(value).padStart(valueWidth)}${note ? `  ${note}` : ""}`);
  process.stdout.write(`\n${title}\n${lines.join("\n")}\n`);
}

/** Progress goes to stderr so stdout stays the table plus the final JSON line. */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** The last line of stdout; also kept under bench/results/ (git-ignored) for later comparison. */
export function emitResult(bench: string, figures: Record<string, unknown>): void {
  const result = { bench, at: new Date().toISOString(), ...figures };
  const line = JSON.stringify(result);
  try {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, `${bench}.json`), `${line}\n`);
  } catch {
    // A read-only checkout still gets the figures on stdout.
  }
  process.stdout.write(`${line}\n`);
}

/** Runs `fn` over `items` with at most `concurrency` in flight; results keep the input order. */
export async function mapPool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= items.length) return;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** Retries `fn` on a thrown error (network hiccups under load), `attempts` times in all. */
export async function withRetry<T>(fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/**
 * Polls `probe` every `intervalMs` until it returns a value; at the deadline returns undefined instead of throwing
 * so a bench can still report how far it got. Measurement loops only: never a synchronisation in a test.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, { timeoutMs, intervalMs }: { timeoutMs: number; intervalMs: number }): Promise<T | undefined> {
  // A probe that fails (e.g. a keep-alive socket the loaded server just closed) is one more miss, not the end.
  const miss = (error: unknown) => {
    progress(`probe failed, polling on: ${error instanceof Error ? (error.cause ?? error.message) : String(error)}`);
    return undefined;
  };
  return waitFor("a bench probe", () => probe().catch(miss), { timeoutMs, intervalMs }).catch(() => undefined);
}
