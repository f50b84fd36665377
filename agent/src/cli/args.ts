/**
 * Option parsing shared by the agent's command lines (`hashward-agent run|measure`, `hashward-agent tuf`), on
 * node:util `parseArgs` (tokens mode, so each CLI words its own usage errors and keeps its exit codes).
 */
import { parseArgs } from "node:util";

/** Why an argument list was refused: an option not declared, or a declared one without its value. */
export type ArgProblem = { kind: "unknown-option"; option: string } | { kind: "missing-value"; option: string };

/** Options that take a value: long name (without `--`) -> optional one-letter short name. */
export type ValueOptions = Record<string, { short?: string }>;

/** What parseValueOptions found: each option's values in order (repeatable), and the positional arguments. */
export interface ParsedArgs {
  values: Map<string, string[]>;
  positionals: string[];
}

/**
 * Parses `argv` where every declared option takes a value (`--name v`, `--name=v`, `-s v`). An undeclared option,
 * or a declared one whose value is missing or empty, is handed to `refuse`, which returns the error to throw.
 * With `dashValues: false` a separate value starting with `-` counts as missing (`--config --verbose`); the
 * inline form (`--config=-x`) is always taken as written. Options after `--` are positionals.
 */
export function parseValueOptions(
  argv: readonly string[],
  options: ValueOptions,
  refuse: (problem: ArgProblem) => Error,
  { dashValues = true }: { dashValues?: boolean } = {},
): ParsedArgs {
  const declared = Object.fromEntries(Object.entries(options).map(([name, { short }]) => [name, short === undefined ? { type: "string" as const } : { type: "string" as const, short }]));
  const { tokens } = parseArgs({ args: [...argv], options: declared, strict: false, allowPositionals: true, tokens: true });
  const values = new Map<string, string[]>();
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    if (!Object.hasOwn(options, token.name)) throw refuse({ kind: "unknown-option", option: token.rawName });
    const value = token.value;
    if (value === undefined || value === "" || (!dashValues && !token.inlineValue && value.startsWith("-"))) {
      throw refuse({ kind: "missing-value", option: `--${token.name}` });
    }
    values.set(token.name, [...(values.get(token.name) ?? []), value]);
  }
  return { values, positionals };
}
