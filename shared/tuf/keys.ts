/**
 * TUF key-list checks shared by the plane's repository (upload) and the agent's client (verification), so both
 * sides count the same thing (HW-TUF-4).
 *
 * @tufjs/models `verifyDelegate` counts a threshold as distinct KEY IDS that verified. Two key ids that name the
 * same public key therefore count twice: a root whose `targets` role lists one ed25519 key under two ids with
 * threshold 2 accepts targets signed twice by that single key. TUF 1.0 (section 4.2, "KEYID") defines a key id as
 * the hex SHA-256 of the canonical JSON of the key object, so a role that names each key once by its own id has
 * distinct key ids exactly when it has distinct keys. These checks refuse:
 *   - a key id that is not its key's own id (canonical JSON per TUF: OLPC canonical JSON, the form tuf-js signs),
 *   - a public key listed twice in one role (under two ids, in two encodings - hex or PEM - or two keytypes),
 *   - a key id listed twice in one role,
 * in every role of a root (root, targets, snapshot, timestamp) and of every delegation (`delegations.roles` and
 * `succinct_roles`). Roles may share a key (root and targets often do); one role may not count a key twice.
 *
 * Not forking tuf-js: callers run these checks on each root and each delegating targets document before tuf-js
 * (or @tufjs/models on the plane) verifies anything against it.
 */
import { createHash, createPublicKey } from "node:crypto";
import { canonicalize as canonicalizeTuf } from "@tufjs/canonical-json";
import { VerificationError } from "../errors/index.js";

/** A key list or role list broke HW-TUF-4. `path` is the dotted JSON path of the offending entry. */
export class TufKeyError extends VerificationError {
  override name = "TufKeyError";
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(message);
  }
}

/** A TUF public key object as found in `keys` (root) or `delegations.keys` (targets). */
export interface TufKeyObject {
  keytype: string;
  scheme: string;
  keyval: { public: string };
  /** Older securesystemslib keys; any other unrecognized field may be present too. */
  keyid_hash_algorithms?: unknown;
}

const sha256Hex = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/**
 * The key ids a key object may carry (lowercase hex SHA-256, TUF 1.0 section 4.2): over `{keytype, scheme, keyval}`
 * (securesystemslib's default, what python-tuf, go-tuf and our release CLI write), over the whole key object, and
 * over the core plus `keyid_hash_algorithms` (older securesystemslib). Each binds the id to the key material.
 */
export function tufKeyIds(key: TufKeyObject): string[] {
  const core = { keytype: key.keytype, scheme: key.scheme, keyval: key.keyval };
  const ids = [sha256Hex(canonicalizeTuf(core)), sha256Hex(canonicalizeTuf(key))];
  // Legacy ids hashed `keyid_hash_algorithms` in; tools such as tuf-on-ci add custom `x-...` fields afterwards.
  if (key.keyid_hash_algorithms !== undefined) ids.push(sha256Hex(canonicalizeTuf({ ...core, keyid_hash_algorithms: key.keyid_hash_algorithms })));
  return [...new Set(ids)];
}

/** The default key id of a key object: hex SHA-256 of the canonical JSON of `{keytype, scheme, keyval}`. */
export function tufKeyIdOf(key: TufKeyObject): string {
  return tufKeyIds(key)[0]!;
}

const PEM = "-----BEGIN";
/** SPKI DER prefix of an Ed25519 public key (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }. */
const ED25519_SPKI_PREFIX = "302a300506032b6570032100";

/**
 * The identity of a key's material, independent of its encoding and of the keytype/scheme labels: the hex SPKI
 * DER when the key parses (PEM of any algorithm, hex ed25519, hex ECDSA points), else the lowercase keyval.
 */
export function publicKeyIdentity(key: TufKeyObject): string {
  const value = key.keyval.public.trim();
  try {
    if (value.startsWith(PEM)) return `spki:${createPublicKey(value).export({ type: "spki", format: "der" }).toString("hex")}`;
    if (/^[0-9a-fA-F]{64}$/.test(value) && /ed25519/i.test(`${key.keytype} ${key.scheme}`)) {
      const der = Buffer.from(ED25519_SPKI_PREFIX + value.toLowerCase(), "hex");
      return `spki:${createPublicKey({ key: der, format: "der", type: "spki" }).export({ type: "spki", format: "der" }).toString("hex")}`;
    }
  } catch {
    // Unparseable material: compared by its text below (still never counted twice under one spelling).
  }
  return `raw:${value.toLowerCase()}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asKey(value: unknown, path: string): TufKeyObject {
  if (!isRecord(value) || typeof value.keytype !== "string" || typeof value.scheme !== "string" || !isRecord(value.keyval) || typeof value.keyval.public !== "string") {
    throw new TufKeyError(`${path} is not a TUF key object ({keytype, scheme, keyval: {public}})`, path);
  }
  return value as unknown as TufKeyObject;
}

/**
 * Checks one key table and the roles that draw on it. `keys` maps key id -> key object; each role lists key ids.
 * Throws TufKeyError (HW-TUF-4) naming the first offending key id or role.
 */
export function assertDistinctRoleKeys(keys: unknown, roles: Array<{ name: string; keyids: unknown; path: string }>, keysPath: string): void {
  if (!isRecord(keys)) throw new TufKeyError(`${keysPath} must be an object of key id -> key`, keysPath);
  const identity = new Map<string, string>();
  for (const [keyid, value] of Object.entries(keys)) {
    const key = asKey(value, `${keysPath}.${keyid}`);
    // HW-TUF-4, TUF 4.2: KEYID is the SHA-256 of the canonical key object; any other id is refused.
    if (!tufKeyIds(key).includes(keyid)) {
      throw new TufKeyError(`key id ${keyid} is not the id of its key (expected ${tufKeyIdOf(key)})`, `${keysPath}.${keyid}`);
    }
    identity.set(keyid, publicKeyIdentity(key));
  }
  for (const role of roles) {
    if (!Array.isArray(role.keyids)) throw new TufKeyError(`role ${role.name}: keyids must be a list`, `${role.path}.keyids`);
    const seenIds = new Set<string>();
    const seenKeys = new Map<string, string>();
    role.keyids.forEach((keyid: unknown, index) => {
      const at = `${role.path}.keyids.${index}`;
      if (typeof keyid !== "string") throw new TufKeyError(`role ${role.name}: key ids must be strings`, at);
      // HW-TUF-4: a threshold counts distinct keys, so a role names each key once.
      if (seenIds.has(keyid)) throw new TufKeyError(`role ${role.name} lists key id ${keyid} twice`, at);
      seenIds.add(keyid);
      const material = identity.get(keyid);
      if (material === undefined) return; // not in the key table: can never verify, so it never counts
      const other = seenKeys.get(material);
      if (other !== undefined) throw new TufKeyError(`role ${role.name} lists one public key twice (key ids ${other} and ${keyid})`, at);
      seenKeys.set(material, keyid);
    });
  }
}

/** HW-TUF-4 on root metadata (`signed` of a root document, as JSON): every top-level role. */
export function assertRootKeys(signed: unknown, path = "signed"): void {
  if (!isRecord(signed) || !isRecord(signed.roles)) throw new TufKeyError(`${path}.roles must be an object`, `${path}.roles`);
  const roles = Object.entries(signed.roles).map(([name, role]) => ({ name, keyids: isRecord(role) ? role.keyids : undefined, path: `${path}.roles.${name}` }));
  assertDistinctRoleKeys(signed.keys, roles, `${path}.keys`);
}

/** HW-TUF-4 on targets metadata (`signed`, as JSON): every delegated role and succinct_roles; none is fine. */
export function assertDelegationKeys(signed: unknown, path = "signed"): void {
  if (!isRecord(signed) || signed.delegations === undefined) return;
  const delegations = signed.delegations;
  const at = `${path}.delegations`;
  if (!isRecord(delegations)) throw new TufKeyError(`${at} must be an object`, at);
  const roles: Array<{ name: string; keyids: unknown; path: string }> = [];
  if (Array.isArray(delegations.roles)) {
    delegations.roles.forEach((role: unknown, index) => {
      const name = isRecord(role) && typeof role.name === "string" ? role.name : `#${index}`;
      roles.push({ name, keyids: isRecord(role) ? role.keyids : undefined, path: `${at}.roles.${index}` });
    });
  }
  if (isRecord(delegations.succinct_roles)) roles.push({ name: "succinct_roles", keyids: delegations.succinct_roles.keyids, path: `${at}.succinct_roles` });
  assertDistinctRoleKeys(delegations.keys, roles, `${at}.keys`);
}

/**
 * HW-TUF-4 on any TUF metadata document ({signed, signatures} as parsed JSON): roots and delegating targets are
 * checked, other roles carry no key lists. Throws TufKeyError; anything that is not metadata is left to the caller.
 */
export function assertMetadataKeys(document: unknown): void {
  if (!isRecord(document) || !isRecord(document.signed)) return;
  const type = document.signed._type;
  if (type === "root") assertRootKeys(document.signed);
  else if (type === "targets") assertDelegationKeys(document.signed);
}
