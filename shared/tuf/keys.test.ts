/**
 * HW-TUF-4: thresholds count distinct keys. @tufjs/models counts distinct KEY IDS, so one key listed under two ids
 * counts twice; these checks (run by the plane at upload and by the agent before tuf-js) refuse that.
 */
import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { Metadata, MetadataKind, Signature, Targets } from "@tufjs/models";
import { describe, expect, it } from "vitest";
import { assertDelegationKeys, assertMetadataKeys, assertRootKeys, publicKeyIdentity, TufKeyError, tufKeyIdOf, type TufKeyObject } from "./keys.js";

interface TestKey {
  json: TufKeyObject;
  id: string;
  privateKey: KeyObject;
  raw: string;
}

function ed25519(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
  const json = { keytype: "ed25519", scheme: "ed25519", keyval: { public: raw } };
  return { json, id: tufKeyIdOf(json), privateKey, raw };
}

/** The same ed25519 key in another encoding: PEM SPKI, or uppercase hex; each under its own (correct) key id. */
function pemOf(key: TestKey): TufKeyObject {
  const pem = createPublicKey({ key: Buffer.from(`302a300506032b6570032100${key.raw}`, "hex"), format: "der", type: "spki" }).export({ type: "spki", format: "pem" }).toString();
  return { keytype: "ed25519", scheme: "ed25519", keyval: { public: pem } };
}
const upperOf = (key: TestKey): TufKeyObject => ({ keytype: "ed25519", scheme: "ed25519", keyval: { public: key.raw.toUpperCase() } });

const ROLES = ["root", "targets", "snapshot", "timestamp"] as const;

function rootJson(extra: { role: (typeof ROLES)[number]; keyid: string; key: TufKeyObject; threshold: number }) {
  const keys = Object.fromEntries(ROLES.map((role) => [role, ed25519()]));
  const signed = {
    _type: "root",
    spec_version: "1.0.31",
    version: 1,
    expires: "2099-01-01T00:00:00Z",
    consistent_snapshot: true,
    keys: { ...Object.fromEntries(ROLES.map((role) => [keys[role]!.id, keys[role]!.json])), [extra.keyid]: extra.key },
    roles: Object.fromEntries(
      ROLES.map((role) => [role, { keyids: role === extra.role ? [keys[role]!.id, extra.keyid] : [keys[role]!.id], threshold: role === extra.role ? extra.threshold : 1 }]),
    ),
  };
  return { signed, keys };
}

describe("HW-TUF-4: TUF key ids and distinct keys per role", () => {
  it("a root listing one targets key under two ids (threshold 2) passes @tufjs/models, and is refused here", () => {
    const { signed, keys } = rootJson({ role: "targets", keyid: "f".repeat(64), key: ed25519().json, threshold: 2 });
    const attacker = keys.targets!;
    // The same key under a second, made-up id.
    signed.keys["f".repeat(64)] = attacker.json;
    const root = Metadata.fromJSON(MetadataKind.Root, { signed, signatures: [] } as never);
    const targets = new Metadata(new Targets({ version: 1, specVersion: "1.0.31", expires: "2099-01-01T00:00:00Z" }));
    for (const keyID of [attacker.id, "f".repeat(64)]) {
      targets.sign((data) => new Signature({ keyID, sig: sign(null, data, attacker.privateKey).toString("hex") }), true);
    }
    // The library gap this rule closes: one key, two signatures, threshold 2 "met".
    expect(() => root.verifyDelegate("targets", targets)).not.toThrow();
    expect(() => assertRootKeys(signed)).toThrow(TufKeyError);
    expect(() => assertRootKeys(signed)).toThrow(/key id f{64} is not the id of its key/);
  });

  for (const role of ROLES) {
    it(`refuses the same public key twice in the ${role} role: PEM and hex, upper- and lowercase hex, each under its own id`, () => {
      for (const variant of [pemOf, upperOf]) {
        const base = rootJson({ role, keyid: "0".repeat(64), key: ed25519().json, threshold: 2 });
        const same = variant(base.keys[role]!);
        const alias = tufKeyIdOf(same);
        expect(alias).not.toBe(base.keys[role]!.id);
        const { ["0".repeat(64)]: _placeholder, ...keys } = base.signed.keys;
        const signed = { ...base.signed, keys: { ...keys, [alias]: same } };
        signed.roles[role] = { keyids: [base.keys[role]!.id, alias], threshold: 2 };
        expect(() => assertRootKeys(signed), `${role} ${variant.name}`).toThrow(/lists one public key twice/);
      }
    });
  }

  it("refuses a key id listed twice in one role, and accepts one key shared by two roles", () => {
    const key = ed25519();
    const { signed } = rootJson({ role: "targets", keyid: key.id, key: key.json, threshold: 2 });
    expect(() => assertRootKeys(signed)).not.toThrow();
    signed.roles.targets = { keyids: [key.id, key.id], threshold: 2 };
    expect(() => assertRootKeys(signed)).toThrow(/lists key id .* twice/);
    // root and targets sharing a key is legitimate (tuf-on-ci repositories do it)
    signed.roles.targets = { keyids: [key.id], threshold: 1 };
    signed.roles.root = { keyids: [key.id], threshold: 1 };
    expect(() => assertRootKeys(signed)).not.toThrow();
  });

  it("accepts key ids of unchanged keys that later gained custom fields (keyid_hash_algorithms, x-tuf-on-ci-*)", () => {
    const key = ed25519();
    const { signed } = rootJson({ role: "targets", keyid: key.id, key: { ...key.json, keyid_hash_algorithms: ["md5"], "x-tuf-on-ci-keyowner": "@op" } as TufKeyObject, threshold: 1 });
    expect(() => assertRootKeys(signed)).not.toThrow();
  });

  it("checks delegations (roles and succinct_roles) the same way, and ignores documents without key lists", () => {
    const a = ed25519();
    const pem = pemOf(a);
    const delegations = { keys: { [a.id]: a.json, [tufKeyIdOf(pem)]: pem }, roles: [{ name: "A", keyids: [a.id, tufKeyIdOf(pem)], threshold: 2, terminating: false, paths: ["*"] }] };
    expect(() => assertDelegationKeys({ _type: "targets", delegations })).toThrow(/role A lists one public key twice/);
    const succinct = { keys: delegations.keys, succinct_roles: { keyids: [a.id, tufKeyIdOf(pem)], threshold: 2, bit_length: 8, name_prefix: "bin" } };
    expect(() => assertDelegationKeys({ _type: "targets", delegations: succinct })).toThrow(/succinct_roles lists one public key twice/);
    const forged = { keys: { ["e".repeat(64)]: a.json }, roles: [{ name: "B", keyids: ["e".repeat(64)], threshold: 1, terminating: false, paths: ["*"] }] };
    expect(() => assertMetadataKeys({ signed: { _type: "targets", delegations: forged } })).toThrow(/not the id of its key/);
    expect(() => assertMetadataKeys({ signed: { _type: "targets", targets: {} } })).not.toThrow();
    expect(() => assertMetadataKeys({ signed: { _type: "snapshot" } })).not.toThrow();
    expect(() => assertMetadataKeys("not metadata")).not.toThrow();
  });

  it("identifies key material across encodings and keytype labels", () => {
    const a = ed25519();
    expect(publicKeyIdentity(pemOf(a))).toBe(publicKeyIdentity(a.json));
    expect(publicKeyIdentity(upperOf(a))).toBe(publicKeyIdentity(a.json));
    expect(publicKeyIdentity({ ...a.json, scheme: "ed25519-other" })).toBe(publicKeyIdentity(a.json));
    expect(publicKeyIdentity(ed25519().json)).not.toBe(publicKeyIdentity(a.json));
  });
});
