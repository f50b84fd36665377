import type { z } from "zod";
import { ValidationError, validationErrorFromZod } from "../errors/index.js";
import { MAX_PAYLOAD_BYTES } from "./schemas.js";

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Validates an already-decoded value; throws ValidationError naming the first bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationErrorFromZod(result.error, what);
  return result.data;
}

/** Decodes an MQTT payload (UTF-8 JSON, size-capped) and validates it. Never returns unvalidated data. */
export function parsePayload<S extends z.ZodType>(schema: S, payload: Uint8Array, what: string): z.infer<S> {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new ValidationError(`${what}: payload of ${payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`, "");
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (cause) {
    throw new ValidationError(`${what}: payload is not UTF-8 JSON`, "", { cause });
  }
  return parseWith(schema, value, what);
}

export function encodePayload(message: object): Buffer {
  return Buffer.from(JSON.stringify(message));
}
