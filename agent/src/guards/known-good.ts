/**
 * The last pool list that satisfied the policy (`<stateDir>/known-good-pools.json`): what enforcing mode
 * restores. The policy names allowed URLs and worker patterns, not passwords or order, so the exact pool
 * entries to put back come from the board itself, recorded while it was clean.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import type { ConfigPool } from "./pools.js";

const schema = z.array(z.strictObject({ url: z.string(), user: z.string(), pass: z.string() })).max(64);

export class KnownGoodPools {
  private pools: ConfigPool[] = [];

  constructor(private readonly file: string | null) {
    if (file && existsSync(file)) {
      try {
        this.pools = schema.parse(JSON.parse(readFileSync(file, "utf8")));
      } catch {
        this.pools = []; // only a restore hint: a corrupt copy is re-learned from the next clean cycle
      }
    }
  }

  static inDir(stateDir: string): KnownGoodPools {
    return new KnownGoodPools(join(stateDir, "known-good-pools.json"));
  }

  get(): ConfigPool[] {
    return structuredClone(this.pools);
  }

  /** Written before remembered: when the write throws, nothing changed and the next clean cycle tries again. */
  record(pools: readonly ConfigPool[]): void {
    if (pools.length === 0 || JSON.stringify(pools) === JSON.stringify(this.pools)) return;
    const next = structuredClone([...pools]).slice(0, 64);
    if (this.file) writeFileAtomicSync(this.file, `${JSON.stringify(next, null, 2)}\n`, 0o600);
    this.pools = next;
  }
}
