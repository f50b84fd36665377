/**
 * A TUF 1.0 client over tuf-js (HW-UPD-1): the trusted metadata lives in one directory under non-versioned
 * names (`root.json`, `timestamp.json`, `snapshot.json`, `targets.json`, delegated roles as
 * `encodeURIComponent(role).json`), seeded once from a provisioned root.
 *
 * tuf-js writes metadata files in place (not atomically). So each session works on a scratch copy, and every
 * file tuf-js persisted there (it persists only what it verified) is copied back with an atomic write, root
 * first. A crash leaves each trusted file either old or new and never torn; an interrupted session leaves the
 * trusted directory as it was.
 *
 * Three checks wrap tuf-js 5.0.1 without forking it:
 *   - HW-TUF-4: every root and every delegating targets document (the trusted root on disk, cached files, and each
 *     one fetched, before tuf-js sees it) names each key by its own key id and counts no public key twice in a role
 *     (shared/tuf/keys.ts, the same check the plane runs at upload);
 *   - HW-UPD-7: a delegated role is trusted only as verified against the delegator it is reached through: tuf-js
 *     reuses a role it loaded through one delegator when another delegator reaches it (a diamond), so each found
 *     target's delegation path is walked again and every role on it verified against its current delegator;
 *   - HW-UPD-8: no metadata file whose name starts with `.` is written to the trusted directory (a role named
 *     `../x` is persisted by tuf-js as `..%2Fx.json`): a leading `.` is stored as `%2E`, so the verified role is
 *     kept, under a name that is neither hidden nor a relative path.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Metadata, Root, Targets } from "@tufjs/models";
import { Updater, type TargetFile } from "tuf-js";
import { HashwardError } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import { assertMetadataKeys, TufKeyError } from "../../../shared/tuf/keys.js";
import { BoundedFetcher, type BoundedFetcherOptions } from "./fetcher.js";

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
  /** See BoundedFetcherOptions (HW-FAULT-12). */
  stallTimeoutMs?: number;
  downloadAttempts?: number;
  onDownloadRetry?: BoundedFetcherOptions["onRetry"];
  /** Caps for metadata documents (bytes); the target's own cap is its signed length. */
  rootMaxBytes?: number;
  timestampMaxBytes?: number;
  snapshotMaxBytes?: number;
  targetsMaxBytes?: number;
  fetch?: typeof fetch;
  userAgent?: string;
}

const withSlash = (url: string) => (url.endsWith("/") ? url : `${url}/`);

/** HW-UPD-8: the trusted directory's name for a file tuf-js wrote as `name` (a leading `.` becomes `%2E`). */
export function trustedMetadataName(name: string): string {
  // encodeURIComponent (tuf-js's encoding) never writes "%2E", so the mapping is one-to-one and reversible.
  return name.startsWith(".") ? `%2E${name.slice(1)}` : name;
}

/** The name tuf-js uses for a file kept in the trusted directory as `name` (inverse of trustedMetadataName). */
export function workMetadataName(name: string): string {
  return name.startsWith("%2E") ? `.${name.slice(3)}` : name;
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return undefined; // not JSON: tuf-js refuses it with its own error
  }
}

/** HW-TUF-4 on every metadata document fetched, before tuf-js verifies anything against it. */
class KeyCheckingFetcher extends BoundedFetcher {
  constructor(opts: BoundedFetcherOptions) {
    super(opts);
  }

  override async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const bytes = await super.downloadBytes(url, maxLength);
    try {
      assertMetadataKeys(parseJson(bytes));
    } catch (error) {
      if (error instanceof TufKeyError) throw new TufError(`${url}: ${error.message} (HW-TUF-4)`, { cause: error });
      throw error;
    }
    return bytes;
  }
}

/** What tuf-js 5.0.1 keeps of verified metadata (a private field, read only): role name -> metadata. */
interface TrustedSetView {
  getRole(name: string): Metadata<Root | Targets> | undefined;
}

/**
 * tuf-js's Updater with HW-UPD-7: `getTargetInfo` returns a target only if the delegation path to it verifies role
 * by role against the delegator each role is reached through (python-tuf's walk over (role, delegator) pairs).
 */
class DelegatorCheckingUpdater extends Updater {
  private readonly maxDelegationsSeen: number;

  constructor(options: ConstructorParameters<typeof Updater>[0]) {
    super(options);
    this.maxDelegationsSeen = options.config?.maxDelegations ?? 32;
  }

  override async getTargetInfo(targetPath: string): Promise<TargetFile | undefined> {
    const found = await super.getTargetInfo(targetPath);
    if (found) this.assertVerifiedPath(targetPath, found);
    return found;
  }

  /** Re-walks the delegation graph (pre-order DFS, as tuf-js) verifying each role against its current delegator. */
  private assertVerifiedPath(targetPath: string, found: TargetFile): void {
    const trusted = (this as unknown as { trustedSet?: TrustedSetView }).trustedSet;
    if (!trusted || typeof trusted.getRole !== "function") throw new TufError("tuf-js internals changed: cannot check the delegation path (HW-UPD-7)");
    const toVisit: Array<{ role: string; delegator: string }> = [{ role: "targets", delegator: "root" }];
    const visitedPairs = new Set<string>();
    const visitedNames = new Set<string>();
    while (visitedNames.size <= this.maxDelegationsSeen && toVisit.length > 0) {
      const { role, delegator } = toVisit.pop()!;
      const pair = JSON.stringify([role, delegator]);
      if (visitedPairs.has(pair)) continue;
      const metadata = trusted.getRole(role);
      const parent = trusted.getRole(delegator);
      if (!metadata || !parent) throw new TufError(`delegated role ${JSON.stringify(role)} reached through ${JSON.stringify(delegator)} was never verified (HW-UPD-7)`);
      try {
        // HW-UPD-7, TUF 5.6.3: a role is trusted only as signed for the delegator that delegates it HERE.
        parent.verifyDelegate(role, metadata);
      } catch (error) {
        throw new TufError(
          `delegated role ${JSON.stringify(role)} is not signed by the keys ${JSON.stringify(delegator)} delegates it to: ${(error as Error).message} (HW-UPD-7)`,
          { cause: error },
        );
      }
      const signed = metadata.signed as Targets;
      const target = signed.targets?.[targetPath];
      if (target) {
        if (!target.equals(found)) throw new TufError(`target ${JSON.stringify(targetPath)}: tuf-js and the verified delegation path disagree (HW-UPD-7)`);
        return;
      }
      visitedPairs.add(pair);
      visitedNames.add(role);
      if (signed.delegations) {
        const children: Array<{ role: string; delegator: string }> = [];
        for (const { role: child, terminating } of signed.delegations.rolesForTarget(targetPath)) {
          children.push({ role: child, delegator: role });
          if (terminating) {
            toVisit.splice(0);
            break;
          }
        }
        toVisit.push(...children.reverse());
      }
    }
    throw new TufError(`target ${JSON.stringify(targetPath)} is not reachable through verified delegations (HW-UPD-7)`);
  }
}

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
      for (const name of readdirSync(trusted)) {
        if (!name.endsWith(".json") || name.startsWith(".")) continue;
        const copy = join(work, workMetadataName(name));
        copyFileSync(join(trusted, name), copy);
        try {
          // HW-TUF-4: the provisioned root and every cached document are checked, not only what is fetched.
          assertMetadataKeys(parseJson(readFileSync(copy)));
        } catch (error) {
          if (!(error instanceof TufKeyError)) throw error;
          if (name === "root.json") throw new TufError(`${trusted}/root.json: ${error.message} (HW-TUF-4)`, { cause: error });
          rmSync(copy); // a cached role that fails is fetched (and checked) again
        }
      }
      const targetsUrl = this.opts.targetsUrl ? withSlash(this.opts.targetsUrl) : undefined;
      const updater = new DelegatorCheckingUpdater({
        metadataDir: work,
        metadataBaseUrl: withSlash(this.opts.metadataUrl),
        ...(targetsUrl ? { targetBaseUrl: targetsUrl } : {}),
        ...(opts.targetDir ? { targetDir: opts.targetDir } : {}),
        fetcher: new KeyCheckingFetcher({
          metadataTimeoutMs: this.opts.metadataTimeoutMs,
          targetTimeoutMs: this.opts.targetTimeoutMs,
          ...(this.opts.stallTimeoutMs ? { stallTimeoutMs: this.opts.stallTimeoutMs } : {}),
          ...(this.opts.downloadAttempts ? { downloadAttempts: this.opts.downloadAttempts } : {}),
          ...(this.opts.onDownloadRetry ? { onRetry: this.opts.onDownloadRetry } : {}),
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
    const names = readdirSync(work).filter((n) => n.endsWith(".json"));
    // Root first: every other role is verified against it.
    names.sort((a, b) => (a === "root.json" ? -1 : b === "root.json" ? 1 : a.localeCompare(b)));
    for (const name of names) {
      // HW-UPD-8: never a hidden or relative file name in the trusted directory ("..%2Fx.json" -> "%2E.%2Fx.json").
      const target = join(trusted, trustedMetadataName(name));
      const fresh = readFileSync(join(work, name));
      const current = existsSync(target) ? readFileSync(target) : null;
      if (current && current.equals(fresh)) continue;
      writeFileAtomicSync(target, fresh, 0o644);
    }
  }
}
