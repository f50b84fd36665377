/**
 * `hashward-agent tuf`: the command-line shape TUF client conformance suites drive, over the
 * same TufClient the update engine uses (so the suite exercises the production code path):
 *
 *   tuf --metadata-dir D init ROOT_FILE
 *   tuf --metadata-dir D --metadata-url U refresh
 *   tuf --metadata-dir D --metadata-url U --target-name N [--target-name N2 ...] --target-base-url T --target-dir O download
 *
 * Exit 0 on full success, 1 otherwise (usage errors included). Trusted metadata is kept in D under non-versioned
 * names (root.json, timestamp.json, snapshot.json, targets.json, <delegated role>.json). Targets are downloaded in
 * order and the command stops at the first failure; an artifact already in O (as the URL-encoded target name)
 * whose length and hashes match the signed ones is not fetched again. Every fetch has a size cap (the signed
 * length for targets, tuf-js's caps for metadata) and a timeout (HASHWARD_TUF_METADATA_TIMEOUT_MS, default 30 s;
 * HASHWARD_TUF_TARGET_TIMEOUT_MS, default 30 min).
 */
import { mkdirSync, readFileSync } from "node:fs";
import { httpsFetch } from "../../../shared/tls/index.js";
import { join } from "node:path";
import { parseValueOptions, type ValueOptions } from "../cli/args.js";
import { initTrustedRoot, TufClient } from "../update/tuf.js";

export const TUF_USAGE = `Usage:
  hashward-agent tuf --metadata-dir D init ROOT_FILE
  hashward-agent tuf --metadata-dir D --metadata-url U refresh
  hashward-agent tuf --metadata-dir D --metadata-url U --target-name N [--target-name N2 ...] --target-base-url T --target-dir O download
  --ca-file F: trust only this PEM CA for https:// (e.g. the plane's ca.pem; default: the system CAs)
`;

export interface TufArgs {
  command: "init" | "refresh" | "download";
  metadataDir: string;
  metadataUrl?: string;
  targetNames: string[];
  targetBaseUrl?: string;
  targetDir?: string;
  rootFile?: string;
  caFile?: string;
}

/** A `tuf` command line that does not parse (exit 1 with TUF_USAGE, as the conformance suites expect). */
export class TufUsageError extends Error {}

const VALUE_OPTIONS: ValueOptions = { "metadata-dir": {}, "metadata-url": {}, "target-name": {}, "target-base-url": {}, "target-dir": {}, "ca-file": {} };

/** Parses the `tuf` arguments (after `tuf`); throws TufUsageError naming the offending argument or option. */
export function parseTufArgs(argv: readonly string[]): TufArgs {
  const parsed = parseValueOptions(argv, VALUE_OPTIONS, (problem) =>
    new TufUsageError(problem.kind === "missing-value" ? `option ${problem.option} needs a value` : `unknown option ${JSON.stringify(problem.option)}`),
  );
  const values = new Map([...parsed.values].map(([name, list]) => [`--${name}`, list]));
  const positional = parsed.positionals;
  const one = (name: string): string | undefined => {
    const list = values.get(name);
    if (list && list.length > 1) throw new TufUsageError(`option ${name} given more than once`);
    return list?.[0];
  };
  const need = (name: string, command: string): string => {
    const value = one(name);
    if (value === undefined) throw new TufUsageError(`${command} needs ${name}`);
    return value;
  };
  const [command, ...rest] = positional;
  if (command !== "init" && command !== "refresh" && command !== "download") {
    throw new TufUsageError(command === undefined ? "missing command (init, refresh or download)" : `unknown command ${JSON.stringify(command)}`);
  }
  const metadataDir = need("--metadata-dir", command);
  if (command === "init") {
    if (rest.length !== 1) throw new TufUsageError("init needs exactly one ROOT_FILE");
    return { command, metadataDir, targetNames: [], rootFile: rest[0]! };
  }
  if (rest.length > 0) throw new TufUsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  const metadataUrl = need("--metadata-url", command);
  const caFile = one("--ca-file");
  const ca = caFile === undefined ? {} : { caFile };
  if (command === "refresh") return { command, metadataDir, metadataUrl, targetNames: [], ...ca };
  const targetNames = values.get("--target-name") ?? [];
  if (targetNames.length === 0) throw new TufUsageError("download needs at least one --target-name");
  return { command, metadataDir, metadataUrl, targetNames, targetBaseUrl: need("--target-base-url", command), targetDir: need("--target-dir", command), ...ca };
}

export interface TufCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
}

function timeoutFromEnv(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 100 || value > 6 * 3_600_000) throw new TufUsageError(`${name}: must be an integer of milliseconds in 100..21600000 (got ${JSON.stringify(raw)})`);
  return value;
}

/** Runs one `tuf` invocation; resolves with the exit code (0 full success, 1 anything else). */
export async function runTufCli(argv: readonly string[], io: TufCliIo): Promise<number> {
  try {
    const args = parseTufArgs(argv);
    if (args.command === "init") {
      initTrustedRoot(args.metadataDir, args.rootFile!);
      return 0;
    }
    const env = io.env ?? process.env;
    const client = new TufClient({
      metadataDir: args.metadataDir,
      metadataUrl: args.metadataUrl!,
      ...(args.targetBaseUrl ? { targetsUrl: args.targetBaseUrl } : {}),
      metadataTimeoutMs: timeoutFromEnv(env, "HASHWARD_TUF_METADATA_TIMEOUT_MS", 30_000),
      targetTimeoutMs: timeoutFromEnv(env, "HASHWARD_TUF_TARGET_TIMEOUT_MS", 1_800_000),
      ...(io.fetch ? { fetch: io.fetch } : args.caFile ? { fetch: httpsFetch({ ca: readFileSync(args.caFile, "utf8") }) as typeof fetch } : {}),
    });
    if (args.command === "refresh") {
      await client.session(async () => undefined);
      return 0;
    }
    const targetDir = args.targetDir!;
    mkdirSync(targetDir, { recursive: true });
    return await client.session(
      async (updater) => {
        for (const name of args.targetNames) {
          const info = await updater.getTargetInfo(name);
          if (!info) {
            io.stderr(`hashward-agent tuf: target ${JSON.stringify(name)} is not in the signed targets metadata\n`);
            return 1;
          }
          const path = join(targetDir, encodeURIComponent(info.path));
          if (await updater.findCachedTarget(info, path)) {
            io.stdout(`${name}: already present at ${path}\n`);
            continue;
          }
          await updater.downloadTarget(info, path);
          io.stdout(`${name}: downloaded to ${path}\n`);
        }
        return 0;
      },
      { targetDir },
    );
  } catch (error) {
    if (error instanceof TufUsageError) {
      io.stderr(`hashward-agent tuf: ${error.message}\n\n${TUF_USAGE}`);
      return 1;
    }
    io.stderr(`hashward-agent tuf: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
