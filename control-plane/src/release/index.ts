/**
 * `release`: the OFFLINE release tool (npm run release -- ...). It makes and holds the root and targets keys,
 * signs root and targets metadata, and only `upload` talks to the plane (operator API, bearer token from a file).
 * The repository folder it writes (`--repo`, default ./release-repo) holds public files only:
 *   <v>.root.json, root.json, <v>.targets.json, targets.json, images/<sha256>
 * Side effects (files, fetch, output) go through `ReleaseIo`, so tests run it in-process.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createReadStream, openAsBlob } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import type { Metadata, Root, Targets } from "@tufjs/models";
import { HashwardError } from "../../../shared/errors/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import { defaultPlaneCaFile } from "../../../shared/tls/index.js";
import { isSemVer, parseMeasurement, parseReleaseCustom, TARGET_NAME, type OnlineKeysExport, type ReleaseMeasurement } from "../tuf/index.js";
import { createKeyDir, loadKeyDir } from "./keydir.js";
import { buildRoot, buildTargets, expiresIn, nextRoot, parseRootJson, parseTargetsJson, signWith } from "./metadata.js";
import { fetchRetryingReset } from "../../../shared/http/retry.js";

export interface ReleaseIo {
  /** `ca`: PEM of the only CA to trust for an https:// plane (its `<dataDir>/ca.pem`, HW-TLS-1). */
  fetch: (url: string, init: RequestInit, ca?: string) => Promise<Response>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const USAGE = `usage: release <command>   (offline; only "upload" talks to the control plane)

keys init --dir D [--root-keys 3 --root-threshold 2 --targets-keys 1 --targets-threshold 1]
    make ed25519 root and targets keys (0600) in D/root/ and D/targets/; keep D offline
root init --keys D --online-keys FILE [--repo R] [--expires 365d]
    sign root v1 with D's root keys; FILE = the plane's GET /api/v1/tuf/online-keys answer
sign --keys D --image FILE --name NAME --version SEMVER --models S19,S19j --reference measure.json
     [--repo R] [--expires 30d]
    add/replace target NAME in a new targets version signed by D's targets keys (threshold)
    (measure.json: "hashward-agent measure" output, or {measurements: [...]}, of the installed firmware)
rotate-root --keys OLD --new-keys NEW [--repo R] [--expires 365d]
    root vN+1 with NEW's root keys and threshold, signed by OLD's and NEW's root keys (TUF 5.3.4)
upload --url URL --token-file FILE [--repo R] [--ca-file F (default <HASHWARD_DATA_DIR or ./data>/ca.pem)]
    POST new root versions, PUT images, POST the targets metadata to the plane (operator token; admin for root)`;

class UsageError extends HashwardError {
  override name = "UsageError";
}

const OPTIONS = {
  dir: { type: "string" },
  keys: { type: "string" },
  "new-keys": { type: "string" },
  repo: { type: "string" },
  "online-keys": { type: "string" },
  expires: { type: "string" },
  image: { type: "string" },
  name: { type: "string" },
  version: { type: "string" },
  models: { type: "string" },
  reference: { type: "string" },
  url: { type: "string" },
  "ca-file": { type: "string" },
  "token-file": { type: "string" },
  "root-keys": { type: "string" },
  "root-threshold": { type: "string" },
  "targets-keys": { type: "string" },
  "targets-threshold": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const DAY_MS = 86_400_000;

function required(value: string | undefined, name: string): string {
  if (value === undefined || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

function count(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,3}$/.test(value) || Number(value) < 1) throw new UsageError(`--${name} ${value}: must be a positive whole number`);
  return Number(value);
}

/** "30d", "12h", "90m" -> milliseconds. */
export function parseDuration(value: string | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const match = /^(\d{1,5})([dhm])$/.exec(value);
  if (!match) throw new UsageError(`--expires ${value}: use a number and d, h or m (e.g. 30d)`);
  return Number(match[1]) * { d: DAY_MS, h: 3_600_000, m: 60_000 }[match[2] as "d" | "h" | "m"];
}

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new UsageError(`${what} ${path}: ${(error as Error).message}`);
  }
}

/** The highest `<v>.<role>.json` in the repo folder, or null. */
function latestVersion(repo: string, role: "root" | "targets"): number | null {
  if (!existsSync(repo)) return null;
  const versions = readdirSync(repo)
    .map((name) => new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(name)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number);
  return versions.length === 0 ? null : Math.max(...versions);
}

function writeVersioned(repo: string, role: "root" | "targets", metadata: Metadata<Root> | Metadata<Targets>): string {
  mkdirSync(repo, { recursive: true });
  const text = `${JSON.stringify(metadata.toJSON(), null, 2)}\n`;
  const file = join(repo, `${metadata.signed.version}.${role}.json`);
  writeFileAtomicSync(file, text, 0o644);
  writeFileAtomicSync(join(repo, `${role}.json`), text, 0o644);
  return file;
}

async function sha256OfFile(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), length };
}

function readReference(path: string): ReleaseMeasurement[] {
  const document = readJson(path, "--reference");
  const list = Array.isArray(document) ? document : (document as { measurements?: unknown }).measurements;
  if (!Array.isArray(list)) throw new UsageError(`--reference ${path}: expected the "hashward-agent measure" array or {measurements: [...]}`);
  return list.map((m, i) => parseMeasurement(m, `measurements.${i}`));
}

export async function runRelease(argv: readonly string[], io: ReleaseIo): Promise<number> {
  try {
    const { values: v, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    const [command, verb] = positionals;
    if (v.help || command === undefined) {
      io.stdout(`${USAGE}\n`);
      return v.help ? 0 : 2;
    }
    const repo = v.repo ?? "release-repo";
    const out = (value: unknown) => io.stdout(`${JSON.stringify(value, null, 2)}\n`);

    if (command === "keys" && verb === "init") {
      const dir = required(v.dir, "dir");
      const rootKeys = count(v["root-keys"], "root-keys", 3);
      const targetsKeys = count(v["targets-keys"], "targets-keys", 1);
      const made = createKeyDir(dir, {
        rootKeys,
        rootThreshold: count(v["root-threshold"], "root-threshold", Math.min(2, rootKeys)),
        targetsKeys,
        targetsThreshold: count(v["targets-threshold"], "targets-threshold", 1),
      });
      out({ dir, root: { keys: made.root.length, threshold: made.rootThreshold }, targets: { keys: made.targets.length, threshold: made.targetsThreshold } });
      return 0;
    }

    if (command === "root" && verb === "init") {
      const keys = loadKeyDir(required(v.keys, "keys"));
      if (latestVersion(repo, "root") !== null) throw new UsageError(`${repo} already has a root; use rotate-root`);
      const online = readJson(required(v["online-keys"], "online-keys"), "--online-keys") as OnlineKeysExport;
      if (!online?.snapshot?.keyid || !online?.timestamp?.keyid) throw new UsageError("--online-keys: expected {snapshot: {keyid, key}, timestamp: {keyid, key}}");
      const root = buildRoot({
        version: 1,
        expires: expiresIn(parseDuration(v.expires, 365 * DAY_MS)),
        root: { keys: keys.root.map((k) => k.publicKey), threshold: keys.rootThreshold },
        targets: { keys: keys.targets.map((k) => k.publicKey), threshold: keys.targetsThreshold },
        online,
      });
      out({ root: writeVersioned(repo, "root", signWith(root, keys.root)), version: 1 });
      return 0;
    }

    if (command === "sign") {
      const keys = loadKeyDir(required(v.keys, "keys"));
      if (keys.targets.length < keys.targetsThreshold) throw new UsageError(`${v.keys} holds ${keys.targets.length} targets keys; the threshold is ${keys.targetsThreshold}`);
      const image = required(v.image, "image");
      const name = v.name ?? basename(image);
      if (!TARGET_NAME.test(name)) throw new UsageError(`--name ${name}: must match ${TARGET_NAME.source}`);
      const version = required(v.version, "version");
      // HW-UPD-3: the version definition the plane's upload check and every agent's floor share (shared/semver).
      if (!isSemVer(version)) throw new UsageError(`--version ${version}: must be a semantic version (SemVer 2.0.0, e.g. 2.1.0 or 2.1.0-rc.1)`);
      const models = required(v.models, "models").split(",").map((m) => m.trim()).filter(Boolean);
      if (models.length === 0) throw new UsageError("--models needs at least one model");
      const referenceMeasurements = readReference(required(v.reference, "reference"));
      // The same check the plane runs at upload: nothing is signed that the plane (or an agent) would refuse.
      try {
        parseReleaseCustom({ hardwareModels: models, version, referenceMeasurements }, name);
      } catch (error) {
        throw new UsageError(`release metadata for ${name}: ${(error as Error).message}`);
      }
      const { sha256, length } = await sha256OfFile(image);
      const previousVersion = latestVersion(repo, "targets");
      const previous = previousVersion === null ? null : parseTargetsJson(readJson(join(repo, `${previousVersion}.targets.json`), "targets"));
      const targets = buildTargets(previous, [{ name, length, sha256, custom: { hardwareModels: models, version, referenceMeasurements } }], expiresIn(parseDuration(v.expires, 30 * DAY_MS)));
      // Sign with every targets key at hand (at least the threshold, checked above).
      const file = writeVersioned(repo, "targets", signWith(targets, keys.targets));
      mkdirSync(join(repo, "images"), { recursive: true });
      copyFileSync(image, join(repo, "images", sha256));
      out({ targets: file, version: targets.signed.version, target: { name, length, sha256, version, hardwareModels: models } });
      return 0;
    }

    if (command === "rotate-root") {
      const oldKeys = loadKeyDir(required(v.keys, "keys"));
      const newKeys = loadKeyDir(required(v["new-keys"], "new-keys"));
      const current = latestVersion(repo, "root");
      if (current === null) throw new UsageError(`${repo} has no root yet; use root init`);
      const root = nextRoot(parseRootJson(readJson(join(repo, `${current}.root.json`), "root")), {
        rootKeys: newKeys.root.map((k) => k.publicKey),
        rootThreshold: newKeys.rootThreshold,
        expires: expiresIn(parseDuration(v.expires, 365 * DAY_MS)),
      });
      // TUF 5.3.4: clients need a threshold of the OLD root's keys and of the NEW root's keys.
      signWith(root, [...oldKeys.root, ...newKeys.root.filter((k) => !oldKeys.root.some((o) => Buffer.compare(o.publicKey, k.publicKey) === 0))]);
      out({ root: writeVersioned(repo, "root", root), version: root.signed.version });
      return 0;
    }

    if (command === "upload") {
      const base = required(v.url, "url").replace(/\/+$/, "");
      const token = readFileSync(required(v["token-file"], "token-file"), "utf8").trim();
      const auth = { Authorization: `Bearer ${token}` };
      // HW-TLS-1: trust the plane's own CA (--ca-file, default <HASHWARD_DATA_DIR or ./data>/ca.pem when present).
      const caFile = v["ca-file"] ?? defaultPlaneCaFile(process.env);
      const ca = base.startsWith("https:") && (v["ca-file"] !== undefined || existsSync(caFile)) ? readFileSync(caFile, "utf8") : undefined;
      const call = async (method: string, path: string, body?: string, type = "application/json") => {
        // HW-HTTP-4: idempotent calls (GET; PUT of an image) are retried once on a reused connection's reset.
        const response = await fetchRetryingReset((url, init) => io.fetch(url, init, ca), `${base}${path}`, { method, headers: body === undefined ? auth : { ...auth, "Content-Type": type }, ...(body === undefined ? {} : { body }) });
        const text = await response.text();
        if (!response.ok) throw new HashwardError(`${method} ${path}: HTTP ${response.status} ${text}`);
        return JSON.parse(text) as Record<string, unknown>;
      };
      const status = (await call("GET", "/api/v1/tuf/status")) as { rootVersion: number | null; targetsVersion: number | null };
      const uploaded: Record<string, unknown> = { roots: [] as number[], images: [] as string[] };
      const rootTop = latestVersion(repo, "root") ?? 0;
      for (let version = (status.rootVersion ?? 0) + 1; version <= rootTop; version++) {
        await call("POST", "/api/v1/tuf/root", readFileSync(join(repo, `${version}.root.json`), "utf8"));
        (uploaded.roots as number[]).push(version);
      }
      const targetsTop = latestVersion(repo, "targets");
      if (targetsTop !== null && targetsTop > (status.targetsVersion ?? 0)) {
        const text = readFileSync(join(repo, `${targetsTop}.targets.json`), "utf8");
        const targets = parseTargetsJson(JSON.parse(text));
        // Images the plane already publishes are not sent again (a repository accumulates releases).
        const published = (await call("GET", "/api/v1/releases")) as { releases?: Array<{ sha256: string }> };
        const onPlane = new Set((published.releases ?? []).map((release) => release.sha256));
        for (const target of Object.values(targets.signed.targets)) {
          const sha256 = target.hashes.sha256 as string;
          if (onPlane.has(sha256)) continue;
          const path = join(repo, "images", sha256);
          if (!existsSync(path)) throw new UsageError(`${path} is missing (target ${target.path}); sign it again or copy the image there`);
          // A file-backed Blob: streamed from disk with its length known, so a 500 MB image never sits in memory.
          const body = (await openAsBlob(path)) as unknown as RequestInit["body"];
          await fetchRetryingReset((url, init) => io.fetch(url, init, ca), `${base}/api/v1/tuf/images/${sha256}`, {
            method: "PUT",
            headers: { ...auth, "Content-Type": "application/octet-stream" },
            body,
          }).then(async (response) => {
            if (!response.ok) throw new HashwardError(`PUT /api/v1/tuf/images/${sha256}: HTTP ${response.status} ${await response.text()}`);
          });
          (uploaded.images as string[]).push(sha256);
        }
        uploaded.targets = await call("POST", "/api/v1/tuf/targets", text);
      }
      out(uploaded);
      return 0;
    }

    throw new UsageError(`unknown command: ${positionals.join(" ")}`);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`release: ${(error as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    io.stderr(`release: ${(error as Error).message}\n`);
    return 1;
  }
}
