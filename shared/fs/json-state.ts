/**
 * JSON state files: a small document, validated by a zod schema on every load and save, written crash-safe
 * (writeFileAtomicSync: temp file + fsync + rename + directory fsync). The agent keeps its trusted state this way
 * (state.json, policy.json, update.json: a corrupt copy refuses to start, since a reset would reopen replays or
 * rollbacks) and its hints (known-good pools, indicator memory, reported findings, known addresses, plane
 * addresses, outbox overflow count: a corrupt copy is forgotten and re-learned).
 */
import { existsSync, readFileSync } from "node:fs";
import type { z } from "zod";
import { ConfigError } from "../errors/index.js";
import { writeFileAtomicSync } from "./atomic.js";

/** How a state file is written. */
export interface JsonStateOptions {
  /** File mode of every write; default 0o600 (state may name pools, keys and sequence numbers). */
  mode?: number;
  /** JSON indentation (spaces) for files an operator may read; default none. */
  indent?: number;
  /** The option a corrupt trusted file is reported under (ConfigError.option); default "stateDir". */
  option?: string;
}

/** One JSON document at `path` whose contents always match `schema` (see jsonStateFile). */
export interface JsonStateFile<T> {
  readonly path: string;
  /**
   * Trusted state: undefined when the file does not exist; throws ConfigError `<option>: <path> is corrupt;
   * refusing to start <consequence> (<cause>)` when it cannot be read, is not JSON, or does not match the schema.
   */
  load(consequence: string): T | undefined;
  /** A hint: undefined when the file is missing, unreadable, not JSON or off-schema (the caller re-learns it). */
  loadHint(): T | undefined;
  /** Validates `value` (throws the schema's error and writes nothing when it does not match), writes it atomically, returns the parsed value. Throws what the write throws (ENOSPC, EROFS) with the old file intact. */
  save(value: T): T;
}

/** A JsonStateFile for `path` validated by `schema` (nothing is read or written until asked). */
export function jsonStateFile<S extends z.ZodType>(path: string, schema: S, options: JsonStateOptions = {}): JsonStateFile<z.infer<S>> {
  const { mode = 0o600, indent, option = "stateDir" } = options;
  const read = (): z.infer<S> => schema.parse(JSON.parse(readFileSync(path, "utf8")));
  return {
    path,
    load(consequence) {
      if (!existsSync(path)) return undefined;
      try {
        return read();
      } catch (cause) {
        throw new ConfigError(`${option}: ${path} is corrupt; refusing to start ${consequence} (${String(cause).slice(0, 200)})`, option, { cause });
      }
    },
    loadHint() {
      if (!existsSync(path)) return undefined;
      try {
        return read();
      } catch {
        return undefined;
      }
    },
    save(value) {
      const checked = schema.parse(value);
      writeFileAtomicSync(path, `${JSON.stringify(checked, null, indent)}\n`, mode);
      return checked;
    },
  };
}
