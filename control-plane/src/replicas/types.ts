/**
 * What replicas share through the database (HW-HA-1), as an interface: implemented by ./secrets.ts, used by the
 * key loaders (control-plane/src/keys, control-plane/src/tls, control-plane/src/tuf) without depending on it.
 */
import type { Queryable } from "../db/index.js";

/** The names of the values shared by every replica. */
export type SharedSecretName = "command-signing-key" | "tuf-snapshot-key" | "tuf-timestamp-key" | "tls-ca" | "admin-token-file";

/** Where a replica's own copy of a shared value comes from, and how a fresh one is made. */
export interface SecretSource {
  /** This replica's own copy in canonical text (e.g. a data-dir key file), or null when it has none. */
  local(): Promise<string | null>;
  /** A fresh value in canonical text (a new key); called only when neither the database nor `local` has one. */
  create(): Promise<string>;
  /** Names the local copy in error messages (a file path). */
  localDescription: string;
}

/** The shared value and where this replica got it from. */
export interface SharedSecret {
  value: string;
  /** `local`: this replica's file (now also in the database); `database`: another replica's; `created`: made now. */
  origin: "local" | "database" | "created";
}

/** The values replicas share (createSharedSecrets in ./secrets.ts). */
export interface SharedSecrets {
  /**
   * HW-HA-1: the one value of `name` for all replicas (see ./secrets.ts's module comment for the order of precedence).
   * @throws ConfigError (HASHWARD_DATA_DIR) when the local copy differs from the shared one; ConfigError
   *   (HASHWARD_SECRETS_KEY_FILE) when a sealed row cannot be opened; database errors.
   */
  loadOrCreate(name: SharedSecretName, source: SecretSource): Promise<SharedSecret>;
  /**
   * A non-secret note shared by the replicas (first writer wins), e.g. where the admin token file is; written
   * through `tx` when given (in the transaction of what it describes).
   */
  writeNote(name: SharedSecretName, value: Record<string, unknown>, tx?: Queryable): Promise<void>;
  readNote(name: SharedSecretName): Promise<Record<string, unknown> | null>;
}
