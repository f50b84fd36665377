/**
 * The plane's secrets on disk: the command-signing key and the first admin token (and, through loadOrCreateKey,
 * the TUF online keys). Replicas on PostgreSQL share the keys through the database instead (HW-HA-1).
 * Each is a small text file, created 0600 and written atomically (temp file, fsync, rename, fsync of the
 * directory) so a crash never leaves a half-written key. A key file that group or others can read is refused:
 * whoever can read it can sign quarantine/release/update commands for the whole fleet.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fromBase64Url, generateKeyPair, keyPairFromPrivate, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import type { SharedSecretName, SharedSecrets } from "../replicas/types.js";

export const COMMAND_KEY_FILE = "command-signing.key";
export const ADMIN_TOKEN_FILE = "admin.token";

/** Writes `data` to `path` with `mode`, atomically: readers see the old file or the whole new one. */
export async function writeSecretFileAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  writeFileAtomicSync(path, data, mode);
}

/** Refuses a secret file that group or others may read or write. */
export async function assertPrivateFile(path: string, option: string): Promise<void> {
  const info = await stat(path);
  if (!info.isFile()) throw new ConfigError(`${option}: ${path} is not a regular file`, option);
  if ((info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    throw new ConfigError(
      `${option}: ${path} has mode ${mode}; it must not be accessible to group or others (chmod 600 ${path})`,
      option,
    );
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/** An Ed25519 seed from its base64url text; ConfigError (HASHWARD_DATA_DIR) naming `where` when it is not one. */
function parseSeed(text: string, where: string): Uint8Array {
  const option = "HASHWARD_DATA_DIR";
  let seed: Uint8Array;
  try {
    seed = fromBase64Url(text.trim());
  } catch (cause) {
    throw new ConfigError(`${option}: ${where} is not base64url text`, option, { cause });
  }
  if (seed.length !== 32) throw new ConfigError(`${option}: ${where} holds ${seed.length} bytes; an Ed25519 seed is 32`, option);
  return seed;
}

/** The seed in the private key file at `path`, or null when there is no file. Refuses a file others may read. */
async function readSeedFile(path: string): Promise<Uint8Array | null> {
  try {
    await assertPrivateFile(path, "HASHWARD_DATA_DIR");
    return parseSeed(await readFile(path, "utf8"), path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** An Ed25519 key pair and where it came from (`file`: the data folder; the others: SharedSecret origins). */
export interface LoadedKey {
  keyPair: KeyPair;
  /** Made by this start (a new file, or the first row of plane_secrets). */
  created: boolean;
  origin: "file" | "local" | "database" | "created";
}

/**
 * One Ed25519 key of the plane. Alone (PGlite): the raw 32-byte seed as base64url text in the 0600 file `path`,
 * created on first start. With `shared` (replicas on PostgreSQL, HW-HA-1): the one key all replicas share, the
 * file at `path` winning when present (control-plane/src/replicas/secrets.ts); a created shared key is kept only
 * in the database. Errors are ConfigErrors naming HASHWARD_DATA_DIR (bad or shared file, a file that differs
 * from the replicas' key).
 */
export async function loadOrCreateKey(path: string, shared: { secrets: SharedSecrets; name: SharedSecretName } | null = null): Promise<LoadedKey> {
  if (shared) {
    const result = await shared.secrets.loadOrCreate(shared.name, {
      local: async () => {
        const seed = await readSeedFile(path);
        return seed ? toBase64Url(seed) : null;
      },
      create: async () => toBase64Url(generateKeyPair().privateKey),
      localDescription: path,
    });
    return { keyPair: keyPairFromPrivate(parseSeed(result.value, `plane_secrets ${shared.name}`)), created: result.origin === "created", origin: result.origin };
  }
  const seed = await readSeedFile(path);
  if (seed) return { keyPair: keyPairFromPrivate(seed), created: false, origin: "file" };
  const keyPair = generateKeyPair();
  await writeSecretFileAtomic(path, `${toBase64Url(keyPair.privateKey)}\n`);
  return { keyPair, created: true, origin: "file" };
}

/**
 * Loads `<dataDir>/command-signing.key` (the raw 32-byte Ed25519 seed as base64url text), creating it on first
 * start; with `shared`, the command key all replicas share (HW-HA-1, loadOrCreateKey). `created` says whether it
 * was made now. Errors name HASHWARD_DATA_DIR (where the file lives).
 */
export async function loadOrCreateCommandKey(dataDir: string, shared: SharedSecrets | null = null): Promise<LoadedKey & { path: string }> {
  const path = join(dataDir, COMMAND_KEY_FILE);
  return { ...(await loadOrCreateKey(path, shared && { secrets: shared, name: "command-signing-key" })), path };
}
