/**
 * The plane's secrets on disk: the command-signing key and the first admin token.
 * Each is a small text file, created 0600 and written atomically (temp file, fsync, rename, fsync of the
 * directory) so a crash never leaves a half-written key. A key file that group or others can read is refused:
 * whoever can read it can sign quarantine/release/update commands for the whole fleet.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fromBase64Url, generateKeyPair, keyPairFromPrivate, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";

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

/**
 * Loads `<dataDir>/command-signing.key` (the raw 32-byte Ed25519 seed as base64url text), creating it on first
 * start. `created` says whether it was made now. Errors name HASHWARD_DATA_DIR (where the file lives).
 */
export async function loadOrCreateCommandKey(dataDir: string): Promise<{ keyPair: KeyPair; path: string; created: boolean }> {
  const option = "HASHWARD_DATA_DIR";
  const path = join(dataDir, COMMAND_KEY_FILE);
  let text: string;
  try {
    await assertPrivateFile(path, option);
    text = await readFile(path, "utf8");
  } catch (error) {
    if (!isMissing(error)) throw error;
    const keyPair = generateKeyPair();
    await writeSecretFileAtomic(path, `${toBase64Url(keyPair.privateKey)}\n`);
    return { keyPair, path, created: true };
  }
  let seed: Uint8Array;
  try {
    seed = fromBase64Url(text.trim());
  } catch (cause) {
    throw new ConfigError(`${option}: ${path} is not base64url text`, option, { cause });
  }
  if (seed.length !== 32) {
    throw new ConfigError(`${option}: ${path} holds ${seed.length} bytes; an Ed25519 seed is 32`, option);
  }
  return { keyPair: keyPairFromPrivate(seed), path, created: false };
}
