/**
 * Measurement: SHA-256 of configured device paths (HW-EVD-1).
 * - a file: one entry;  a directory: a sorted recursive walk, one entry per file under its device path;
 * - a block or character device (flash partitions, `/dev/mtdN`), or anything under /dev: kind "block";
 * - a path that does not exist: kind "missing", size 0, sha256 "" (a deleted file is evidence too);
 * - the agent's own binary as "@agent" (skipped when running under a bun/node interpreter: then execPath
 *   is the interpreter, not us).
 * Files are read with FileHandle.read into one reused buffer per worker and hashed with bounded concurrency (a
 * `createReadStream` allocated a Buffer per chunk and ran the stream machinery: 0.2-0.45 x `openssl dgst -sha256`;
 * plain reads into a reused buffer hash at openssl's speed). node:crypto, not Bun.CryptoHasher, so the Node
 * bundle runs the same code: both use the CPU's SHA extensions. Entries are sorted by path
 * (code-unit order, locale-independent) so the same tree always yields the same list.
 * Symlinks to directories are not followed (loops, escapes); symlinks to files are measured as their target.
 */
import { createHash } from "node:crypto";
import { lstat, open, readdir, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { MAX_MEASUREMENTS, type Measurement } from "../../../shared/index.js";
import { AGENT_IS_NODE_BUNDLE } from "../version/index.js";

export const AGENT_BINARY_PATH = "@agent";
const READ_CHUNK_BYTES = 1024 * 1024;
/** Two reads in flight keep the disk and the hash busy; more only adds buffers (READ_CHUNK_BYTES each) on a small board. */
const DEFAULT_CONCURRENCY = 2;

export interface MeasureOptions {
  /** Maps a device path to a host path (Platform.resolve). */
  resolve: (devicePath: string) => string;
  includeAgentBinary?: boolean;
  /** Defaults to process.execPath. */
  execPath?: string;
  concurrency?: number;
}

export interface MeasureResult {
  measurements: Measurement[];
  /** Entries beyond MAX_MEASUREMENTS that were left out (the evidence schema's hard cap). */
  truncated: number;
}

interface Target {
  devicePath: string;
  hostPath: string;
  kind: "file" | "block";
}

export async function measure(paths: readonly string[], opts: MeasureOptions): Promise<MeasureResult> {
  const targets: Target[] = [];
  const missing: Measurement[] = [];
  for (const devicePath of new Set(paths)) {
    await collect(devicePath, opts.resolve(devicePath), targets, missing, true);
  }
  const agentFile = opts.execPath !== undefined ? (isInterpreter(opts.execPath) ? null : opts.execPath) : agentExecutable();
  if ((opts.includeAgentBinary ?? true) && agentFile) {
    targets.push({ devicePath: AGENT_BINARY_PATH, hostPath: agentFile, kind: "file" });
  }
  const hashed = await mapLimited(targets, opts.concurrency ?? DEFAULT_CONCURRENCY, () => Buffer.allocUnsafe(READ_CHUNK_BYTES), hashTarget);
  const all = dedupe([...hashed, ...missing]).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { measurements: all.slice(0, MAX_MEASUREMENTS), truncated: Math.max(0, all.length - MAX_MEASUREMENTS) };
}

/**
 * The file that is "the agent": the compiled binary (process.execPath), or in the Node bundle for 32-bit ARM
 * the bundle script itself; null when running from source under bun/node (nothing stable to measure).
 */
export function agentExecutable(): string | null {
  if (!isInterpreter(process.execPath)) return process.execPath;
  if (AGENT_IS_NODE_BUNDLE && process.argv[1]) return resolve(process.argv[1]);
  return null;
}

/** True when execPath is a JS runtime (bun, node, node20...), not a compiled agent. */
export function isInterpreter(execPath: string): boolean {
  return /^(bun|node)(\d+(\.\d+)*)?(\.exe)?$/.test(basename(execPath));
}

async function collect(devicePath: string, hostPath: string, out: Target[], missing: Measurement[], top: boolean): Promise<void> {
  let info;
  try {
    // Top-level paths follow symlinks (the operator named them); inside a walk, lstat avoids loops.
    info = top ? await stat(hostPath) : await lstat(hostPath);
    if (!top && info.isSymbolicLink()) {
      info = await stat(hostPath).catch(() => null);
      if (!info || info.isDirectory()) return;
    }
  } catch (error) {
    if (isNotFound(error)) {
      missing.push({ path: devicePath, kind: "missing", size: 0, sha256: "" });
      return;
    }
    throw error;
  }
  if (info.isDirectory()) {
    const entries = (await readdir(hostPath)).sort();
    for (const name of entries) {
      await collect(`${devicePath.replace(/\/$/, "")}/${name}`, `${hostPath}/${name}`, out, missing, false);
    }
    return;
  }
  const isDevice = info.isBlockDevice() || info.isCharacterDevice();
  if (info.isFile() || isDevice) {
    out.push({ devicePath, hostPath, kind: isDevice || devicePath.startsWith("/dev/") ? "block" : "file" });
  }
  // sockets and FIFOs have no content to measure
}

/** `buffer` is the calling worker's own: hash.update consumes it before the next read overwrites it. */
async function hashTarget(target: Target, buffer: Buffer): Promise<Measurement> {
  const hash = createHash("sha256");
  let size = 0;
  try {
    const file = await open(target.hostPath, "r");
    try {
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, null);
        if (bytesRead === 0) break;
        hash.update(buffer.subarray(0, bytesRead));
        size += bytesRead;
      }
    } finally {
      await file.close();
    }
  } catch (error) {
    // Deleted between walk and read: report it as missing rather than failing the whole measurement.
    if (isNotFound(error)) return { path: target.devicePath, kind: "missing", size: 0, sha256: "" };
    throw error;
  }
  // Block devices report st_size 0; the bytes read are the partition's real size.
  return { path: target.devicePath, kind: target.kind, size, sha256: hash.digest("hex") };
}

function dedupe(list: Measurement[]): Measurement[] {
  const seen = new Map<string, Measurement>();
  for (const m of list) if (!seen.has(m.path)) seen.set(m.path, m);
  return [...seen.values()];
}

/** Runs `fn` over `items` with at most `limit` in flight; each worker gets its own `scratch` (a read buffer). */
async function mapLimited<T, S, R>(items: readonly T[], limit: number, scratch: () => S, fn: (item: T, scratch: S) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    const own = scratch();
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, own);
    }
  });
  await Promise.all(workers);
  return results;
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}
