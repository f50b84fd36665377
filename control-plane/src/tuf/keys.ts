/**
 * Ed25519 keys in TUF form, shared by the plane (online snapshot/timestamp keys) and the offline release CLI
 * (root/targets keys). Key ids follow TUF 1.0: sha256 of the canonical JSON of the public key object.
 */
import { join } from "node:path";
import { Key, Signature } from "@tufjs/models";
import { tufKeyIdOf } from "../../../shared/tuf/keys.js";
import { signBytes, type KeyPair } from "../../../shared/crypto/index.js";
import { loadOrCreateKey } from "../keys/index.js";
import type { SharedSecrets } from "../replicas/index.js";

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

/**
 * The plane's ONLINE TUF keys (snapshot, timestamp), created 0600 in the data dir on first start like
 * command-signing.key; with `shared`, the pair all replicas share (HW-HA-1). Root and targets keys never come
 * here: they stay with the release CLI.
 */
export async function loadOrCreateOnlineKeys(dataDir: string, shared: SharedSecrets | null = null): Promise<OnlineKeys & { created: boolean }> {
  const snapshot = await loadOrCreateKey(join(dataDir, SNAPSHOT_KEY_FILE), shared && { secrets: shared, name: "tuf-snapshot-key" });
  const timestamp = await loadOrCreateKey(join(dataDir, TIMESTAMP_KEY_FILE), shared && { secrets: shared, name: "tuf-timestamp-key" });
  return { snapshot: snapshot.keyPair, timestamp: timestamp.keyPair, created: snapshot.created || timestamp.created };
}
