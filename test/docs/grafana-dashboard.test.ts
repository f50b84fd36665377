/**
 * docs/grafana/hashward.json charts only series the plane really exports: every `hashward_*` name in a panel
 * query is registered with prom-client in control-plane/src, and every other name is one of prom-client's
 * default process metrics (collectDefaultMetrics in control-plane/src/plane).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { collectDefaultMetrics, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/processes.js";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith(".ts") && !name.endsWith(".test.ts") ? [path] : [];
  });
}

describe("Grafana dashboard", () => {
  it("queries only metrics the plane registers", async () => {
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, "docs/grafana/hashward.json"), "utf8")) as { panels: Array<{ targets: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(10);
    const code = sources(join(REPO_ROOT, "control-plane/src")).map((file) => readFileSync(file, "utf8")).join("\n");
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const defaults = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\b([a-z_]+_(?:total|seconds|bytes|clients|devices|count|bucket|sum))\b(?=\{|\[|\))/g)].map((m) => m[1]!)));
    expect(used.size).toBeGreaterThan(8);
    for (const name of used) {
      if (name.startsWith("hashward_")) {
        const base = name.replace(/_(bucket|count|sum)$/, "");
        expect(code, name).toContain(`"${base}"`);
      } else {
        expect(defaults.has(name), name).toBe(true);
      }
    }
  });
});
