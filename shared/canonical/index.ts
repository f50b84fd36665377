import canonicalizeJson from "canonicalize";
import { ValidationError } from "../errors/index.js";

/**
 * RFC 8785 (JSON Canonicalization Scheme) serialisation: the exact bytes every signature in Hashward covers.
 * Values JSON cannot represent (undefined at the top, functions, NaN, Infinity) are refused rather than dropped.
 */
export function canonicalize(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalizeJson(value);
  } catch (cause) {
    throw new ValidationError(`value cannot be canonicalized: ${String(cause)}`, "", { cause });
  }
  if (text === undefined) throw new ValidationError("value cannot be canonicalized: undefined", "");
  return text;
}

const encoder = new TextEncoder();

export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalize(value));
}
