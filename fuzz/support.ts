/**
 * Shared harness of the fuzz campaign (docs/reliability.md "Fuzzing", rule HW-FUZZ-1): every parser of untrusted input is run
 * on fast-check-generated cases, each case under a time budget, and a refusal must be the parser's documented
 * error class. `npm test` runs FUZZ_RUNS_DEFAULT cases per parser; `npm run fuzz` sets FUZZ_RUNS (10,000) and
 * prints one summary line per parser (fuzz/summary.ts).
 */
import { appendFileSync } from "node:fs";
import fc from "fast-check";

/** Cases per parser: `FUZZ_RUNS` (npm run fuzz sets 10000), else 200 for every `npm test` / CI push. */
export const FUZZ_RUNS = (() => {
  const raw = process.env.FUZZ_RUNS;
  if (raw === undefined || raw === "") return 200;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`FUZZ_RUNS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
})();

/**
 * Wall-clock budget of ONE case, in ms. Not a performance assertion: a case of these parsers takes well under a
 * millisecond, so 2 s on a loaded machine only trips on a hang or a super-linear blow-up (ReDoS, quadratic scan).
 */
export const CASE_BUDGET_MS = Number(process.env.FUZZ_CASE_BUDGET_MS ?? 2_000);

/** Shown when a case breaks the budget. */
export class CaseBudgetExceeded extends Error {
  override name = "CaseBudgetExceeded";
}

/** How a parser may refuse: its documented error classes (the refusal must be an instance of one). */
export type ErrorClass = abstract new (...args: never[]) => Error;

/** What one fuzz case came to: the parsed value, or a documented refusal. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

/** A thrown `error` as a refusal when it is one of `refusals`; anything else fails the property. */
function refusal(error: unknown, refusals: readonly ErrorClass[]): { ok: false; error: Error } {
  if (!refusals.some((cls) => error instanceof cls)) {
    throw new Error(`undocumented exception ${(error as Error)?.name ?? typeof error}: ${String((error as Error)?.message ?? error).slice(0, 300)}`, { cause: error });
  }
  return { ok: false, error: error as Error };
}

/** Fails the property when the case that started at `started` (performance.now()) took over CASE_BUDGET_MS. */
function withinBudget<T>(started: number, outcome: Outcome<T>): Outcome<T> {
  const ms = performance.now() - started;
  if (ms > CASE_BUDGET_MS) throw new CaseBudgetExceeded(`one case took ${Math.round(ms)} ms (budget ${CASE_BUDGET_MS} ms)`);
  return outcome;
}

/**
 * Runs `parse(input)` and classifies the outcome. Returns `{ ok: true, value }` or `{ ok: false, error }` for a
 * documented refusal; throws (failing the property) for any other exception or a case over CASE_BUDGET_MS.
 */
export function bounded<T>(parse: () => T, refusals: readonly ErrorClass[]): Outcome<T> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: parse() };
  } catch (error) {
    outcome = refusal(error, refusals);
  }
  return withinBudget(started, outcome);
}

/** Async form of `bounded` (miner API exchanges, HTTP requests). */
export async function boundedAsync<T>(parse: () => Promise<T>, refusals: readonly ErrorClass[]): Promise<Outcome<T>> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: await parse() };
  } catch (error) {
    outcome = refusal(error, refusals);
  }
  return withinBudget(started, outcome);
}

/** Records one parser's figures for the summary `npm run fuzz` prints (no-op under plain `npm test`). */
function record(parser: string, runs: number, failures: number, ms: number): void {
  const file = process.env.FUZZ_SUMMARY_FILE;
  if (file) appendFileSync(file, `${JSON.stringify({ parser, runs, failures, ms: Math.round(ms) })}\n`);
}

/**
 * fc.assert with the campaign's run count; records runs and failures for the summary, then rethrows the
 * shrunk counterexample (fast-check's report names the seed and path to replay it).
 */
export function fuzz<Ts>(parser: string, property: fc.IProperty<Ts>, runs = FUZZ_RUNS): void {
  const started = performance.now();
  const details = fc.check(property, { numRuns: runs });
  record(parser, details.numRuns, details.failed ? 1 : 0, performance.now() - started);
  if (details.failed) throw failure(parser, details);
}

/** The failure with its replay data; the counterexample is printed as (truncated) JSON, never recursively. */
function failure<Ts>(parser: string, details: fc.RunDetails<Ts>): Error {
  let example: string;
  try {
    example = JSON.stringify(details.counterexample, (_k, v: unknown) => (v instanceof Uint8Array ? `bytes:${Buffer.from(v).toString("base64")}` : v))?.slice(0, 4000) ?? "undefined";
  } catch {
    example = "(not printable)";
  }
  return new Error(`${parser}: property failed after ${details.numRuns} runs (seed ${details.seed}, path ${details.counterexamplePath}): ${String(details.errorInstance).slice(0, 1000)}\ncounterexample: ${example}`, { cause: details.errorInstance });
}

/** Async form of `fuzz`. */
export async function fuzzAsync<Ts>(parser: string, property: fc.IAsyncProperty<Ts>, runs = FUZZ_RUNS): Promise<void> {
  const started = performance.now();
  const details = await fc.check(property, { numRuns: runs });
  record(parser, details.numRuns, details.failed ? 1 : 0, performance.now() - started);
  if (details.failed) throw failure(parser, details);
}

// --- mutators --------------------------------------------------------------------------------------------------

/** Byte-wise mutations of a valid encoding: flip, set, insert, delete, truncate, duplicate a slice. */
export function mutatedBytes(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ op: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ op: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ op: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
    fc.record({ op: fc.constant("duplicate" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 64 }) }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 6 }).map((edits) => {
    let b = Buffer.from(valid);
    for (const e of edits) {
      const at = b.length === 0 ? 0 : e.at % (b.length + 1);
      switch (e.op) {
        case "set":
          if (b.length) b[at % b.length] = e.byte;
          break;
        case "flip":
          if (b.length) b[at % b.length]! ^= 1 << e.bit;
          break;
        case "insert":
          b = Buffer.concat([b.subarray(0, at), e.bytes, b.subarray(at)]);
          break;
        case "delete":
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.count)]);
          break;
        case "truncate":
          b = b.subarray(0, at);
          break;
        case "duplicate":
          b = Buffer.concat([b.subarray(0, at + e.count), b.subarray(at)]);
          break;
      }
    }
    return new Uint8Array(b);
  });
}

/** Values that break parsers written for the happy path. */
export const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -0, -1, 1.5, 2 ** 53, -(2 ** 53), 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, "", " ", "\u0000", "\ud800", "__proto__", "constructor", "toString", [], {}, [[[]]], { __proto__: null }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Field-wise mutations of a valid object: replace, delete, add a field, at any depth; swap types; deep nesting. */
export function mutatedObject(valid: object): fc.Arbitrary<unknown> {
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    paths.push(path);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(valid, []);
  const edit = fc.oneof(
    fc.record({ op: fc.constant("replace" as const), path: fc.constantFrom(...paths), value: nastyValue }),
    fc.record({ op: fc.constant("delete" as const), path: fc.constantFrom(...paths) }),
    fc.record({ op: fc.constant("add" as const), path: fc.constantFrom(...paths), key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("__proto__", "constructor", "extra")), value: nastyValue }),
    fc.record({ op: fc.constant("nest" as const), path: fc.constantFrom(...paths), depth: fc.integer({ min: 1, max: 1000 }) }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    const root = { v: structuredClone(valid) as Json };
    for (const e of edits) {
      const full = ["v", ...e.path];
      const key = full[full.length - 1]!;
      let parent: Record<string | number, Json> = root as never;
      let ok = true;
      for (const k of full.slice(0, -1)) {
        const next = parent[k];
        if (!next || typeof next !== "object") {
          ok = false;
          break;
        }
        parent = next as never;
      }
      if (!ok) continue;
      switch (e.op) {
        case "replace":
          parent[key] = e.value as Json;
          break;
        case "delete":
          if (Array.isArray(parent)) parent.splice(Number(key), 1);
          else delete parent[key];
          break;
        case "add": {
          const target = parent[key];
          if (target && typeof target === "object" && !Array.isArray(target)) Object.defineProperty(target, e.key, { value: e.value, enumerable: true, writable: true, configurable: true });
          else if (Array.isArray(target)) target.push(e.value as Json);
          break;
        }
        case "nest": {
          let deep: Json = parent[key] ?? null;
          for (let i = 0; i < e.depth; i++) deep = i % 2 ? [deep] : { a: deep };
          parent[key] = deep;
          break;
        }
      }
    }
    return root.v;
  });
}

/**
 * Same meaning: equal JSON texts once object keys are sorted (a schema may return its keys in its own order).
 * JSON.stringify with a key-sorting replacer rather than a recursive deep-equal, which overflows on the 1000-deep
 * values the mutators make.
 */
export function sameMeaning(a: unknown, b: unknown): boolean {
  const sorted = (_key: string, value: unknown) =>
    value && typeof value === "object" && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : value;
  return JSON.stringify(a, sorted) === JSON.stringify(b, sorted);
}

/** A JSON text of `depth` nested arrays/objects: JSON.parse handles it, a naive recursive walker may not. */
export function deeplyNested(depth: number, leaf = "0"): string {
  let open = "";
  let close = "";
  for (let i = 0; i < depth; i++) {
    if (i % 2) {
      open += "[";
      close = "]" + close;
    } else {
      open += '{"a":';
      close = "}" + close;
    }
  }
  return open + leaf + close;
}
