/**
 * The device's Ed25519 identity. Created on first start unless a key is provisioned; the file holds the
 * base64url 32-byte seed, mode 0600, written atomically. A key file readable or writable by group/others is
 * refused: a key that others could have read cannot vouch for this device (fail closed).
 */
import { deviceIdFromPublicKey, toBase64Url, type KeyPair } from "../../../shared/index.js";
import { loadOrCreateSeedFileSync } from "../../../shared/fs/index.js";

export interface DeviceIdentity {
  deviceId: string;
  keyPair: KeyPair;
  /** base64url public key, as sent in the enrollment request. */
  publicKey: string;
  /** True when this start created the key. */
  created: boolean;
}

/** Loads the device key at `keyFile`, creating it on first start; ConfigError (option keyFile) for a bad or exposed file. */
export function loadOrCreateIdentity(keyFile: string): DeviceIdentity {
  const { keyPair, created } = loadOrCreateSeedFileSync(keyFile, "keyFile");
  return describe(keyPair, created);
}

function describe(keyPair: KeyPair, created: boolean): DeviceIdentity {
  return { deviceId: deviceIdFromPublicKey(keyPair.publicKey), keyPair, publicKey: toBase64Url(keyPair.publicKey), created };
}
