/**
 * Malware indicators, as data from the signed policy (HW-GUARD-5). Kinds (shared/protocol/indicators.ts):
 *  - file-present:          `path` exists (Antbuild: /etc/ld.so.preload)                      -> file-system
 *  - reappearing-file:      `path` exists; when it was seen, went away and came back, `seen` says "reappeared"
 *                           (a first sighting takes `presentSeverity`, default `severity`)        -> file-system
 *  - hosts-entry:           a host name in `path` (default /etc/hosts) matching the anchored, case-insensitive
 *                           `pattern` (absent: any name but localhost)                          -> file-system
 *  - unexpected-executable: `path` (and each of `paths`) is an executable file, or a directory holding executable
 *                           files (recursed `maxDepth` levels, default 0) whose name matches `pattern` (absent:
 *                           any); with `allowedSha256`, only those whose digest is not listed (HW-GUARD-8)
 *                                                                                               -> executables
 *  - file-size-above:       the regular file `path` is larger than `maxBytes` (a trojaned ntpd)  -> executables
 *  - named-file:            an entry anywhere under `path`/`paths` (recursed `maxDepth` levels) whose name matches
 *                           the anchored `pattern` (a known-bad name dropped anywhere)          -> file-system
 * severity critical -> tier contraindicated, warning -> warning.
 *
 * HW-GUARD-9: every directory scan of one guard cycle shares one budget (entries looked at, bytes hashed) and
 * never follows a symbolic link; a scan cut short by a cap is a `warning` finding naming the root and the cap,
 * never a silent clean result.
 */
import { join } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";
import type { Indicator } from "../policy/index.js";
import type { BoardReader, BoardStat } from "./board.js";
import { finding, type Finding } from "./findings.js";

const HOSTS_MAX_BYTES = 256 * 1024;
/** A directory with more entries than this is scanned in part (sorted names) and reported as incomplete. */
export const DIR_MAX_ENTRIES = 4096;

/**
 * HW-GUARD-9: what one guard cycle may spend on directory scans, over all indicators. Entries are stat calls;
 * hash bytes count every file hashed, cached or not, so they bound the worst case (a cold cache after a restart).
 */
export interface ScanLimits {
  /** Directory entries looked at per cycle. */
  maxEntries: number;
  /** Bytes of executables hashed per cycle. */
  maxHashBytes: number;
  /** Entries read from one directory. */
  maxDirEntries: number;
}
export const DEFAULT_SCAN_LIMITS: ScanLimits = Object.freeze({ maxEntries: 20_000, maxHashBytes: 512 * 1024 * 1024, maxDirEntries: DIR_MAX_ENTRIES });
/** Per unexpected-executable indicator and cycle: a directory stuffed with files cannot make a cycle endless. */
const EXECUTABLES_MAX_PER_INDICATOR = 4096;
/** Larger executables are reported unhashed: the agent does not read hundreds of MB each cycle. */
export const EXECUTABLE_MAX_HASH_BYTES = 64 * 1024 * 1024;
const LOCAL_NAMES = /^(localhost(\.localdomain)?|ip6-localhost|ip6-loopback|ip6-allnodes|ip6-allrouters|ip6-localnet|ip6-mcastprefix)$/i;

const memorySchema = z.record(z.string(), z.enum(["seen", "removed", "reappeared"]));

/** Remembers which reappearing-file indicators were seen and then removed (`<stateDir>/indicator-memory.json`). */
export class IndicatorMemory {
  private state: Record<string, "seen" | "removed" | "reappeared">;
  private readonly file: JsonStateFile<Record<string, "seen" | "removed" | "reappeared">> | null;

  constructor(path: string | null) {
    this.file = path === null ? null : jsonStateFile(path, memorySchema);
    // Like known-good-pools.json: a hint, not trusted state; a corrupt copy (power cut, full flash) starts
    // over rather than stopping every guard. The worst case is one "reappeared" reported as "seen".
    this.state = this.file?.loadHint() ?? {};
  }

  static inDir(stateDir: string): IndicatorMemory {
    return new IndicatorMemory(join(stateDir, "indicator-memory.json"));
  }

  /**
   * Returns what this presence means: first sighting, still there, or back after a removal. The change is
   * written before it is remembered: when the write throws (ENOSPC, read-only /config) nothing changed and the
   * next observation tries again.
   */
  observe(key: string, present: boolean): "seen" | "reappeared" | null {
    const before = this.state[key];
    let next = before;
    if (present) next = before === "removed" || before === "reappeared" ? "reappeared" : "seen";
    else if (before) next = "removed";
    if (next !== before) {
      const state = { ...this.state };
      if (next === undefined) delete state[key];
      else state[key] = next;
      this.file?.save(state);
      this.state = state;
    }
    return present ? (next as "seen" | "reappeared") : null;
  }
}

const tierOf = (severity: Indicator["severity"]): Finding["tier"] => (severity === "critical" ? "contraindicated" : "warning");

type Cap = "entries per cycle" | "bytes hashed per cycle" | "entries per directory";

/** The shared per-cycle budget and the scans it cut short (HW-GUARD-9). */
class ScanBudget {
  entries: number;
  hashBytes: number;
  constructor(readonly limits: ScanLimits) {
    this.entries = limits.maxEntries;
    this.hashBytes = limits.maxHashBytes;
  }
}

/**
 * Visits `root` (a file: itself; a directory, or a link to one: its entries, and theirs down to `maxDepth` levels
 * below it) in sorted order, depth first. Symbolic links below the root are visited (lstat: kind "other") but never
 * followed. Returns the cap
 * that cut the walk short, or null when it saw everything.
 */
function walk(board: BoardReader, root: string, maxDepth: number, budget: ScanBudget, visit: (path: string, name: string, stat: BoardStat) => Cap | null): Cap | null {
  const rootStat = board.stat(root);
  if (!rootStat) return null;
  // The root the policy names may itself be a link to a directory (BusyBox firmwares link /var to /tmp/var): it
  // is listed through the link; links met below it are never followed.
  const rootIsDirectory = rootStat.kind === "directory" || (rootStat.kind === "other" && board.list(root, 1) !== null);
  if (!rootIsDirectory) return visit(root, root.split("/").pop() ?? "", rootStat);
  let cut: Cap | null = null;
  const descend = (dir: string, depth: number): boolean => {
    const names = board.list(dir, budget.limits.maxDirEntries + 1) ?? [];
    if (names.length > budget.limits.maxDirEntries) {
      cut ??= "entries per directory";
      names.length = budget.limits.maxDirEntries;
    }
    for (const name of names) {
      if (budget.entries <= 0) {
        cut = "entries per cycle";
        return false;
      }
      budget.entries--;
      const path = `${dir.replace(/\/$/, "")}/${name}`;
      const st = board.stat(path);
      if (!st) continue;
      const stop = visit(path, name, st);
      if (stop) {
        cut = stop;
        return false;
      }
      if (st.kind === "directory" && depth < maxDepth && !descend(path, depth + 1)) return false;
    }
    return true;
  };
  descend(root, 0);
  return cut;
}

/**
 * One guard cycle's view of the board: indicators that name the same file or directory (five hosts-entry
 * indicators, several scans of /firmware) read it once per cycle, not once each. The cycle is one moment: a file
 * that changes is seen by the next cycle, as before. Hashes keep the reader's own cache.
 */
function cycleView(board: BoardReader): BoardReader {
  const texts = new Map<string, string | null>();
  const stats = new Map<string, BoardStat | null>();
  const lists = new Map<string, string[] | null>();
  const once = <V>(cache: Map<string, V>, key: string, read: () => V): V => {
    if (!cache.has(key)) cache.set(key, read());
    return cache.get(key) as V;
  };
  return {
    readText: (path, maxBytes) => once(texts, `${maxBytes}:${path}`, () => board.readText(path, maxBytes)),
    stat: (path) => once(stats, path, () => board.stat(path)),
    // A copy each time: walk() shortens the list it gets.
    list: (path, maxEntries) => once(lists, `${maxEntries}:${path}`, () => board.list(path, maxEntries))?.slice() ?? null,
    ...(board.sha256 ? { sha256: board.sha256.bind(board) } : {}),
  };
}

/**
 * Runs the indicators against the board once (one guard cycle) and returns their findings. Never throws on board
 * content; `onError`: the indicator memory could not be written, the indicator is then judged on presence alone.
 * `limits` (tests) replaces DEFAULT_SCAN_LIMITS.
 */
export function indicatorGuard(
  indicators: readonly Indicator[],
  board: BoardReader,
  memory: IndicatorMemory,
  onError?: (where: string, error: unknown) => void,
  limits: ScanLimits = DEFAULT_SCAN_LIMITS,
): Finding[] {
  const out: Finding[] = [];
  const budget = new ScanBudget(limits);
  board = cycleView(board);
  const hit = (i: Indicator, claim: Finding["claim"], subject: string, seen: unknown, detail: string, severity: Indicator["severity"] = i.severity) =>
    out.push(finding({ guard: "indicator", claim, tier: tierOf(severity), subject, expected: { indicator: i.id, kind: i.kind }, seen, message: `${i.description} (${detail})` }));
  const rootsOf = (i: Indicator) => [...new Set([...(i.path ? [i.path] : []), ...(i.paths ?? [])])];
  // HW-GUARD-9: a scan cut short is a blind spot, reported as a warning, never read as clean.
  const incomplete = (i: Indicator, claim: Finding["claim"], root: string, cap: Cap | null) => {
    if (cap) out.push(finding({ guard: "indicator", claim, tier: "warning", subject: root, expected: { indicator: i.id, kind: i.kind }, seen: { scan: "incomplete", cap }, message: `${i.description} (scan of ${root} stopped at the cap on ${cap}: the rest was not looked at)` }));
  };

  for (const i of indicators) {
    switch (i.kind) {
      case "file-present": {
        if (i.path && board.stat(i.path)) hit(i, "file-system", i.path, "present", `${i.path} is present`);
        break;
      }
      case "reappearing-file": {
        if (!i.path) break;
        const present = board.stat(i.path) !== null;
        let seen: "seen" | "reappeared" | null;
        try {
          seen = memory.observe(`${i.id}:${i.path}`, present);
        } catch (error) {
          onError?.("indicator memory", error);
          seen = present ? "seen" : null;
        }
        if (seen === "reappeared") hit(i, "file-system", i.path, seen, `${i.path} came back after removal`);
        else if (seen) hit(i, "file-system", i.path, seen, `${i.path} is present`, i.presentSeverity ?? i.severity);
        break;
      }
      case "hosts-entry": {
        const path = i.path ?? "/etc/hosts";
        const text = board.readText(path, HOSTS_MAX_BYTES);
        if (text === null) break;
        const re = i.pattern ? new RegExp(`^(?:${i.pattern})$`, "i") : null;
        for (const line of text.split("\n")) {
          const [ip, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
          if (!ip) continue;
          for (const name of names) {
            if (re ? !re.test(name) : LOCAL_NAMES.test(name)) continue;
            hit(i, "file-system", `${path}: ${name}`, `${ip} ${name}`, `${path} maps ${name} to ${ip}`);
          }
        }
        break;
      }
      case "file-size-above": {
        const s = i.path && i.maxBytes !== undefined ? board.stat(i.path) : null;
        if (i.path && s?.kind === "file" && s.size > (i.maxBytes ?? Infinity)) {
          hit(i, "executables", i.path, { path: i.path, size: s.size }, `${i.path} is ${s.size} bytes, above ${i.maxBytes}`);
        }
        break;
      }
      case "named-file": {
        if (!i.pattern) break;
        const re = new RegExp(`^(?:${i.pattern})$`);
        for (const root of rootsOf(i)) {
          const cap = walk(board, root, i.maxDepth ?? 0, budget, (path, name, st) => {
            if (re.test(name)) hit(i, "file-system", path, { path, kind: st.kind, size: st.size }, `${path} is present`);
            return null;
          });
          incomplete(i, "file-system", root, cap);
        }
        break;
      }
      case "unexpected-executable": {
        // HW-GUARD-8: with allowedSha256 (from the device's approved reference values) only an executable whose
        // digest is not listed is flagged, with {path, sha256, size}; without it every executable found is.
        const allowed = i.allowedSha256 ? new Set(i.allowedSha256) : null;
        const re = i.pattern ? new RegExp(`^(?:${i.pattern})$`) : null;
        let reported = EXECUTABLES_MAX_PER_INDICATOR;
        const check = (path: string, name: string, s: BoardStat): Cap | null => {
          if (s.kind !== "file" || (s.mode & 0o111) === 0) return null;
          if (re && !re.test(name)) return null;
          if (reported <= 0) return null;
          if (!allowed) {
            reported--;
            hit(i, "executables", path, { mode: s.mode.toString(8), size: s.size }, `${path} is executable`);
            return null;
          }
          let sha256: string | null = null;
          if (s.size <= EXECUTABLE_MAX_HASH_BYTES && board.sha256) {
            if (s.size > budget.hashBytes) return "bytes hashed per cycle"; // HW-GUARD-9
            budget.hashBytes -= s.size;
            sha256 = board.sha256(path, EXECUTABLE_MAX_HASH_BYTES);
          }
          if (sha256 !== null && allowed.has(sha256)) return null;
          reported--;
          hit(
            i,
            "executables",
            path,
            { path, sha256, size: s.size },
            sha256 === null ? `${path} is executable and could not be hashed (over ${EXECUTABLE_MAX_HASH_BYTES} bytes or unreadable)` : `${path} is executable and its sha256 is not in the reference values`,
          );
          return null;
        };
        for (const root of rootsOf(i)) incomplete(i, "executables", root, walk(board, root, i.maxDepth ?? 0, budget, check));
        break;
      }
    }
  }
  return out;
}
