/**
 * Which findings were already alerted (`<stateDir>/reported-findings.json`, finding keys): HW-GUARD-2 across
 * restarts. Without it every agent restart re-sent a guard-alert for every finding still on the board; the
 * evidence still carries them all, so the plane loses nothing.
 *
 * The set is what was actually alerted: a key joins it only after its alert was queued, and leaves it when the
 * finding goes away (so a finding that comes back is alerted again). A failed write keeps the set in memory and
 * is retried at the next cycle; the worst case after a crash is one repeated alert.
 */
import { join } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";

const MAX_KEYS = 1024;
const schema = z.array(z.string().max(16_384)).max(MAX_KEYS);

export class ReportedFindings {
  private keys: Set<string>;
  private dirty = false;
  private readonly file: JsonStateFile<string[]> | null;

  constructor(path: string | null) {
    this.file = path === null ? null : jsonStateFile(path, schema);
    this.keys = new Set(this.file?.loadHint()); // a hint: a corrupt copy costs one round of repeated alerts, nothing else
  }

  static inDir(stateDir: string): ReportedFindings {
    return new ReportedFindings(join(stateDir, "reported-findings.json"));
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** The alerted set becomes `alerted` (keys of current findings already reported, plus the ones just alerted). */
  replace(alerted: Iterable<string>): void {
    const next = new Set([...alerted].slice(0, MAX_KEYS));
    if (next.size !== this.keys.size || [...next].some((k) => !this.keys.has(k))) {
      this.keys = next;
      this.dirty = true;
    }
  }

  /** Persists a changed set; throws when the write fails (the set stays dirty and is written next time). */
  flush(): void {
    if (!this.dirty || !this.file) return;
    this.file.save([...this.keys].sort());
    this.dirty = false;
  }
}
