/**
 * Every address an approved destination's name ever resolved to (`<stateDir>/known-addresses.json`), bounded.
 * Pools behind rotating DNS answer a different set every few minutes while the miner keeps its connection to
 * the address it got earlier; judging it by today's answer alone turned the miner's own pool connection into a
 * contraindication and an auto-quarantine (HW-GUARD-4). The connection guard accepts an approved name's port on
 * any address remembered for that name.
 */
import { join } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";

export const MAX_ADDRESSES_PER_NAME = 64;
export const MAX_NAMES = 256;

const schema = z.record(z.string().max(300), z.array(z.string().max(64)).max(MAX_ADDRESSES_PER_NAME));

export class KnownAddresses {
  /** Insertion-ordered: the oldest name and, per name, the oldest address go first when a bound is reached. */
  private byName: Map<string, string[]>;
  private readonly file: JsonStateFile<Record<string, string[]>> | null;

  constructor(path: string | null) {
    this.file = path === null ? null : jsonStateFile(path, schema);
    // A hint: a corrupt copy is re-learned from the next answers.
    this.byName = new Map(Object.entries(this.file?.loadHint() ?? {}).slice(-MAX_NAMES));
  }

  static inDir(stateDir: string): KnownAddresses {
    return new KnownAddresses(join(stateDir, "known-addresses.json"));
  }

  get(name: string): string[] {
    return [...(this.byName.get(name.toLowerCase()) ?? [])];
  }

  /**
   * Adds a fresh answer for `name`; returns every address known for it. The new set is written before it is
   * remembered: a failing write throws and changes nothing (the caller still has the fresh answer).
   */
  remember(name: string, ips: readonly string[]): string[] {
    const key = name.toLowerCase();
    const before = this.byName.get(key) ?? [];
    const added = ips.filter((ip) => !before.includes(ip));
    if (added.length === 0) return [...before];
    const list = [...before, ...added].slice(-MAX_ADDRESSES_PER_NAME);
    const next = new Map(this.byName);
    next.delete(key);
    next.set(key, list);
    while (next.size > MAX_NAMES) next.delete(next.keys().next().value!);
    this.file?.save(Object.fromEntries(next));
    this.byName = next;
    return [...list];
  }
}
