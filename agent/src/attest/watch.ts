/**
 * Watches measured paths and reports changes, debounced (~200 ms), so attestation reacts within a second
 * to a hand edit or an out-of-band firmware upload. fs.watch (inotify; recursive for directories) where the
 * runtime supports it, else polling a stat fingerprint. A file is watched through its parent directory so
 * an atomic replace (write temp + rename) is still seen.
 */
import { statSync, watch, type FSWatcher } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { Logger } from "../log/index.js";

export interface WatchTarget {
  devicePath: string;
  hostPath: string;
}

export interface WatchHandle {
  close(): void;
  /** "inotify" or "poll" per device path, for diagnostics and tests. */
  readonly modes: Record<string, "inotify" | "poll">;
  /** Resolves once every poller has its baseline fingerprint (changes before that are not seen). */
  readonly ready: Promise<void>;
}

export interface WatchOptions {
  debounceMs?: number;
  pollMs?: number;
  log: Logger;
  /** Force polling (tests, or runtimes whose fs.watch is unreliable). */
  forcePoll?: boolean;
}

export function watchPaths(targets: readonly WatchTarget[], onChange: (devicePaths: string[]) => void, opts: WatchOptions): WatchHandle {
  const debounceMs = opts.debounceMs ?? 200;
  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;
  const watchers: FSWatcher[] = [];
  const pollers: ReturnType<typeof setInterval>[] = [];
  const modes: Record<string, "inotify" | "poll"> = {};
  const baselines: Promise<void>[] = [];

  const changed = (devicePath: string) => {
    if (closed) return;
    pending.add(devicePath);
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const paths = [...pending].sort();
      pending.clear();
      if (!closed) onChange(paths);
    }, debounceMs);
  };

  for (const target of targets) {
    if (!opts.forcePoll && tryWatch(target, changed, watchers)) {
      modes[target.devicePath] = "inotify";
      continue;
    }
    modes[target.devicePath] = "poll";
    let last: string | null = null;
    let busy = false;
    const poll = async () => {
      if (busy || closed) return;
      busy = true;
      try {
        const now = await fingerprint(target.hostPath);
        if (last !== null && now !== last) changed(target.devicePath);
        last = now;
      } finally {
        busy = false;
      }
    };
    baselines.push(poll());
    const interval = setInterval(() => void poll(), opts.pollMs ?? 2000);
    interval.unref?.();
    pollers.push(interval);
  }

  return {
    modes,
    ready: Promise.all(baselines).then(() => undefined),
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
      for (const p of pollers) clearInterval(p);
    },
  };
}

function tryWatch(target: WatchTarget, changed: (p: string) => void, watchers: FSWatcher[]): boolean {
  try {
    let isDir = false;
    try {
      isDir = statSync(target.hostPath).isDirectory();
    } catch {
      // missing: watch the parent for it to appear
    }
    const watcher = isDir
      ? watch(target.hostPath, { recursive: true, persistent: false }, () => changed(target.devicePath))
      : watch(dirname(target.hostPath), { persistent: false }, (_event, name) => {
          if (name === null || name.toString() === basename(target.hostPath)) changed(target.devicePath);
        });
    watcher.on("error", () => watcher.close());
    watchers.push(watcher);
    return true;
  } catch {
    return false;
  }
}



/** size+mtime+ino of every file under a path: cheap, and changes on any edit or replace. */
async function fingerprint(hostPath: string, depth = 0): Promise<string> {
  try {
    const info = await stat(hostPath);
    if (!info.isDirectory()) return `${info.ino}:${info.size}:${info.mtimeMs}`;
    if (depth > 32) return "deep";
    const names = (await readdir(hostPath)).sort();
    const parts = await Promise.all(names.map(async (n) => `${n}=${await fingerprint(`${hostPath}/${n}`, depth + 1)}`));
    return `d{${parts.join(",")}}`;
  } catch {
    return "missing";
  }
}
