/**
 * A small TUF repository for tests (not shipped): ed25519 keys per role, metadata built and signed with
 * @tufjs/models, published with consistent snapshots exactly as the control plane serves them
 * (`<v>.root.json`, `<v>.targets.json`, `<v>.snapshot.json`, `timestamp.json`, targets as `<sha256>.<name>`),
 * and an HTTP server on port 0 whose answers a test can override to stage an attack.
 */
import { createHash, generateKeyPairSync, sign as cryptoSign, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { Key, Metadata, MetaFile, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } from "@tufjs/models";
import { tufKeyIdOf } from "../../../../shared/tuf/keys.js";
import type { ReleaseCustom } from "../../../../shared/protocol/release.js";
import { buildFirmwareImage, type ImageFile } from "../image.js";
import { simulatedFirmwareFiles } from "../../platform/simulated.js";

export interface TestKey {
  keyId: string;
  key: Key;
  privateKey: KeyObject;
}

export function generateTufKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const publicHex = Buffer.from(raw).toString("hex");
  // TUF 4.2: the key id is the SHA-256 of the canonical key object (HW-TUF-4 refuses any other).
  const keyId = tufKeyIdOf({ keytype: "ed25519", scheme: "ed25519", keyval: { public: publicHex } });
  return { keyId, key: new Key({ keyID: keyId, keyType: "ed25519", scheme: "ed25519", keyVal: { public: publicHex } }), privateKey };
}

/** Signs `md` with each signer (appending); exported so tests can stage their own delegation graphs. */
export function signWith<T extends Root | Targets | Snapshot | Timestamp>(md: Metadata<T>, signers: readonly TestKey[]): Metadata<T> {
  for (const signer of signers) {
    md.sign((data) => new Signature({ keyID: signer.keyId, sig: cryptoSign(null, data, signer.privateKey).toString("hex") }), true);
  }
  return md;
}

/** TUF 5.7.3 with consistent snapshots: `dir/name` is served as `dir/<sha256>.name`. */
function hashedName(name: string, sha256: string): string {
  const slash = name.lastIndexOf("/");
  return slash < 0 ? `${sha256}.${name}` : `${name.slice(0, slash)}/${sha256}.${name.slice(slash + 1)}`;
}

export const isoIn = (ms: number) => new Date(Date.now() + ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const DAY = 86_400_000;

/**
 * A target's custom block as a test signs it: the wire shape (ReleaseCustom, shared/protocol/release.ts) loosened
 * so a test can also sign what the agent must refuse (raw or bad measurements, extra fields).
 */
export type TestReleaseCustom = Omit<ReleaseCustom, "referenceMeasurements"> & { referenceMeasurements?: unknown[]; [key: string]: unknown };

type Override = (req: IncomingMessage, res: ServerResponse) => void;

export class TestTufRepo {
  readonly keys: { root: TestKey[]; targets: TestKey[]; snapshot: TestKey; timestamp: TestKey };
  readonly thresholds: { root: number; targets: number };
  readonly targets = new Map<string, TargetFile>();
  readonly versions = { root: 1, targets: 0, snapshot: 0, timestamp: 0 };
  readonly overrides = new Map<string, Override>();
  /** Every request path the server saw, in order. */
  readonly requests: string[] = [];
  private server: Server | null = null;
  baseUrl = "";

  constructor(
    readonly dir: string,
    opts: { rootKeys?: number; rootThreshold?: number; targetsKeys?: number; targetsThreshold?: number } = {},
  ) {
    this.keys = {
      root: Array.from({ length: opts.rootKeys ?? 1 }, generateTufKey),
      targets: Array.from({ length: opts.targetsKeys ?? 1 }, generateTufKey),
      snapshot: generateTufKey(),
      timestamp: generateTufKey(),
    };
    this.thresholds = { root: opts.rootThreshold ?? 1, targets: opts.targetsThreshold ?? 1 };
    mkdirSync(join(dir, "metadata"), { recursive: true });
    mkdirSync(join(dir, "targets"), { recursive: true });
    this.writeRoot();
  }

  get metadataUrl(): string {
    return `${this.baseUrl}/tuf/metadata/`;
  }

  get targetsUrl(): string {
    return `${this.baseUrl}/tuf/targets/`;
  }

  /** The v1 root, as a device is provisioned with it (`update.trustedRootFile`). */
  get rootFile(): string {
    return join(this.dir, "metadata", "1.root.json");
  }

  private writeRoot(): void {
    const root = new Root({ version: this.versions.root, specVersion: "1.0.31", expires: isoIn(365 * DAY), consistentSnapshot: true });
    for (const k of this.keys.root) root.addKey(k.key, "root");
    for (const k of this.keys.targets) root.addKey(k.key, "targets");
    root.addKey(this.keys.snapshot.key, "snapshot");
    root.addKey(this.keys.timestamp.key, "timestamp");
    root.roles["root"] = Object.assign(root.roles["root"]!, { threshold: this.thresholds.root });
    root.roles["targets"] = Object.assign(root.roles["targets"]!, { threshold: this.thresholds.targets });
    const md = signWith(new Metadata(root), this.keys.root.slice(0, this.thresholds.root));
    this.writeMetadata(`${this.versions.root}.root.json`, md);
    this.writeMetadata("root.json", md);
  }

  private writeMetadata(name: string, md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
    const bytes = Buffer.from(JSON.stringify(md.toJSON()));
    writeFileSync(join(this.dir, "metadata", name), bytes);
    return bytes;
  }

  /** Stores an image and lists it as a target with `custom` metadata (published by the next `publish`). */
  addTarget(name: string, image: Buffer, custom: TestReleaseCustom): TargetFile {
    const sha256 = createHash("sha256").update(image).digest("hex");
    const file = join(this.dir, "targets", hashedName(name, sha256));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, image);
    const target = new TargetFile({ path: name, length: image.byteLength, hashes: { sha256 }, unrecognizedFields: { custom: custom as never } });
    this.targets.set(name, target);
    return target;
  }

  /**
   * Signs and writes new targets, snapshot and timestamp versions. Options stage attacks: who signs targets
   * (default: the targets keys to threshold), expiry of the timestamp.
   */
  publish(
    opts: {
      targetsSigners?: readonly TestKey[];
      timestampExpiresInMs?: number;
      timestampSigners?: readonly TestKey[];
      /** Returns the top-level targets to sign instead (e.g. with delegations added). */
      configureTargets?: (targets: Targets) => Targets;
      /** Delegated roles written with `writeDelegatedRole`, listed in the snapshot: role name -> version. */
      delegated?: ReadonlyMap<string, number>;
    } = {},
  ): void {
    this.versions.targets += 1;
    let targets = new Targets({ version: this.versions.targets, specVersion: "1.0.31", expires: isoIn(30 * DAY) });
    for (const t of this.targets.values()) targets.addTarget(t);
    if (opts.configureTargets) targets = opts.configureTargets(targets);
    const targetsBytes = this.writeMetadata(
      `${this.versions.targets}.targets.json`,
      signWith(new Metadata(targets), opts.targetsSigners ?? this.keys.targets.slice(0, this.thresholds.targets)),
    );
    this.versions.snapshot += 1;
    const snapshot = new Snapshot({
      version: this.versions.snapshot,
      specVersion: "1.0.31",
      expires: isoIn(7 * DAY),
      meta: {
        "targets.json": new MetaFile({ version: this.versions.targets, length: targetsBytes.byteLength, hashes: { sha256: createHash("sha256").update(targetsBytes).digest("hex") } }),
        ...Object.fromEntries([...(opts.delegated ?? new Map())].map(([name, version]) => [`${name}.json`, new MetaFile({ version })])),
      },
    });
    const snapshotBytes = this.writeMetadata(`${this.versions.snapshot}.snapshot.json`, signWith(new Metadata(snapshot), [this.keys.snapshot]));
    this.signTimestamp({ ...opts, snapshotBytes });
  }

  /** A new timestamp over the current snapshot (or over `snapshotVersion`, to stage mix-and-match). */
  signTimestamp(opts: { timestampExpiresInMs?: number; timestampSigners?: readonly TestKey[]; snapshotVersion?: number; snapshotBytes?: Buffer } = {}): void {
    this.versions.timestamp += 1;
    const snapshotVersion = opts.snapshotVersion ?? this.versions.snapshot;
    const bytes = opts.snapshotBytes ?? readFileSync(join(this.dir, "metadata", `${this.versions.snapshot}.snapshot.json`));
    const timestamp = new Timestamp({
      version: this.versions.timestamp,
      specVersion: "1.0.31",
      expires: isoIn(opts.timestampExpiresInMs ?? DAY),
      snapshotMeta: new MetaFile({ version: snapshotVersion, length: bytes.byteLength, hashes: { sha256: createHash("sha256").update(bytes).digest("hex") } }),
    });
    this.writeMetadata("timestamp.json", signWith(new Metadata(timestamp), opts.timestampSigners ?? [this.keys.timestamp]));
  }

  /**
   * Writes delegated role `name` (version `targets.version`), signed by `signers`, where tuf-js fetches it:
   * `<v>.<encodeURIComponent(name)>.json` (served through an override, since the name may hold `/` or `..`).
   */
  writeDelegatedRole(name: string, targets: Targets, signers: readonly TestKey[]): Buffer {
    const bytes = Buffer.from(JSON.stringify(signWith(new Metadata(targets), signers).toJSON()));
    this.overrides.set(`/tuf/metadata/${targets.version}.${name}.json`, (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.byteLength }).end(bytes);
    });
    return bytes;
  }

  /** Writes root v(N+1), changed by `change`, signed by the current root keys and `extraSigners`; returns it. */
  rotateRoot(change: (root: Root) => void, extraSigners: readonly TestKey[] = []): Metadata<Root> {
    const current = Metadata.fromJSON("root" as never, JSON.parse(readFileSync(join(this.dir, "metadata", "root.json"), "utf8"))) as Metadata<Root>;
    const json = current.signed.toJSON() as Record<string, unknown>;
    json.version = current.signed.version + 1;
    const next = new Metadata(Root.fromJSON(json as never));
    change(next.signed);
    this.versions.root = next.signed.version;
    const md = signWith(next, [...this.keys.root.slice(0, this.thresholds.root), ...extraSigners]);
    this.writeMetadata(`${this.versions.root}.root.json`, md);
    this.writeMetadata("root.json", md);
    return md;
  }

  /** The URL path of a target's file (consistent snapshot: hash-prefixed). */
  targetPath(name: string): string {
    const t = this.targets.get(name);
    if (!t) throw new Error(`no target ${name}`);
    return `/tuf/targets/${hashedName(name, t.hashes["sha256"]!)}`;
  }

  /**
   * Serves `name` as an endless stream with no content-length (the "endless data" attack: only the signed length
   * bounds the download). Returns how many bytes were written so far; it stops by itself after 1 GiB.
   */
  serveEndless(name: string): { sent(): number } {
    let sent = 0;
    this.overrides.set(this.targetPath(name), (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      const pump = () => {
        while (!res.destroyed && sent < 1024 * 1024 * 1024) {
          sent += chunk.byteLength;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        if (!res.destroyed) res.end();
      };
      pump();
    });
    return { sent: () => sent };
  }

  metadataPath(name: string): string {
    return join(this.dir, "metadata", name);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      this.requests.push(path);
      const override = this.overrides.get(path);
      if (override) return override(req, res);
      const m = /^\/tuf\/(metadata|targets)\/(.+)$/.exec(path);
      const file = m && !m[2]!.split("/").some((s) => s === "" || s.startsWith(".")) ? join(this.dir, m[1]!, m[2]!) : null;
      if (!file || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      const body = readFileSync(file);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.byteLength }).end(body);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A simulated-board firmware image for `model`/`version`; `selftest: "fail"` makes its health check fail. */
export function testFirmwareImage(model: string, version: string, opts: { selftest?: string; extraFiles?: ImageFile[] } = {}): Buffer {
  const files: ImageFile[] = Object.entries(simulatedFirmwareFiles(model, version)).map(([path, content]) => ({
    path,
    content,
    mode: path === "bmminer" ? 0o755 : 0o644,
  }));
  if (opts.selftest !== undefined) files.push({ path: "etc/selftest", content: `${opts.selftest}\n` });
  files.push(...(opts.extraFiles ?? []));
  return buildFirmwareImage(files);
}
