/**
 * The install checkpoint hook (HASHWARD_AGENT_TEST_PAUSE_AT: freeze the install so a test can SIGKILL the agent
 * there) exists only in the test build: `scripts/build-agent.mjs` defines HASHWARD_AGENT_TEST_HOOKS=false for every
 * release output, and the hook is removed as dead code. Skips what is not built.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const DIST = resolve(import.meta.dirname, "../../../dist/agent");
const HOOK = "HASHWARD_AGENT_TEST_PAUSE_AT";
const RELEASE_OUTPUTS = ["hashward-agent-linux-x64", "hashward-agent-linux-arm64", "hashward-agent-node.mjs"];
const TEST_BUILD = "hashward-agent-linux-x64-testhooks";

const contains = (file: string, text: string) => readFileSync(resolve(DIST, file)).includes(text);

describe("the test hooks stay out of the release builds", () => {
  for (const file of RELEASE_OUTPUTS) {
    it.skipIf(!existsSync(resolve(DIST, file)))(`${file} does not contain the pause hook`, () => {
      expect(contains(file, HOOK)).toBe(false);
      expect(contains(file, "paused-at-")).toBe(false);
    });
  }

  it.skipIf(!existsSync(resolve(DIST, TEST_BUILD)))(`${TEST_BUILD} (tests only) has it`, () => {
    expect(contains(TEST_BUILD, HOOK)).toBe(true);
  });
});
