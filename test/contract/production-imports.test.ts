/**
 * Test code stays out of what ships: the modules the entry points reach through their static and
 * dynamic imports include no test double or test kit: nothing under a `testing/` folder, no `testing.ts`, no
 * `fake*` or `test-*` module, no `*.test.ts`, nothing from the repo's `test/`. Fakes live in `testing/` folders
 * that only tests import; this walks the import graph from every entry point to keep it so.
 */
import { parseDependencyTree } from "dpdm";
import { describe, expect, it } from "vitest";

const ENTRY_POINTS = ["agent/src/main.ts", "control-plane/src/main.ts", "control-plane/src/cli/main.ts", "control-plane/src/release/main.ts"];

/**
 * Every repo module reachable from `entry` through value imports, re-exports and dynamic `import()` (dpdm with the
 * TypeScript parser; `import type` is dropped as the build drops it), repo-relative.
 */
async function reachable(entry: string): Promise<Set<string>> {
  const tree = await parseDependencyTree(entry, { context: process.cwd(), tsconfig: "tsconfig.json", transform: true, exclude: /node_modules/ });
  return new Set(Object.keys(tree));
}

const isTestCode = (path: string) =>
  path.startsWith("test/") || /(^|\/)testing(\/|\.tsx?$)/.test(path) || /(^|\/)(fake|test-)[^/]*$/.test(path) || /\.test\.tsx?$/.test(path);

describe("no test code in production", () => {
  it.each(ENTRY_POINTS)("%s reaches no test double or test kit", async (entry) => {
    const files = await reachable(entry);
    expect(files.size).toBeGreaterThan(10);
    expect([...files].filter(isTestCode)).toEqual([]);
  });

  it("the walk finds test code where it is imported (a test file's graph)", async () => {
    const files = [...(await reachable("agent/src/platform/contract.test.ts"))].filter(isTestCode);
    expect(files).toContain("agent/src/platform/testing/recording-platform.ts");
    expect(files).toContain("test/support/temp-dir.ts");
  });
});
