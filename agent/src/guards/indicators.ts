/**
 * Malware indicators, as data from the signed policy (HW-GUARD-5). Kinds:
 *  - file-present:          `path` exists (Antbuild: /etc/ld.so.preload)                      -> file-system
 *  - reappearing-file:      `path` exists; when it was seen, went away and came back, `seen` says "reappeared"
 *  - hosts-entry:           a host name in `path` (default /etc/hosts) matching the anchored, case-insensitive
 *                           `pattern` (absent: any name but localhost)                          -> file-system
 *  - unexpected-executable: `path` (and each of `paths`) is an executable file, or (a directory, not recursed)
 *                           holds executable files whose name matches `pattern` (absent: any); with
 *                           `allowedSha256`, only those whose digest is not listed (HW-GUARD-8) -> executables
 * severity critical -> tier contraindicated, warning -> warning.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import type { Indicator } from "../policy/index.js";
import type { BoardReader, BoardStat } from "./board.js";
import { finding, type Finding } from "./findings.js";

const HOSTS_MAX_BYTES = 256 * 1024;
const DIR_MAX_ENTRIES = 4096;
/** Per unexpected-executable indicator and cycle: a directory stuffed with files cannot make a cycle endless. */
const EXECUTABLES_MAX_PER_INDICATOR = 4096;
/** Larger executables are reported unhashed: the agent does not read hundreds of MB each cycle. */
export const EXECUTABLE_MAX_HASH_BYTES = 64 * 1024 * 1024;
const LOCAL_NAMES = /^(localhost(\.localdomain)?|ip6-localhost|ip6-loopback|ip6-allnodes|ip6-allrouters|ip6-localnet|ip6-mcastprefix)$/i;

const memorySchema = z.record(z.string(), z.enum(["seen", "removed", "reappeared"]));

/** Remembers which reappearing-file indicators were seen and then removed (`<stateDir>/indicator-memory.json`). */
export class IndicatorMemory {
  private state: Record<string, "seen" | "removed" | "reappeared"> = {};

  constructor(private readonly file: string | null) {
    if (file && existsSync(file)) {
      try {
        this.state = memorySchema.parse(JSON.parse(readFileSync(file, "utf8")));
      } catch {
        // Like known-good-pools.json: a hint, not trusted state; a corrupt copy (power cut, full flash) starts
        // over rather than stopping every guard. The worst case is one "reappeared" reported as "seen".
        this.state = {};
      }
    }
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
      if (this.file) writeFileAtomicSync(this.file, `${JSON.stringify(state)}\n`, 0o600);
      this.state = state;
    }
    return present ? (next as "seen" | "reappeared") : null;
  }
}

const tierOf = (i: Indicator): Finding["tier"] => (i.severity === "critical" ? "contraindicated" : "warning");

/** `onError`: the indicator memory could not be written; the indicator is then judged on presence alone. */
export function indicatorGuard(indicators: readonly Indicator[], board: BoardReader, memory: IndicatorMemory, onError?: (where: string, error: unknown) => void): Finding[] {
  const out: Finding[] = [];
  const hit = (i: Indicator, claim: Finding["claim"], subject: string, seen: unknown, detail: string) =>
    out.push(finding({ guard: "indicator", claim, tier: tierOf(i), subject, expected: { indicator: i.id, kind: i.kind }, seen, message: `${i.description} (${detail})` }));

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
        if (seen) hit(i, "file-system", i.path, seen, seen === "reappeared" ? `${i.path} came back after removal` : `${i.path} is present`);
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
      case "unexpected-executable": {
        // HW-GUARD-8: with allowedSha256 (from the device's approved reference values) only an executable whose
        // digest is not listed is flagged, with {path, sha256, size}; without it every executable found is.
        const allowed = i.allowedSha256 ? new Set(i.allowedSha256) : null;
        const re = i.pattern ? new RegExp(`^(?:${i.pattern})$`) : null;
        let budget = EXECUTABLES_MAX_PER_INDICATOR;
        const check = (path: string, name: string, s: BoardStat | null) => {
          if (!s || s.kind !== "file" || (s.mode & 0o111) === 0) return;
          if (re && !re.test(name)) return;
          if (budget-- <= 0) return;
          if (!allowed) {
            hit(i, "executables", path, { mode: s.mode.toString(8), size: s.size }, `${path} is executable`);
            return;
          }
          const sha256 = s.size <= EXECUTABLE_MAX_HASH_BYTES && board.sha256 ? board.sha256(path, EXECUTABLE_MAX_HASH_BYTES) : null;
          if (sha256 !== null && allowed.has(sha256)) return;
          hit(
            i,
            "executables",
            path,
            { path, sha256, size: s.size },
            sha256 === null ? `${path} is executable and could not be hashed (over ${EXECUTABLE_MAX_HASH_BYTES} bytes or unreadable)` : `${path} is executable and its sha256 is not in the reference values`,
          );
        };
        for (const root of [...new Set([...(i.path ? [i.path] : []), ...(i.paths ?? [])])]) {
          const st = board.stat(root);
          if (!st) continue;
          if (st.kind === "directory") {
            for (const name of board.list(root, DIR_MAX_ENTRIES) ?? []) {
              const path = `${root.replace(/\/$/, "")}/${name}`;
              check(path, name, board.stat(path));
            }
          } else check(root, root.split("/").pop() ?? "", st);
        }
        break;
      }
    }
  }
  return out;
}
