import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadOrCreateIdentity } from "../../agent/src/identity/index.js";

/** Reads the key an agent created in its state folder (the test plays the device, or a thief of its key). */
export function loadDeviceKey(stateDir: string): { deviceId: string; privateKey: Uint8Array } | undefined {
  const keyFile = join(stateDir, "device.key");
  if (!existsSync(keyFile)) return undefined;
  const identity = loadOrCreateIdentity(keyFile);
  return { deviceId: identity.deviceId, privateKey: identity.keyPair.privateKey };
}
