/**
 * No import cycles in agent/, control-plane/ and shared/, type-only imports included (two modules in a
 * cycle cannot be understood, tested or moved apart; a type-only cycle still ties their designs together).
 * dpdm parses every module with the TypeScript parser and, with `transform: false`, keeps `import type` and type
 * re-exports as dependencies; dynamic `import()` counts too.
 *
 * The usual ways out, as used in this repository: types both sides need go to a leaf file of their own
 * (control-plane/src/trust/types.ts, control-plane/src/appraisal/types.ts, control-plane/src/http/env.ts,
 * control-plane/src/db/types.ts, control-plane/src/replicas/types.ts), and behaviour another module adds is a hook
 * passed in (control-plane/src/service DeviceSideHooks), never an import back.
 */
import { parseCircular, parseDependencyTree, type DependencyTree } from "dpdm";
import { beforeAll, describe, expect, it } from "vitest";

const ROOTS = ["agent", "control-plane", "shared"].map((root) => `${root}/**/*.{ts,tsx}`);

let tree: DependencyTree;

beforeAll(async () => {
  tree = await parseDependencyTree(ROOTS, { context: process.cwd(), tsconfig: "tsconfig.json", transform: false });
}, 180_000);

describe("import graph of agent/, control-plane/ and shared/", () => {
  it("counts type-only imports (or a cycle through `import type` would go unseen)", () => {
    // `import type { Tier } from "../appraisal/types.js"`: type-only, and the only import of that file there.
    const trust = tree["control-plane/src/trust/index.ts"] ?? [];
    expect(trust.map((dependency) => dependency.id)).toContain("control-plane/src/appraisal/types.ts");
  });

  it("has no cycle", () => {
    expect(parseCircular(tree).map((cycle) => cycle.join(" -> "))).toEqual([]);
  });
});
