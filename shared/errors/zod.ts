/**
 * The one converter from a zod error to what our errors say: the first issue, its dotted field path and message.
 * Unknown keys (zod's `unrecognized_keys`, whose path is the enclosing object) name the first unknown key and say
 * "unknown field", so an operator sees which key to remove. Used by the protocol parser, the agent's config,
 * policy, update and miner-API parsers, and the plane's HTTP, UI and policy validation.
 */
import type { z } from "zod";
import { ValidationError } from "./tree.js";

/** The first issue of a zod error, reduced to what an error message needs. */
export interface ZodIssueSummary {
  /** Dotted path of the bad field (the first unknown key appended for unknown keys); "" for the root value. */
  field: string;
  /** zod's message, or "unknown field" for unknown keys; "invalid" when the error has no issue. */
  message: string;
  /** The issue itself (undefined when the error has none), for callers that word a code differently. */
  issue: z.core.$ZodIssue | undefined;
}

/** Summarises the first issue of `error`; `prefix` (e.g. ["policy"]) is put before the issue's path. */
export function firstZodIssue(error: z.ZodError, prefix: readonly string[] = []): ZodIssueSummary {
  const issue = error.issues[0];
  const path = [...prefix, ...(issue?.path ?? []).map(String)];
  const unknownKey = issue?.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  if (unknownKey !== undefined) path.push(unknownKey);
  const message = unknownKey !== undefined ? "unknown field" : (issue?.message ?? "invalid");
  return { field: path.join("."), message, issue };
}

/** `<field or (root)>: <message>` of the first issue, e.g. `policy.pools.0.url: Invalid URL`. */
export function describeZodError(error: z.ZodError, prefix: readonly string[] = []): string {
  const { field, message } = firstZodIssue(error, prefix);
  return `${field || "(root)"}: ${message}`;
}

/** A ValidationError `<what>: <field>: <message>` naming the first bad field, with the zod error as its cause. */
export function validationErrorFromZod(error: z.ZodError, what: string, prefix: readonly string[] = []): ValidationError {
  const { field } = firstZodIssue(error, prefix);
  return new ValidationError(`${what}: ${describeZodError(error, prefix)}`, field, { cause: error });
}
