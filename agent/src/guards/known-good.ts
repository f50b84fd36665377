/**
 * The last pool list that satisfied the policy (`<stateDir>/known-good-pools.json`): what enforcing mode
 * restores. The policy names allowed URLs and worker patterns, not passwords or order, so the exact pool
 * entries to put back come from the board itself, recorded while it was clean.
 */
import { join } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";
import type { ConfigPool } from "./pools.js";

const schema = z.array(z.strictObject({ url: z.string(), user: z.string(), pass: z.string() })).max(64);

export class KnownGoodPools {
  private pools: ConfigPool[];
  private readonly file: JsonStateFile<ConfigPool[]> | null;

  constructor(path: string | null) {
    this.file = path === null ? null : jsonStateFile(path, schema, { indent: 2 });
    this.pools = this.file?.loadHint() ?? []; // only a restore hint: a corrupt copy is re-learned from the next clean cycle
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
    this.file?.save(next);
    this.pools = next;
  }
}
