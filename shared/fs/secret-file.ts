/**
 * Secret files seeded on first start (the agent's device key, the plane's command-signing and TUF online keys):
 * a small text file created 0600 and written atomically, refused when group or others may read or write it
 * (whoever can read a key can sign as its owner: fail closed). Errors are ConfigErrors naming the option that
 * says where the file lives (keyFile, HASHWARD_DATA_DIR, ...).
 */
import { readFileSync, statSync } from "node:fs";
import { fromBase64Url, generateKeyPair, keyPairFromPrivate, toBase64Url, type KeyPair } from "../crypto/index.js";
import { ConfigError } from "../errors/index.js";
import { writeFileAtomicSync } from "./atomic.js";

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/** Refuses (ConfigError naming `option`) a path that is not a regular file, or one group or others may access; throws ENOENT when it does not exist. */
export function assertPrivateFileSync(path: string, option: string): void {
  const info = statSync(path);
  if (!info.isFile()) throw new ConfigError(`${option}: ${path} is not a regular file`, option);
  if ((info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    throw new ConfigError(`${option}: ${path} has mode ${mode}; it must not be accessible to group or others (chmod 600 ${path})`, option);
  }
}

/** The text of the private file at `path`, or null when there is none; refuses one others may access (assertPrivateFileSync). */
export function readPrivateFileSync(path: string, option: string): string | null {
  try {
    assertPrivateFileSync(path, option);
    return readFileSync(path, "utf8");
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** An Ed25519 seed (32 bytes) from its base64url text; ConfigError naming `option` and `where` when it is not one. */
export function parseSeedText(text: string, where: string, option: string): Uint8Array {
  let seed: Uint8Array;
  try {
    seed = fromBase64Url(text.trim());
  } catch (cause) {
    throw new ConfigError(`${option}: ${where} is not base64url text`, option, { cause });
  }
  if (seed.length !== 32) throw new ConfigError(`${option}: ${where} holds ${seed.length} bytes; an Ed25519 seed is 32`, option);
  return seed;
}

/** The Ed25519 key in the seed file at `path`, or null when there is no file (refused when others may access it, or not a seed). */
export function readSeedFileSync(path: string, option: string): KeyPair | null {
  const text = readPrivateFileSync(path, option);
  return text === null ? null : keyPairFromPrivate(parseSeedText(text, path, option));
}

/**
 * The Ed25519 key in the seed file at `path` (base64url of the 32-byte seed), made and written (0600, atomic) when
 * there is none; `created` says which. Throws ConfigError naming `option` for a bad or exposed file, and what the
 * write throws.
 */
export function loadOrCreateSeedFileSync(path: string, option: string): { keyPair: KeyPair; created: boolean } {
  const stored = readSeedFileSync(path, option);
  if (stored) return { keyPair: stored, created: false };
  const keyPair = generateKeyPair();
  writeFileAtomicSync(path, `${toBase64Url(keyPair.privateKey)}\n`, 0o600);
  return { keyPair, created: true };
}
