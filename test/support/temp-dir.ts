/**
 * The one temp-dir helper of the test kit (agent, control plane, end-to-end tests and benches alike; it does not
 * need the vitest runner, so benches run under tsx can use it too).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A fresh directory under the OS temp dir and the function that removes it (with everything in it). */
export interface TempDir {
  /** Absolute path, `<tmpdir>/hashward-<name>-XXXXXX`. */
  path: string;
  /** Removes the directory recursively; idempotent, never throws for a directory already gone. */
  cleanup(): void;
}

/** Creates a fresh temp directory named after `name` (letters, digits, dashes: what the test is about). */
export function tempDir(name = "test"): TempDir {
  const path = mkdtempSync(join(tmpdir(), `hashward-${name}-`));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** Temp dirs made one by one during tests and removed together (call `cleanup` from afterEach or afterAll). */
export interface TempDirPool {
  /** A fresh temp dir (see tempDir; named after `name`, default the pool's), remembered for `cleanup`; returns its path. */
  make(name?: string): string;
  /** Removes every dir made since the last cleanup. */
  cleanup(): void;
}

/** A TempDirPool whose dirs are named after `name`. */
export function tempDirPool(name = "test"): TempDirPool {
  const made: TempDir[] = [];
  return {
    make: (dirName = name) => {
      const dir = tempDir(dirName);
      made.push(dir);
      return dir.path;
    },
    cleanup: () => {
      for (const dir of made.splice(0)) dir.cleanup();
    },
  };
}
