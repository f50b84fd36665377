/**
 * Command line of `hashward-agent`. Parsing only; main.ts runs the chosen command.
 * Exit codes: 0 ok, 1 unexpected failure, 2 usage or config error, 3 device revoked.
 */
// The error module alone: main.ts parses the command line before it loads anything a command does not use.
import { HashwardError } from "../../../shared/errors/index.js";
import { parseValueOptions } from "./args.js";

/** Exit codes of `hashward-agent` (every command). */
export const EXIT = { ok: 0, failure: 1, usage: 2, revoked: 3 } as const;

/** A command line that does not parse; main.ts prints it with USAGE and exits 2. */
export class UsageError extends HashwardError {
  override name = "UsageError";
}

/** The command a command line asks for. */
export type CliCommand =
  | { name: "version" }
  | { name: "help" }
  | { name: "run"; configFile: string }
  | { name: "measure"; configFile: string }
  | { name: "tuf"; args: string[] };

/** The help text (`hashward-agent help`). */
export const USAGE = `Usage: hashward-agent <command> [options]

Commands:
  run --config FILE       enroll, connect to the control plane and attest (runs until stopped)
  measure --config FILE   print the measurement list as a JSON array and exit
  tuf ...                 TUF client for conformance suites (init, refresh, download; see \`tuf --help\`)
  help                    show this help
  --version               print the agent version

Every config key can be overridden with HASHWARD_AGENT_<KEY> (e.g. HASHWARD_AGENT_MQTT_URL).
Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 device revoked.
`;

/** Parses argv (without node and script); throws UsageError naming the offending argument or option. */
export function parseCli(argv: readonly string[]): CliCommand {
  const [first, ...rest] = argv;
  if (first === undefined || first === "help" || first === "--help" || first === "-h") {
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])} after help`);
    return { name: "help" };
  }
  if (first === "--version" || first === "-v" || first === "version") {
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])} after --version`);
    return { name: "version" };
  }
  // The conformance suites' command-line shape; agent/src/tuf-cli parses its own options.
  if (first === "tuf") return { name: "tuf", args: rest };
  if (first !== "run" && first !== "measure") {
    throw new UsageError(first.startsWith("-") ? `unknown option ${JSON.stringify(first)}` : `unknown command ${JSON.stringify(first)}`);
  }
  const { values, positionals } = parseValueOptions(
    rest,
    { config: { short: "c" } },
    (problem) =>
      new UsageError(problem.kind === "missing-value" ? `option --config needs a FILE` : `unknown option ${JSON.stringify(problem.option)} for ${first}`),
    { dashValues: false },
  );
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])} for ${first}`);
  const configFile = values.get("config")?.at(-1);
  if (!configFile) throw new UsageError(`${first} needs --config FILE`);
  return { name: first, configFile };
}
