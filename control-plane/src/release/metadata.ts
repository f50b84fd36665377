/**
 * Builds and signs the offline-signed TUF metadata with @tufjs/models: root (with the plane's online snapshot and
 * timestamp keys) and targets (a release image plus its custom metadata). Used by the release CLI and by tests.
 */
import { createHash } from "node:crypto";
import { Metadata, MetadataKind, Root, TargetFile, Targets } from "@tufjs/models";
import type { KeyPair } from "../../../shared/crypto/index.js";
import { tufKey, tufSigner, type OnlineKeysExport } from "../tuf/keys.js";
import type { ReleaseCustom } from "../tuf/release-metadata.js";

export const SPEC_VERSION = "1.0.31";

export function expiresIn(ms: number, from = Date.now()): string {
  return new Date(Math.floor((from + ms) / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

export function signWith<T extends Root | Targets>(metadata: Metadata<T>, keyPairs: readonly KeyPair[]): Metadata<T> {
  for (const keyPair of keyPairs) metadata.sign(tufSigner(keyPair), true);
  return metadata;
}

export interface RootPlan {
  version: number;
  expires: string;
  root: { keys: Uint8Array[]; threshold: number };
  targets: { keys: Uint8Array[]; threshold: number };
  online: OnlineKeysExport;
}

interface RoleJson {
  keyids: string[];
  threshold: number;
}

function rootFromParts(version: number, expires: string, keys: Record<string, unknown>, roles: Record<string, RoleJson>): Metadata<Root> {
  // Built from JSON: @tufjs/models does not export its Role class, and fromJSON validates every field.
  const signed = Root.fromJSON({ _type: "root", spec_version: SPEC_VERSION, version, expires, consistent_snapshot: true, keys: keys as never, roles: roles as never });
  return new Metadata(signed);
}

/** Unsigned root metadata; sign with `signWith`. consistent_snapshot is always true. */
export function buildRoot(plan: RootPlan): Metadata<Root> {
  const keys: Record<string, unknown> = {};
  const roles: Record<string, RoleJson> = {};
  for (const role of ["root", "targets"] as const) {
    roles[role] = { keyids: [], threshold: plan[role].threshold };
    for (const publicKey of plan[role].keys) {
      const key = tufKey(publicKey);
      keys[key.keyID] = key.toJSON();
      roles[role].keyids.push(key.keyID);
    }
  }
  for (const role of ["snapshot", "timestamp"] as const) {
    const { keyid, key } = plan.online[role];
    keys[keyid] = key;
    roles[role] = { keyids: [keyid], threshold: 1 };
  }
  return rootFromParts(plan.version, plan.expires, keys, roles);
}

/** The next root: same online keys and targets role, new root keys/threshold, version + 1. */
export function nextRoot(current: Metadata<Root>, next: { rootKeys: Uint8Array[]; rootThreshold: number; expires: string }): Metadata<Root> {
  const old = current.signed;
  const keys: Record<string, unknown> = {};
  const roles: Record<string, RoleJson> = { root: { keyids: [], threshold: next.rootThreshold } };
  for (const publicKey of next.rootKeys) {
    const key = tufKey(publicKey);
    keys[key.keyID] = key.toJSON();
    roles.root?.keyids.push(key.keyID);
  }
  for (const role of ["targets", "snapshot", "timestamp"] as const) {
    const kept = old.roles[role];
    if (!kept) throw new Error(`current root has no ${role} role`);
    roles[role] = { keyids: [...kept.keyIDs], threshold: kept.threshold };
    for (const keyid of kept.keyIDs) {
      const key = old.keys[keyid];
      if (key) keys[keyid] = key.toJSON();
    }
  }
  return rootFromParts(old.version + 1, next.expires, keys, roles);
}

export function sha256OfBytes(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export interface TargetInput {
  name: string;
  length: number;
  sha256: string;
  custom: ReleaseCustom;
}

/** The next targets metadata: the previous version's targets plus `add` (replacing a target of the same name). */
export function buildTargets(previous: Metadata<Targets> | null, add: TargetInput[], expires: string, version?: number): Metadata<Targets> {
  const targets = new Targets({ version: version ?? (previous ? previous.signed.version + 1 : 1), specVersion: SPEC_VERSION, expires });
  if (previous) for (const target of Object.values(previous.signed.targets)) targets.addTarget(target);
  for (const input of add) {
    targets.addTarget(
      new TargetFile({ path: input.name, length: input.length, hashes: { sha256: input.sha256 }, unrecognizedFields: { custom: input.custom as never } }),
    );
  }
  return new Metadata(targets);
}

export function parseRootJson(document: unknown): Metadata<Root> {
  return Metadata.fromJSON(MetadataKind.Root, document as never);
}

export function parseTargetsJson(document: unknown): Metadata<Targets> {
  return Metadata.fromJSON(MetadataKind.Targets, document as never);
}
