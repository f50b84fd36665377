/**
 * What several plane replicas on one PostgreSQL create once and share (HW-HA-1, HW-HA-2; docs/scale.md
 * "Replicas"): the command-signing key, the TUF online keys, the TLS CA, and where the bootstrap admin token was
 * written. Each is one row of `plane_secrets`; the first replica to insert a name wins (`INSERT ... ON CONFLICT
 * DO NOTHING`, atomic on the primary key, so no lock is needed and a replica that dies half-way leaves either no
 * row or the whole one) and every replica then reads the stored row.
 *
 * A value a replica already holds in its own data folder (the files a single plane made before it became a
 * replica, or files the operator put there) wins: it is published when the database has none, and a replica whose
 * file differs from the shared value refuses to start (two command keys would split the fleet: devices pinned to
 * one would refuse the other's commands).
 *
 * At rest: with HASHWARD_SECRETS_KEY_FILE set, values are sealed with AES-256-GCM (node:crypto; a fresh 96-bit IV
 * per value, the row name as additional data so a value cannot be moved to another name); without it they are
 * stored as they would be in the data folder, and read access to the database is as good as the keys themselves.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { eq } from "drizzle-orm";
import { fromBase64Url, toBase64Url } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { planeSecrets, type Database, type Queryable } from "../db/index.js";
import { assertPrivateFile } from "../keys/index.js";
import type { SecretSource, SharedSecret, SharedSecretName, SharedSecrets } from "./types.js";

export type { SecretSource, SharedSecret, SharedSecretName, SharedSecrets } from "./types.js";

/** Row names of plane_secrets. */
export const SECRETS_KEY_OPTION = "HASHWARD_SECRETS_KEY_FILE";
const CIPHER = "aes-256-gcm";


/**
 * Reads the 32-byte key HASHWARD_SECRETS_KEY_FILE names (64 hex digits or base64/base64url text; a file private
 * to the user, like the data folder's keys). Make one with `openssl rand -hex 32 > secrets.key && chmod 600 secrets.key`.
 * @throws ConfigError naming the option for a missing, shared (group/other bits) or malformed file.
 */
export async function readSecretsKey(path: string): Promise<Buffer> {
  let text: string;
  try {
    await assertPrivateFile(path, SECRETS_KEY_OPTION);
    text = (await readFile(path, "utf8")).trim();
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(`${SECRETS_KEY_OPTION}=${path}: cannot read: ${(cause as Error).message}`, SECRETS_KEY_OPTION, { cause });
  }
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : Buffer.from(text.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== 32) throw new ConfigError(`${SECRETS_KEY_OPTION}=${path}: holds ${key.length} bytes; AES-256 needs 32 (64 hex digits)`, SECRETS_KEY_OPTION);
  return key;
}

function seal(key: Buffer, name: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv(CIPHER, key, iv);
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return [iv, body, cipher.getAuthTag()].map((part) => toBase64Url(part)).join(".");
}

function unseal(key: Buffer, name: string, sealed: string): string {
  try {
    const [iv, body, tag] = sealed.split(".").map((part) => Buffer.from(fromBase64Url(part)));
    if (!iv || !body || !tag) throw new Error("not iv.ciphertext.tag");
    const decipher = createDecipheriv(CIPHER, key, iv);
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
  } catch (cause) {
    // Fail closed: a wrong key and a tampered row look the same, and neither may yield a value.
    throw new ConfigError(`${SECRETS_KEY_OPTION}: plane_secrets row ${name} does not open with this key (another replica's key, or a changed row)`, SECRETS_KEY_OPTION, { cause });
  }
}

/**
 * The PostgreSQL-backed store. `secretsKey` (readSecretsKey) seals new rows and opens sealed ones; a plaintext row
 * is still read with a key set (it was written before the key was), a sealed row without a key is a ConfigError.
 */
export function createSharedSecrets(deps: { db: Database; dataDir: string; secretsKey: Buffer | null }): SharedSecrets {
  const { db, secretsKey } = deps;
  const createdBy = { host: hostname(), pid: process.pid, dataDir: deps.dataDir };

  async function read(name: SharedSecretName, via: Queryable = db): Promise<string | null> {
    const [row] = await via.select().from(planeSecrets).where(eq(planeSecrets.name, name));
    if (!row) return null;
    if (row.encryption === "none") return row.value;
    if (row.encryption !== CIPHER) throw new ConfigError(`plane_secrets row ${name}: unknown encryption ${JSON.stringify(row.encryption)}`, SECRETS_KEY_OPTION);
    if (!secretsKey) throw new ConfigError(`${SECRETS_KEY_OPTION}: plane_secrets row ${name} is sealed; set ${SECRETS_KEY_OPTION} to the key the other replicas use`, SECRETS_KEY_OPTION);
    return unseal(secretsKey, name, row.value);
  }

  /** Inserts unless a row exists; returns the stored value (this one, or the winner of a race). */
  async function insertFirst(name: SharedSecretName, value: string, secret: boolean, via: Queryable = db): Promise<string> {
    const sealed = secret && secretsKey !== null;
    await via
      .insert(planeSecrets)
      .values({ name, encryption: sealed ? CIPHER : "none", value: sealed ? seal(secretsKey, name, value) : value, createdBy })
      .onConflictDoNothing({ target: planeSecrets.name });
    const stored = await read(name, via);
    if (stored === null) throw new Error(`plane_secrets row ${name} vanished right after it was written`);
    return stored;
  }

  function mismatch(name: SharedSecretName, source: SecretSource): ConfigError {
    return new ConfigError(
      `HASHWARD_DATA_DIR: ${source.localDescription} differs from the ${name} the other replicas share (plane_secrets); ` +
        `move the file away to use the shared one, or give every replica the same file`,
      "HASHWARD_DATA_DIR",
    );
  }

  return {
    async loadOrCreate(name, source) {
      const local = await source.local();
      if (local !== null) {
        const stored = (await read(name)) ?? (await insertFirst(name, local, true));
        if (stored !== local) throw mismatch(name, source); // HW-HA-1: never two values across replicas
        return { value: local, origin: "local" };
      }
      const stored = await read(name);
      if (stored !== null) return { value: stored, origin: "database" };
      const fresh = await source.create();
      const winner = await insertFirst(name, fresh, true);
      return { value: winner, origin: winner === fresh ? "created" : "database" };
    },

    async writeNote(name, value, tx) {
      await insertFirst(name, JSON.stringify(value), false, tx);
    },

    async readNote(name) {
      const text = await read(name);
      return text === null ? null : (JSON.parse(text) as Record<string, unknown>);
    },
  };
}
