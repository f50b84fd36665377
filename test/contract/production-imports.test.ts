/**
 * Test code stays out of what ships (issue 9 item 4): the modules the entry points reach through their static and
 * dynamic imports include no test double or test kit: nothing under a `testing/` folder, no `testing.ts`, no
 * `fake*` or `test-*` module, no `*.test.ts`, nothing from the repo's `test/`. Fakes live in `testing/` folders
 * that only tests import; this walks the import graph from every entry point to keep it so.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/processes.js";

const ENTRY_POINTS = ["agent/src/main.ts", "control-plane/src/main.ts", "control-plane/src/cli/main.ts", "control-plane/src/release/main.ts"];

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;

/** The repo file a relative specifier names (`./x.js` is `x.ts` or `x.tsx` in the source tree), or null. */
function resolveSpecifier(from: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null; // a package
  const base = resolve(dirname(from), specifier);
  const candidates = [base, base.replace(/\.js$/, ".ts"), base.replace(/\.js$/, ".tsx"), `${base}.ts`, join(base, "index.ts")];
  return candidates.find((path) => existsSync(path) && !path.endsWith("/")) ?? null;
}

/** Every repo file reachable from `entry` by relative imports (static, `export ... from`, dynamic), repo-relative. */
function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [join(REPO_ROOT, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    const rel = relative(REPO_ROOT, file);
    if (seen.has(rel)) continue;
    seen.add(rel);
    if (!/\.(ts|tsx|mjs|js)$/.test(file)) continue;
    for (const [, specifier] of readFileSync(file, "utf8").matchAll(SPECIFIER)) {
      const target = resolveSpecifier(file, specifier!);
      if (target) queue.push(target);
    }
  }
  return seen;
}

const isTestCode = (path: string) =>
  path.startsWith("test/") || /(^|\/)testing(\/|\.tsx?$)/.test(path) || /(^|\/)(fake|test-)[^/]*$/.test(path) || /\.test\.tsx?$/.test(path);

describe("no test code in production (issue 9 item 4)", () => {
  it.each(ENTRY_POINTS)("%s reaches no test double or test kit", (entry) => {
    const files = reachable(entry);
    expect(files.size).toBeGreaterThan(10);
    expect([...files].filter(isTestCode)).toEqual([]);
  });

  it("the walk finds test code where it is imported (a test file's graph)", () => {
    const files = [...reachable("agent/src/platform/contract.test.ts")].filter(isTestCode);
    expect(files).toContain("agent/src/platform/testing/recording-platform.ts");
    expect(files).toContain("test/support/temp-dir.ts");
  });
});
