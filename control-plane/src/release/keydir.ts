/**
 * The operator's OFFLINE key directory: root keys and targets keys kept apart (`<dir>/root/`, `<dir>/targets/`),
 * each key a 0600 JSON file holding the TUF public key and the Ed25519 seed, plus `<dir>/keys.json` with the
 * thresholds. These files never go to the control plane (HW-TUF-1).
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPair, keyPairFromPrivate, type KeyPair } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { assertPrivateFileSync, writeFileAtomicSync } from "../../../shared/fs/index.js";
import { hex, tufKeyId, tufKeyJson } from "../tuf/keys.js";

export type OfflineRole = "root" | "targets";

export interface KeyDirConfig {
  rootThreshold: number;
  targetsThreshold: number;
}

export interface KeyDir extends KeyDirConfig {
  root: KeyPair[];
  targets: KeyPair[];
}

interface KeyFile {
  role: OfflineRole;
  keyid: string;
  keytype: "ed25519";
  scheme: "ed25519";
  keyval: { public: string };
  /** Hex Ed25519 seed. */
  private: string;
}

export function createKeyDir(dir: string, plan: KeyDirConfig & { rootKeys: number; targetsKeys: number }): KeyDir {
  if (plan.rootThreshold < 1 || plan.rootThreshold > plan.rootKeys) throw new ConfigError(`--root-threshold ${plan.rootThreshold} must be between 1 and --root-keys ${plan.rootKeys}`, "root-threshold");
  if (plan.targetsThreshold < 1 || plan.targetsThreshold > plan.targetsKeys) {
    throw new ConfigError(`--targets-threshold ${plan.targetsThreshold} must be between 1 and --targets-keys ${plan.targetsKeys}`, "targets-threshold");
  }
  try {
    if (readdirSync(dir).length > 0) throw new ConfigError(`--dir ${dir} is not empty; refusing to overwrite keys`, "dir");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const result: KeyDir = { rootThreshold: plan.rootThreshold, targetsThreshold: plan.targetsThreshold, root: [], targets: [] };
  for (const [role, count] of [["root", plan.rootKeys], ["targets", plan.targetsKeys]] as const) {
    mkdirSync(join(dir, role), { recursive: true, mode: 0o700 });
    for (let i = 1; i <= count; i++) {
      const keyPair = generateKeyPair();
      const file: KeyFile = { role, keyid: tufKeyId(keyPair.publicKey), ...tufKeyJson(keyPair.publicKey), private: hex(keyPair.privateKey) };
      writeFileAtomicSync(join(dir, role, `${role}-${i}.json`), `${JSON.stringify(file, null, 2)}\n`, 0o600);
      result[role].push(keyPair);
    }
  }
  writeFileAtomicSync(join(dir, "keys.json"), `${JSON.stringify({ rootThreshold: plan.rootThreshold, targetsThreshold: plan.targetsThreshold }, null, 2)}\n`, 0o600);
  return result;
}

function readKeys(dir: string, role: OfflineRole): KeyPair[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, role)).filter((n) => n.endsWith(".json")).sort();
  } catch {
    return [];
  }
  return names.map((name) => {
    const path = join(dir, role, name);
    assertPrivateFileSync(path, "keys");
    const file = JSON.parse(readFileSync(path, "utf8")) as KeyFile;
    if (file.role !== role || file.keytype !== "ed25519" || !/^[0-9a-f]{64}$/.test(file.private)) throw new ConfigError(`${path} is not a ${role} ed25519 key file`, "keys");
    const keyPair = keyPairFromPrivate(new Uint8Array(Buffer.from(file.private, "hex")));
    if (tufKeyId(keyPair.publicKey) !== file.keyid) throw new ConfigError(`${path}: keyid does not match the private key`, "keys");
    return keyPair;
  });
}

export function loadKeyDir(dir: string): KeyDir {
  let config: KeyDirConfig;
  try {
    config = JSON.parse(readFileSync(join(dir, "keys.json"), "utf8")) as KeyDirConfig;
  } catch (cause) {
    throw new ConfigError(`${dir}/keys.json is missing or unreadable (make a key dir with "release keys init")`, "keys", { cause });
  }
  return { ...config, root: readKeys(dir, "root"), targets: readKeys(dir, "targets") };
}
