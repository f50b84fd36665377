/**
 * The device's Ed25519 identity. Created on first start unless a key is provisioned; the file holds the
 * base64url 32-byte seed, mode 0600, written atomically. A key file readable or writable by group/others is
 * refused: a key that others could have read cannot vouch for this device (fail closed).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { ConfigError, deviceIdFromPublicKey, fromBase64Url, generateKeyPair, keyPairFromPrivate, toBase64Url, type KeyPair } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";

export interface DeviceIdentity {
  deviceId: string;
  keyPair: KeyPair;
  /** base64url public key, as sent in the enrollment request. */
  publicKey: string;
  /** True when this start created the key. */
  created: boolean;
}

export function loadOrCreateIdentity(keyFile: string): DeviceIdentity {
  if (!existsSync(keyFile)) {
    const keyPair = generateKeyPair();
    writeFileAtomicSync(keyFile, `${toBase64Url(keyPair.privateKey)}\n`, 0o600);
    return describe(keyPair, true);
  }
  const stat = statSync(keyFile);
  if (!stat.isFile()) throw new ConfigError(`keyFile: ${keyFile} is not a regular file`, "keyFile");
  if ((stat.mode & 0o077) !== 0) {
    throw new ConfigError(
      `keyFile: ${keyFile} has mode ${(stat.mode & 0o777).toString(8)}; it must not be accessible to group or others (chmod 600)`,
      "keyFile",
    );
  }
  const text = readFileSync(keyFile, "utf8").trim();
  let seed: Uint8Array;
  try {
    seed = fromBase64Url(text);
    return describe(keyPairFromPrivate(seed), false);
  } catch (cause) {
    throw new ConfigError(`keyFile: ${keyFile} does not hold a base64url 32-byte Ed25519 seed`, "keyFile", { cause });
  }
}

function describe(keyPair: KeyPair, created: boolean): DeviceIdentity {
  return { deviceId: deviceIdFromPublicKey(keyPair.publicKey), keyPair, publicKey: toBase64Url(keyPair.publicKey), created };
}
