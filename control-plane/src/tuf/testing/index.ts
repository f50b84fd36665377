/**
 * Test helpers for the TUF repository: an offline release key set, images, and signed root/targets documents
 * built with the release library (control-plane/src/release/metadata.ts).
 */
import { generateKeyPair, type KeyPair } from "../../../../shared/crypto/index.js";
import { buildRoot, buildTargets, expiresIn, sha256OfBytes, signWith, type TargetInput } from "../../release/metadata.js";
import type { ReleaseCustom } from "../release-metadata.js";
import type { OnlineKeysExport } from "../keys.js";
import type { Metadata, Targets } from "@tufjs/models";

const DAY_MS = 86_400_000;

export interface OfflineKeys {
  root: KeyPair[];
  targets: KeyPair[];
  rootThreshold: number;
  targetsThreshold: number;
}

export function offlineKeys(opts: { rootKeys?: number; rootThreshold?: number; targetsKeys?: number; targetsThreshold?: number } = {}): OfflineKeys {
  return {
    root: Array.from({ length: opts.rootKeys ?? 3 }, () => generateKeyPair()),
    targets: Array.from({ length: opts.targetsKeys ?? 2 }, () => generateKeyPair()),
    rootThreshold: opts.rootThreshold ?? 2,
    targetsThreshold: opts.targetsThreshold ?? 2,
  };
}

export function rootDocument(keys: OfflineKeys, online: OnlineKeysExport, opts: { version?: number; signers?: KeyPair[]; expiresMs?: number; now?: number } = {}) {
  const metadata = buildRoot({
    version: opts.version ?? 1,
    expires: expiresIn(opts.expiresMs ?? 365 * DAY_MS, opts.now),
    root: { keys: keys.root.map((k) => k.publicKey), threshold: keys.rootThreshold },
    targets: { keys: keys.targets.map((k) => k.publicKey), threshold: keys.targetsThreshold },
    online,
  });
  return signWith(metadata, opts.signers ?? keys.root).toJSON();
}

export const SAMPLE_CUSTOM: ReleaseCustom = {
  hardwareModels: ["S19"],
  version: "2.0.0",
  referenceMeasurements: [{ path: "/firmware/bmminer", sha256: "c".repeat(64), size: 3 }],
};

export function targetFor(name: string, image: Uint8Array, custom: ReleaseCustom = SAMPLE_CUSTOM): TargetInput {
  return { name, length: image.length, sha256: sha256OfBytes(image), custom };
}

export function targetsDocument(
  add: TargetInput[],
  signers: KeyPair[],
  opts: { previous?: Metadata<Targets> | null; version?: number; expiresMs?: number; now?: number } = {},
) {
  const metadata = buildTargets(opts.previous ?? null, add, expiresIn(opts.expiresMs ?? 30 * DAY_MS, opts.now), opts.version);
  return signWith(metadata, signers).toJSON();
}

export async function* chunksOf(bytes: Uint8Array, size = 65536): AsyncIterable<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}
