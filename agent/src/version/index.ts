/**
 * The agent's version. `scripts/build-agent.mjs` embeds it with `--define HASHWARD_AGENT_VERSION=...`;
 * when run from source (bun/tsx/vitest) it is read from the repository's package.json.
 */
import { readFileSync } from "node:fs";

declare const HASHWARD_AGENT_VERSION: string | undefined;
declare const HASHWARD_AGENT_NODE_BUNDLE: boolean | undefined;

/** True in the plain-JS bundle for Node (32-bit ARM boards, where Bun has no target). */
export const AGENT_IS_NODE_BUNDLE: boolean = typeof HASHWARD_AGENT_NODE_BUNDLE === "boolean" && HASHWARD_AGENT_NODE_BUNDLE;

function fromPackageJson(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0-dev";
  } catch {
    return "0.0.0-dev";
  }
}

export const AGENT_VERSION: string =
  typeof HASHWARD_AGENT_VERSION === "string" && HASHWARD_AGENT_VERSION ? HASHWARD_AGENT_VERSION : fromPackageJson();
