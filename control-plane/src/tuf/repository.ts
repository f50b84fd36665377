/**
 * The control plane as a TUF 1.0 repository (consistent snapshots). Operators upload root and targets metadata
 * signed OFFLINE (control-plane/src/release) plus the images; the plane verifies every upload against the current
 * trusted root with @tufjs/models (never by hand) and then signs a new snapshot and timestamp with its ONLINE keys.
 * A compromised plane therefore cannot add or change a target: devices verify targets against the offline keys
 * (HW-TUF-1).
 *
 * Trusted state moves only through ordered methods that take "now" once, check versions (rollback) and expiry,
 * and write inside one transaction under an advisory lock, so several replicas cannot publish the same version.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { Metadata, MetadataKind, MetaFile, Root, Snapshot, Targets, TargetFile, Timestamp } from "@tufjs/models";
import { and, desc, eq, inArray, sql } from "drizzle-orm";
import type pino from "pino";
import { HashwardError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import { writeStreamAtomic } from "../../../shared/fs/index.js";
import { assertDelegationKeys, assertRootKeys } from "../../../shared/tuf/keys.js";
import { CLOCK_SKEW_MS } from "../../../shared/auth/connect-token.js";
import { tufMetadata, tufImages, type Database } from "../db/index.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { exportOnlineKeys, tufKeyId, tufSigner, type OnlineKeys, type OnlineKeysExport } from "./keys.js";
import { parseReleaseCustom, TARGET_NAME, type ReleaseCustom } from "./release-metadata.js";

export const TOP_ROLES = ["root", "targets", "snapshot", "timestamp"] as const;
export type TopRole = (typeof TOP_ROLES)[number];

const HOUR_MS = 60 * 60_000;
const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_TIMESTAMP_TTL_MS = DAY_MS;
export const DEFAULT_SNAPSHOT_TTL_MS = 7 * DAY_MS;
export const DEFAULT_MAX_IMAGE_BYTES = 512 * 1024 * 1024;
/** Serialized uploads across replicas (any constant; distinct from the migration lock). */
const PUBLISH_LOCK_KEY = 0x4857_5446;

/** An image upload over the size cap (the HTTP layer answers 413). */
export class ImageTooLargeError extends HashwardError {
  constructor(readonly maxBytes: number) {
    super(`image exceeds the ${maxBytes}-byte upload cap (HASHWARD_TUF_MAX_IMAGE_BYTES)`);
  }
}

export interface TufRepositoryOptions {
  /** Lifetime of each signed timestamp; renewed when less than a third is left. */
  timestampTtlMs: number;
  /** Lifetime of each signed snapshot; renewed when less than a third is left. */
  snapshotTtlMs: number;
  maxImageBytes: number;
}

export interface TargetView {
  name: string;
  length: number;
  sha256: string;
  hardwareModels: string[];
  version: string;
  referenceMeasurements: ReleaseCustom["referenceMeasurements"];
  /** The targets metadata version that lists it. */
  targetsVersion: number;
}

export interface TufStatus {
  rootVersion: number | null;
  targetsVersion: number | null;
  snapshotVersion: number | null;
  timestampVersion: number | null;
  timestampExpiresAt: string | null;
  consistentSnapshot: true;
}

export interface PublishedTargets {
  targetsVersion: number;
  snapshotVersion: number;
  timestampVersion: number;
  /** Targets that are new or changed in this version (their reference values become approved). */
  changed: TargetView[];
  targets: TargetView[];
}

export interface TufRepository {
  readonly onlineKeys: OnlineKeysExport;
  /** Upload cap of one image (bytes). */
  readonly maxImageBytes: number;
  status(): Promise<TufStatus>;
  /** TUF 5.3.4: v1 self-signed; vN+1 signed by the thresholds of vN AND vN+1. */
  uploadRoot(document: unknown): Promise<{ version: number }>;
  /** Verified against the current root; on success a new snapshot and timestamp are signed and published. */
  uploadTargets(document: unknown): Promise<PublishedTargets>;
  /** Streams an image to disk, hashing as it goes; refuses one over the cap or not hashing to `sha256`. */
  storeImage(body: AsyncIterable<Uint8Array>, sha256: string): Promise<{ sha256: string; length: number; created: boolean }>;
  listTargets(): Promise<TargetView[]>;
  getTarget(name: string): Promise<TargetView>;
  /** `root.json`, `<v>.root.json`, `<v>.targets.json`, `<v>.snapshot.json`, `timestamp.json` (and latest aliases). */
  metadata(file: string): Promise<string | null>;
  /** `<sha256>.<name>` of a published target: its path on disk and length. */
  targetFile(file: string): Promise<{ path: string; length: number } | null>;
  /** Timer work: re-signs timestamp (and snapshot) when less than a third of their lifetime is left. */
  renewIfDue(): Promise<{ renewed: TopRole[] }>;
}

const METADATA_FILE = /^(?:(\d{1,9})\.)?(root|targets|snapshot|timestamp)\.json$/;
const TARGET_FILE = /^([0-9a-f]{64})\.(.+)$/;
const SHA256 = /^[0-9a-f]{64}$/;

function iso(ms: number): string {
  // TUF expiry format: no fractional seconds.
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** Any failure to parse becomes a ValidationError naming the role: never trust half-parsed metadata. */
function parseMetadata<K extends MetadataKind.Root | MetadataKind.Targets>(kind: K, document: unknown) {
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new ValidationError(`${kind} metadata must be a JSON object`, kind);
  }
  const signed = (document as { signed?: { _type?: unknown; spec_version?: unknown } }).signed;
  if (signed?._type !== kind) throw new ValidationError(`expected ${kind} metadata, got _type ${JSON.stringify(signed?._type)}`, "signed._type");
  // TUF 1.0 clients accept spec_version 1.x only.
  if (typeof signed.spec_version !== "string" || !/^1\.\d+(\.\d+)?$/.test(signed.spec_version)) {
    throw new ValidationError(`${kind} spec_version must be 1.x`, "signed.spec_version");
  }
  try {
    return Metadata.fromJSON(kind as never, document as never) as K extends MetadataKind.Root ? Metadata<Root> : Metadata<Targets>;
  } catch (error) {
    throw new ValidationError(`${kind} metadata is malformed: ${(error as Error).message}`, kind, { cause: error });
  }
}

/** verifyDelegate throws on any failure (fewer distinct valid keys than the threshold); map to our tree. */
function verifyRole(delegator: Metadata<Root>, role: string, metadata: Metadata<Root | Targets | Snapshot | Timestamp>, what: string): void {
  try {
    delegator.verifyDelegate(role, metadata);
  } catch (error) {
    throw new VerificationError(`${what}: ${(error as Error).message}`, { cause: error });
  }
}

function toView(target: TargetFile, targetsVersion: number): TargetView {
  const custom = parseReleaseCustom(target.unrecognizedFields.custom, target.path);
  return {
    name: target.path,
    length: target.length,
    sha256: target.hashes.sha256 ?? "",
    hardwareModels: custom.hardwareModels,
    version: custom.version,
    referenceMeasurements: custom.referenceMeasurements,
    targetsVersion,
  };
}

export function createTufRepository(deps: {
  db: Database;
  dataDir: string;
  /**
   * Where uploaded target images are kept (default `<dataDir>/tuf/targets`). Replicas point it at one shared
   * folder (HASHWARD_TUF_IMAGE_DIR), since metadata is in the shared database but an image lands where it was
   * uploaded (docs/scale.md "Replicas").
   */
  imageDir?: string;
  keys: OnlineKeys;
  options: TufRepositoryOptions;
  logger: pino.Logger;
  now?: () => number;
}): TufRepository {
  const { db, keys, options, logger } = deps;
  const now = deps.now ?? Date.now;
  const imageDir = deps.imageDir ?? join(deps.dataDir, "tuf", "targets");
  mkdirSync(imageDir, { recursive: true, mode: 0o700 });
  const onlineKeys = exportOnlineKeys({ snapshot: keys.snapshot.publicKey, timestamp: keys.timestamp.publicKey });
  const signSnapshot = tufSigner(keys.snapshot);
  const signTimestamp = tufSigner(keys.timestamp);

  type Tx = Database;
  async function latest(tx: Tx, role: TopRole) {
    const [row] = await tx.select().from(tufMetadata).where(eq(tufMetadata.role, role)).orderBy(desc(tufMetadata.version)).limit(1);
    return row ?? null;
  }
  async function lock(tx: Tx): Promise<void> {
    await tx.execute(sql`select pg_advisory_xact_lock(${PUBLISH_LOCK_KEY})`);
  }
  async function insert(tx: Tx, role: TopRole, metadata: Metadata<Root | Targets | Snapshot | Timestamp>, body: string, at: Date) {
    await tx.insert(tufMetadata).values({ role, version: metadata.signed.version, body, expiresAt: new Date(metadata.signed.expires), createdAt: at });
  }

  /** The plane can only publish if the root names its online keys for snapshot and timestamp, threshold 1. */
  function assertOnlineKeysListed(root: Root): void {
    for (const role of ["snapshot", "timestamp"] as const) {
      const listed = root.roles[role];
      const keyid = onlineKeys[role].keyid;
      if (!listed?.keyIDs.includes(keyid) || !root.keys[keyid]) {
        throw new ConflictError(`root v${root.version} does not list the plane's online ${role} key ${keyid} (export it with GET /api/v1/tuf/online-keys)`);
      }
      if (listed.threshold !== 1) throw new ConflictError(`root v${root.version}: ${role} threshold must be 1 (the plane holds one online ${role} key)`);
    }
    if (!root.consistentSnapshot) throw new ConflictError(`root v${root.version}: consistent_snapshot must be true`);
  }

  /** Signs snapshot v(n+1) listing `targetsVersion` and a timestamp over it (both online keys). */
  async function publishSnapshotAndTimestamp(tx: Tx, root: Metadata<Root>, targetsVersion: number, at: number) {
    const previousSnapshot = await latest(tx, "snapshot");
    const snapshot = new Metadata(
      new Snapshot({
        version: (previousSnapshot?.version ?? 0) + 1,
        specVersion: "1.0.31",
        expires: iso(at + options.snapshotTtlMs),
        meta: { "targets.json": new MetaFile({ version: targetsVersion }) },
      }),
    );
    snapshot.sign(signSnapshot);
    verifyRole(root, "snapshot", snapshot, "self-check of the new snapshot"); // fail closed if the root changed under us
    const snapshotBody = JSON.stringify(snapshot.toJSON());
    await insert(tx, "snapshot", snapshot, snapshotBody, new Date(at));
    const timestampVersion = await publishTimestamp(tx, root, snapshot.signed.version, snapshotBody, at);
    return { snapshotVersion: snapshot.signed.version, timestampVersion };
  }

  async function publishTimestamp(tx: Tx, root: Metadata<Root>, snapshotVersion: number, snapshotBody: string, at: number): Promise<number> {
    const previous = await latest(tx, "timestamp");
    const bytes = Buffer.from(snapshotBody);
    const timestamp = new Metadata(
      new Timestamp({
        version: (previous?.version ?? 0) + 1,
        specVersion: "1.0.31",
        expires: iso(at + options.timestampTtlMs),
        snapshotMeta: new MetaFile({ version: snapshotVersion, length: bytes.length, hashes: { sha256: createHash("sha256").update(bytes).digest("hex") } }),
      }),
    );
    timestamp.sign(signTimestamp);
    verifyRole(root, "timestamp", timestamp, "self-check of the new timestamp");
    await insert(tx, "timestamp", timestamp, JSON.stringify(timestamp.toJSON()), new Date(at));
    return timestamp.signed.version;
  }

  async function trustedRoot(tx: Tx): Promise<Metadata<Root> | null> {
    const row = await latest(tx, "root");
    return row ? Metadata.fromJSON(MetadataKind.Root, JSON.parse(row.body)) : null;
  }

  async function currentTargets(tx: Tx): Promise<Metadata<Targets> | null> {
    const row = await latest(tx, "targets");
    return row ? Metadata.fromJSON(MetadataKind.Targets, JSON.parse(row.body)) : null;
  }

  return {
    onlineKeys,
    maxImageBytes: options.maxImageBytes,

    async status() {
      const rows = await db
        .select({ role: tufMetadata.role, version: sql<number>`max(${tufMetadata.version})` })
        .from(tufMetadata)
        .groupBy(tufMetadata.role);
      const version = (role: TopRole) => {
        const value = rows.find((row) => row.role === role)?.version;
        return value === undefined || value === null ? null : Number(value);
      };
      const timestamp = await latest(db, "timestamp");
      return {
        rootVersion: version("root"),
        targetsVersion: version("targets"),
        snapshotVersion: version("snapshot"),
        timestampVersion: version("timestamp"),
        timestampExpiresAt: timestamp ? timestamp.expiresAt.toISOString() : null,
        consistentSnapshot: true,
      };
    },

    async uploadRoot(document) {
      const candidate = parseMetadata(MetadataKind.Root, document);
      // HW-TUF-4: every key under its own id, no public key twice in a role (@tufjs/models counts key ids).
      assertRootKeys((document as { signed: unknown }).signed);
      const at = now();
      return db.transaction(async (tx) => {
        await lock(tx);
        const trusted = await trustedRoot(tx);
        const version = candidate.signed.version;
        if (trusted === null) {
          if (version !== 1) throw new ConflictError(`the first root must be version 1, got ${version}`);
        } else {
          // HW-TUF-2, TUF 5.3.4/5.3.5: the next root is exactly N+1, signed by a threshold of the trusted root's keys.
          if (version !== trusted.signed.version + 1) {
            throw new ConflictError(`root version ${version} is not the next version (trusted root is v${trusted.signed.version})`);
          }
          verifyRole(trusted, "root", candidate, `root v${version} is not signed by a threshold of root v${trusted.signed.version}'s keys`);
        }
        // TUF 5.3.4: ... AND by a threshold of its own keys.
        verifyRole(candidate, "root", candidate, `root v${version} is not signed by a threshold of its own root keys`);
        if (candidate.signed.isExpired(new Date(at))) throw new VerificationError(`root v${version} expired at ${candidate.signed.expires}`);
        assertOnlineKeysListed(candidate.signed);
        await insert(tx, "root", candidate, JSON.stringify(document), new Date(at));
        logger.info({ version }, "TUF root published");
        return { version };
      });
    },

    async uploadTargets(document) {
      const candidate = parseMetadata(MetadataKind.Targets, document);
      const at = now();
      const published = await db.transaction(async (tx) => {
        await lock(tx);
        const root = await trustedRoot(tx);
        if (!root) throw new ConflictError("no root is published yet: upload root metadata first (release upload)");
        const version = candidate.signed.version;
        // HW-TUF-4: also a root stored before this check must count distinct keys before it verifies anything.
        assertRootKeys(root.signed.toJSON());
        assertDelegationKeys((document as { signed: unknown }).signed);
        // HW-TUF-1, TUF 5.6.3: a threshold of the targets keys the trusted root names (online keys do not count).
        verifyRole(root, "targets", candidate, `targets v${version} is not signed by a threshold of the root's targets keys`);
        const previous = await currentTargets(tx);
        // TUF 5.6.5 (rollback): a repository only moves forward.
        if (previous && version <= previous.signed.version) {
          throw new VerificationError(`targets version ${version} is not above the published ${previous.signed.version} (rollback)`);
        }
        // TUF 5.6.6 (freeze): expired metadata is never published.
        if (candidate.signed.isExpired(new Date(at))) throw new VerificationError(`targets v${version} expired at ${candidate.signed.expires}`);
        if (candidate.signed.delegations) throw new ValidationError("delegated targets roles are not supported", "signed.delegations");

        const targets = Object.values(candidate.signed.targets);
        const views = targets.map((target) => {
          if (!TARGET_NAME.test(target.path)) {
            throw new ValidationError(`target name ${JSON.stringify(target.path)} must match ${TARGET_NAME.source}`, `signed.targets.${target.path}`);
          }
          const sha256 = target.hashes.sha256;
          if (sha256 === undefined || !SHA256.test(sha256)) {
            throw new ValidationError(`target ${target.path} needs a lowercase hex sha256 hash`, `signed.targets.${target.path}.hashes.sha256`);
          }
          return toView(target, version);
        });
        const images = views.length === 0 ? [] : await tx.select().from(tufImages).where(inArray(tufImages.sha256, views.map((v) => v.sha256)));
        for (const view of views) {
          const image = images.find((row) => row.sha256 === view.sha256);
          // Every listed target must be servable exactly as signed: present, same length, same hash.
          if (!image) throw new ConflictError(`target ${view.name}: image ${view.sha256} is not uploaded (PUT /api/v1/tuf/images/${view.sha256} first)`);
          if (image.length !== view.length) {
            throw new VerificationError(`target ${view.name}: signed length ${view.length} differs from the uploaded image's ${image.length}`);
          }
        }

        await insert(tx, "targets", candidate, JSON.stringify(document), new Date(at));
        const { snapshotVersion, timestampVersion } = await publishSnapshotAndTimestamp(tx, root, version, at);
        const before = new Map(previous ? Object.values(previous.signed.targets).map((t) => [t.path, t]) : []);
        const changed = views.filter((view) => {
          const old = before.get(view.name);
          return !old || !old.equals(candidate.signed.targets[view.name] as TargetFile);
        });
        return { targetsVersion: version, snapshotVersion, timestampVersion, changed, targets: views };
      });
      logger.info({ targetsVersion: published.targetsVersion, snapshotVersion: published.snapshotVersion, targets: published.targets.map((t) => t.name) }, "TUF targets published");
      return published;
    },

    async storeImage(body, sha256) {
      if (!SHA256.test(sha256)) throw new ValidationError("image id must be a lowercase hex sha256", "sha256");
      const hash = createHash("sha256");
      let received = 0;
      const length = await writeStreamAtomic(join(imageDir, sha256), body, {
        onChunk(chunk) {
          received += chunk.byteLength;
          if (received > options.maxImageBytes) throw new ImageTooLargeError(options.maxImageBytes);
          hash.update(chunk);
        },
        beforeRename() {
          const digest = hash.digest("hex");
          if (digest !== sha256) throw new VerificationError(`uploaded image hashes to ${digest}, not the ${sha256} it was uploaded as`);
        },
      });
      const inserted = await db
        .insert(tufImages)
        .values({ sha256, length, uploadedAt: new Date(now()) })
        .onConflictDoNothing()
        .returning({ sha256: tufImages.sha256 });
      return { sha256, length, created: inserted.length > 0 };
    },

    async listTargets() {
      const targets = await currentTargets(db);
      if (!targets) return [];
      return Object.values(targets.signed.targets).map((t) => toView(t, targets.signed.version));
    },

    async getTarget(name) {
      const targets = await currentTargets(db);
      // Own properties only: a name like "constructor" must be "not found", not Object.prototype's.
      const target = targets && Object.hasOwn(targets.signed.targets, name) ? targets.signed.targets[name] : undefined;
      if (!targets || !target) throw new NotFoundError("target", name);
      return toView(target, targets.signed.version);
    },

    async metadata(file) {
      const match = METADATA_FILE.exec(file);
      if (!match) return null;
      const role = match[2] as TopRole;
      const version = match[1] === undefined ? null : Number(match[1]);
      if (version === null) {
        return (await latest(db, role))?.body ?? null;
      }
      // Timestamp is never versioned in a consistent-snapshot repository (TUF 5.4: always timestamp.json).
      if (role === "timestamp") return null;
      const [row] = await db.select({ body: tufMetadata.body }).from(tufMetadata).where(and(eq(tufMetadata.role, role), eq(tufMetadata.version, version)));
      return row?.body ?? null;
    },

    async targetFile(file) {
      const match = TARGET_FILE.exec(file);
      if (!match) return null;
      const [, sha256, name] = match as unknown as [string, string, string];
      // Only what the current targets metadata lists is served (the plane is not a general file host).
      const targets = await currentTargets(db);
      const target = targets && Object.hasOwn(targets.signed.targets, name) ? targets.signed.targets[name] : undefined;
      if (!target || target.hashes.sha256 !== sha256) return null;
      const path = join(imageDir, sha256);
      try {
        const info = await stat(path);
        return { path, length: info.size };
      } catch {
        logger.error({ sha256, name }, "published target image is missing from the data dir");
        return null;
      }
    },

    // HW-TUF-3: re-signed while still valid, so clients never see an expired timestamp from an available plane.
    async renewIfDue() {
      const at = now();
      return db.transaction(async (tx) => {
        await lock(tx);
        const root = await trustedRoot(tx);
        const snapshot = await latest(tx, "snapshot");
        const timestamp = await latest(tx, "timestamp");
        if (!root || !snapshot || !timestamp) return { renewed: [] };
        const renewed: TopRole[] = [];
        // Due with a third of its lifetime left, or (HW-FAULT-11) with MORE than a lifetime left: it was signed while
        // the plane's clock was ahead, and would stretch the freeze window (TUF 5.3.10) by the size of that step.
        const due = (expiresAt: Date, ttlMs: number) => {
          const left = expiresAt.getTime() - at;
          return left < ttlMs / 3 || left > ttlMs + CLOCK_SKEW_MS;
        };
        if (due(snapshot.expiresAt, options.snapshotTtlMs)) {
          const targets = await currentTargets(tx);
          if (!targets) return { renewed };
          await publishSnapshotAndTimestamp(tx, root, targets.signed.version, at);
          renewed.push("snapshot", "timestamp");
        } else if (due(timestamp.expiresAt, options.timestampTtlMs)) {
          await publishTimestamp(tx, root, snapshot.version, snapshot.body, at);
          renewed.push("timestamp");
        }
        if (renewed.length > 0) logger.info({ renewed }, "TUF online metadata renewed before expiry");
        return { renewed };
      });
    },
  };
}

export { tufKeyId };
