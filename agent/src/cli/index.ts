/**
 * Command line of `hashward-agent`. Parsing only; main.ts runs the chosen command.
 * Exit codes: 0 ok, 1 unexpected failure, 2 usage or config error, 3 device revoked.
 */
// The error module alone: main.ts parses the command line before it loads anything a command does not use.
import { HashwardError } from "../../../shared/errors/index.js";

/** Exit codes of `hashward-agent` (every command). */
export const EXIT = { ok: 0, failure: 1, usage: 2, revoked: 3 } as const;

export class UsageError extends HashwardError {
  override name = "UsageError";
}

export type CliCommand =
  | { name: "version" }
  | { name: "help" }
  | { name: "run"; configFile: string }
  | { name: "measure"; configFile: string }
  | { name: "tuf"; args: string[] };

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
  let configFile: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--config" || arg === "-c") {
      const value = rest[++i];
      if (value === undefined || value.startsWith("-")) throw new UsageError(`option --config needs a FILE`);
      configFile = value;
    } else if (arg.startsWith("--config=")) {
      configFile = arg.slice("--config=".length);
      if (!configFile) throw new UsageError(`option --config needs a FILE`);
    } else {
      throw new UsageError(arg.startsWith("-") ? `unknown option ${JSON.stringify(arg)} for ${first}` : `unexpected argument ${JSON.stringify(arg)} for ${first}`);
    }
  }
  if (!configFile) throw new UsageError(`${first} needs --config FILE`);
  return { name: first, configFile };
}
