/**
 * The plane's secrets on disk: the command-signing key and the first admin token (and, through loadOrCreateKey,
 * the TUF online keys). Replicas on PostgreSQL share the keys through the database instead (HW-HA-1).
 * Each is a small text file, created 0600 and written atomically (temp file, fsync, rename, fsync of the
 * directory) so a crash never leaves a half-written key. A key file that group or others can read is refused:
 * whoever can read it can sign quarantine/release/update commands for the whole fleet.
 */
import { join } from "node:path";
import { generateKeyPair, keyPairFromPrivate, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { assertPrivateFileSync, loadOrCreateSeedFileSync, parseSeedText, readSeedFileSync, writeFileAtomicSync } from "../../../shared/fs/index.js";
import type { SharedSecretName, SharedSecrets } from "../replicas/types.js";

export const COMMAND_KEY_FILE = "command-signing.key";
export const ADMIN_TOKEN_FILE = "admin.token";

/** Writes `data` to `path` with `mode`, atomically: readers see the old file or the whole new one. */
export async function writeSecretFileAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  writeFileAtomicSync(path, data, mode);
}

const DATA_DIR_OPTION = "HASHWARD_DATA_DIR";

/** Refuses a secret file that group or others may read or write (shared/fs assertPrivateFileSync). */
export async function assertPrivateFile(path: string, option: string): Promise<void> {
  assertPrivateFileSync(path, option);
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
        const stored = readSeedFileSync(path, DATA_DIR_OPTION);
        return stored ? toBase64Url(stored.privateKey) : null;
      },
      create: async () => toBase64Url(generateKeyPair().privateKey),
      localDescription: path,
    });
    return { keyPair: keyPairFromPrivate(parseSeedText(result.value, `plane_secrets ${shared.name}`, DATA_DIR_OPTION)), created: result.origin === "created", origin: result.origin };
  }
  return { ...loadOrCreateSeedFileSync(path, DATA_DIR_OPTION), origin: "file" };
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
