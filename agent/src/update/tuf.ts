/**
 * A TUF 1.0 client over tuf-js (HW-UPD-1): the trusted metadata lives in one directory under non-versioned
 * names (`root.json`, `timestamp.json`, `snapshot.json`, `targets.json`), seeded once from a provisioned root.
 *
 * tuf-js writes metadata files in place (not atomically). So each session works on a scratch copy, and every
 * file tuf-js persisted there (it persists only what it verified) is copied back with an atomic write, root
 * first. A crash leaves each trusted file either old or new and never torn; an interrupted session leaves the
 * trusted directory as it was.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Updater, type TargetFile } from "tuf-js";
import { HashwardError } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import { BoundedFetcher } from "./fetcher.js";

/** Anything TUF refused (signatures, thresholds, expiry, versions, hashes, lengths) or could not fetch. */
export class TufError extends HashwardError {
  override name = "TufError";
}

export interface TufClientOptions {
  metadataDir: string;
  metadataUrl: string;
  targetsUrl?: string;
  metadataTimeoutMs: number;
  targetTimeoutMs: number;
  /** Caps for metadata documents (bytes); the target's own cap is its signed length. */
  rootMaxBytes?: number;
  timestampMaxBytes?: number;
  snapshotMaxBytes?: number;
  targetsMaxBytes?: number;
  fetch?: typeof fetch;
  userAgent?: string;
}

const withSlash = (url: string) => (url.endsWith("/") ? url : `${url}/`);

/**
 * Copies a trusted root into a metadata directory (`tuf init`). It replaces what is there: `init` is the explicit
 * act of choosing trust (conformance suites call it on a fresh directory); the agent calls it only when no
 * root.json exists, and from then on only TUF root rotation moves trust forward.
 */
export function initTrustedRoot(metadataDir: string, rootFile: string): void {
  const bytes = readFileSync(rootFile);
  try {
    const root = JSON.parse(bytes.toString("utf8")) as { signed?: { _type?: string } };
    if (root.signed?._type !== "root") throw new Error("signed._type is not root");
  } catch (cause) {
    throw new TufError(`${rootFile} is not TUF root metadata: ${String(cause)}`, { cause });
  }
  mkdirSync(metadataDir, { recursive: true, mode: 0o700 });
  writeFileAtomicSync(join(metadataDir, "root.json"), bytes, 0o644);
}

export class TufClient {
  constructor(private readonly opts: TufClientOptions) {}

  get metadataDir(): string {
    return this.opts.metadataDir;
  }

  /**
   * Runs `fn` with a refreshed Updater (TUF client workflow 5.3-5.6: root rotation, timestamp, snapshot,
   * targets, with rollback, freeze and mix-and-match checks done by tuf-js), then persists what was verified.
   */
  async session<T>(fn: (updater: Updater) => Promise<T>, opts: { targetDir?: string } = {}): Promise<T> {
    const trusted = this.opts.metadataDir;
    if (!existsSync(join(trusted, "root.json"))) throw new TufError(`${trusted}/root.json missing: no trusted root provisioned`);
    const work = mkdtempSync(join(tmpdir(), "hashward-tuf-"));
    try {
      for (const name of readdirSync(trusted)) if (name.endsWith(".json")) copyFileSync(join(trusted, name), join(work, name));
      const targetsUrl = this.opts.targetsUrl ? withSlash(this.opts.targetsUrl) : undefined;
      const updater = new Updater({
        metadataDir: work,
        metadataBaseUrl: withSlash(this.opts.metadataUrl),
        ...(targetsUrl ? { targetBaseUrl: targetsUrl } : {}),
        ...(opts.targetDir ? { targetDir: opts.targetDir } : {}),
        fetcher: new BoundedFetcher({
          metadataTimeoutMs: this.opts.metadataTimeoutMs,
          targetTimeoutMs: this.opts.targetTimeoutMs,
          ...(targetsUrl ? { targetsUrl } : {}),
          ...(this.opts.fetch ? { fetch: this.opts.fetch } : {}),
          ...(this.opts.userAgent ? { userAgent: this.opts.userAgent } : {}),
        }),
        config: {
          ...(this.opts.rootMaxBytes ? { rootMaxLength: this.opts.rootMaxBytes } : {}),
          ...(this.opts.timestampMaxBytes ? { timestampMaxLength: this.opts.timestampMaxBytes } : {}),
          ...(this.opts.snapshotMaxBytes ? { snapshotMaxLength: this.opts.snapshotMaxBytes } : {}),
          ...(this.opts.targetsMaxBytes ? { targetsMaxLength: this.opts.targetsMaxBytes } : {}),
          fetchTimeout: this.opts.metadataTimeoutMs,
          fetchRetry: false,
        },
      });
      try {
        // HW-UPD-1: TUF 5.3-5.6 (root rotation, freeze, rollback, mix-and-match) against the trusted root only.
        await updater.refresh();
        return await fn(updater);
      } catch (error) {
        if (error instanceof HashwardError) throw error;
        throw new TufError(`${error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error)}`, { cause: error });
      } finally {
        this.persist(work);
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** Refreshes metadata and returns the signed description of `targetName`, or null if no role lists it. */
  async targetInfo(targetName: string): Promise<TargetFile | null> {
    return this.session(async (updater) => (await updater.getTargetInfo(targetName)) ?? null);
  }

  private persist(work: string): void {
    const trusted = this.opts.metadataDir;
    const names = readdirSync(work).filter((n) => n.endsWith(".json") && !n.startsWith("."));
    // Root first: every other role is verified against it.
    names.sort((a, b) => (a === "root.json" ? -1 : b === "root.json" ? 1 : a.localeCompare(b)));
    for (const name of names) {
      const fresh = readFileSync(join(work, name));
      const current = existsSync(join(trusted, name)) ? readFileSync(join(trusted, name)) : null;
      if (current && current.equals(fresh)) continue;
      writeFileAtomicSync(join(trusted, name), fresh, 0o644);
    }
  }
}
