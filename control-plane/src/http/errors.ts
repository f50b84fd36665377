/**
 * Maps the error tree to HTTP. Branches on the class only, never on message text (the error tree in shared/errors).
 * Body shape everywhere: `{ error: { code, message, field? } }`.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { describeZodError, firstZodIssue } from "../../../shared/errors/index.js";
import { isTransientDatabaseError } from "../db/transient.js";
import { CapacityError, ConflictError, ForbiddenError, NotFoundError, ValidationError, VerificationError } from "../errors.js";

export type ErrorCode =
  | "request_timeout"
  | "validation_error"
  | "verification_failed"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "too_many_requests"
  | "unavailable"
  | "internal";

export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string };
}

export interface HttpError {
  status: ContentfulStatusCode;
  body: ErrorBody;
}

export function errorBody(code: ErrorCode, message: string, field?: string): ErrorBody {
  return { error: field === undefined ? { code, message } : { code, message, field } };
}

export function errorResponse(c: Context, status: ContentfulStatusCode, body: ErrorBody): Response {
  return c.json(body, status);
}

/** A 400 `validation_error` naming the first bad field of `target` (body, query, path, form) (shared/errors/zod.ts). */
export function validationFailure(error: z.ZodError, target: string): HttpError {
  const { field } = firstZodIssue(error);
  return { status: 400, body: errorBody("validation_error", `${target}: ${describeZodError(error)}`, field) };
}

/**
 * Known errors become their status; anything else is `null` (the caller answers 500 with a generic message and
 * logs the real one with the request id).
 */
export function httpErrorFor(err: unknown): HttpError | null {
  if (err instanceof ValidationError) return { status: 400, body: errorBody("validation_error", err.message, err.field) };
  // FreshnessError extends VerificationError: a replayed or stale signed request is a failed verification too.
  if (err instanceof VerificationError) return { status: 400, body: errorBody("verification_failed", err.message) };
  if (err instanceof NotFoundError) return { status: 404, body: errorBody("not_found", err.message) };
  if (err instanceof ConflictError) return { status: 409, body: errorBody("conflict", err.message) };
  if (err instanceof ForbiddenError) return { status: 403, body: errorBody("forbidden", err.message) };
  if (err instanceof CapacityError) return { status: 429, body: errorBody("too_many_requests", err.message) };
  if (err instanceof HTTPException) return httpExceptionFor(err);
  if (isUnstorableText(err)) return { status: 400, body: errorBody("validation_error", "text contains a NUL character (U+0000), which cannot be stored", "") };
  // HW-FAULT-3: a database that is restarting or unreachable is the plane's passing trouble, not the client's
  // mistake and not a bug: 503 (the caller's onError adds Retry-After), and the request's transaction wrote nothing.
  if (isTransientDatabaseError(err)) return { status: 503, body: errorBody("unavailable", "the database is unavailable; retry shortly") };
  return null;
}

/**
 * HW-HTTP-2 (found by fuzzing, HW-FUZZ-1): PostgreSQL and PGlite text cannot hold U+0000, so a path parameter or body
 * string with a NUL made the query fail (SQLSTATE 22021 / 22P05) and the request answered 500. It is bad input: 400.
 * The statement failed, so its transaction wrote nothing. Drivers and drizzle wrap the error: the cause chain is read.
 */
function isUnstorableText(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === "22021" || code === "22P05") return true;
  }
  return false;
}

/** Errors raised by hono itself before our handlers run (body limit, media-type gate, JSON parsing). */
function httpExceptionFor(err: HTTPException): HttpError | null {
  switch (err.status) {
    case 413:
      return { status: 413, body: errorBody("payload_too_large", "request body too large") };
    case 415:
      return { status: 400, body: errorBody("validation_error", "request body must be application/json", "content-type") };
    case 400:
      // hono's validator: "Malformed JSON in request body".
      return { status: 400, body: errorBody("validation_error", "request body is not valid JSON", "body") };
    case 401:
      return { status: 401, body: errorBody("unauthorized", "authentication required") };
    case 403:
      return { status: 403, body: errorBody("forbidden", "forbidden") };
    case 404:
      return { status: 404, body: errorBody("not_found", "not found") };
    default:
      return null;
  }
}
