/**
 * Ed25519 keys in TUF form, shared by the plane (online snapshot/timestamp keys) and the offline release CLI
 * (root/targets keys). Key ids follow TUF 1.0: sha256 of the canonical JSON of the public key object.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Key, Signature } from "@tufjs/models";
import { tufKeyIdOf } from "../../../shared/tuf/keys.js";
import { fromBase64Url, generateKeyPair, keyPairFromPrivate, sha256Hex, signBytes, toBase64Url, type KeyPair } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { assertPrivateFile, writeSecretFileAtomic } from "../keys/index.js";

export const SNAPSHOT_KEY_FILE = "tuf-snapshot.key";
export const TIMESTAMP_KEY_FILE = "tuf-timestamp.key";

/** The public key object as it appears in root.json `keys`. */
export interface TufKeyJson {
  keytype: "ed25519";
  scheme: "ed25519";
  keyval: { public: string };
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

export function tufKeyJson(publicKey: Uint8Array): TufKeyJson {
  return { keytype: "ed25519", scheme: "ed25519", keyval: { public: hex(publicKey) } };
}

/** TUF key id: sha256 over the canonical JSON of the key object (TUF 4.2; one definition: shared/tuf/keys.ts). */
export function tufKeyId(publicKey: Uint8Array): string {
  return tufKeyIdOf(tufKeyJson(publicKey));
}

export function tufKey(publicKey: Uint8Array): Key {
  const json = tufKeyJson(publicKey);
  return new Key({ keyID: tufKeyId(publicKey), keyType: json.keytype, scheme: json.scheme, keyVal: json.keyval });
}

/** A signer for Metadata.sign: hex Ed25519 signature over the canonical bytes it is handed. */
export function tufSigner(keyPair: KeyPair): (data: Buffer) => Signature {
  const keyID = tufKeyId(keyPair.publicKey);
  return (data) => new Signature({ keyID, sig: hex(signBytes(new Uint8Array(data), keyPair.privateKey)) });
}

export interface OnlineKeys {
  snapshot: KeyPair;
  timestamp: KeyPair;
}

/** What `GET /api/v1/tuf/online-keys` returns and `release root init --online-keys` reads. */
export interface OnlineKeysExport {
  snapshot: { keyid: string; key: TufKeyJson };
  timestamp: { keyid: string; key: TufKeyJson };
}

export function exportOnlineKeys(keys: { snapshot: Uint8Array; timestamp: Uint8Array }): OnlineKeysExport {
  return {
    snapshot: { keyid: tufKeyId(keys.snapshot), key: tufKeyJson(keys.snapshot) },
    timestamp: { keyid: tufKeyId(keys.timestamp), key: tufKeyJson(keys.timestamp) },
  };
}

async function loadOrCreateSeed(path: string): Promise<{ keyPair: KeyPair; created: boolean }> {
  const option = "HASHWARD_DATA_DIR";
  let text: string;
  try {
    await assertPrivateFile(path, option);
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException | null)?.code !== "ENOENT") throw error;
    const keyPair = generateKeyPair();
    await writeSecretFileAtomic(path, `${toBase64Url(keyPair.privateKey)}\n`);
    return { keyPair, created: true };
  }
  let seed: Uint8Array;
  try {
    seed = fromBase64Url(text.trim());
  } catch (cause) {
    throw new ConfigError(`${option}: ${path} is not base64url text`, option, { cause });
  }
  if (seed.length !== 32) throw new ConfigError(`${option}: ${path} holds ${seed.length} bytes; an Ed25519 seed is 32`, option);
  return { keyPair: keyPairFromPrivate(seed), created: false };
}

/**
 * The plane's ONLINE TUF keys (snapshot, timestamp), created 0600 in the data dir on first start like
 * command-signing.key. Root and targets keys never come here: they stay with the release CLI.
 */
export async function loadOrCreateOnlineKeys(dataDir: string): Promise<OnlineKeys & { created: boolean }> {
  const snapshot = await loadOrCreateSeed(join(dataDir, SNAPSHOT_KEY_FILE));
  const timestamp = await loadOrCreateSeed(join(dataDir, TIMESTAMP_KEY_FILE));
  return { snapshot: snapshot.keyPair, timestamp: timestamp.keyPair, created: snapshot.created || timestamp.created };
}
