/**
 * A database that is restarting, failing over or unreachable is a passing condition, not a bad request: these
 * helpers tell such failures apart from real ones, so callers can retry (the broker ingest, HW-FAULT-2), answer
 * 503 instead of 500 (the HTTP API, HW-FAULT-3) and report the database state (`/healthz`, `/readyz`).
 *
 * node-postgres' Pool recovers by itself: a client whose connection died is dropped from the pool when released
 * and the next query opens a new connection. What is left to the plane is not treating the outage as fatal.
 */
import { sql } from "drizzle-orm";
import type { Database } from "./types.js";

/**
 * SQLSTATEs of a connection that went away or a server that is not accepting work right now (PostgreSQL
 * Appendix A): class 08 (connection exception), 57P01 admin_shutdown (`pg_ctl stop -m fast`), 57P02
 * crash_shutdown (another backend crashed, `-m immediate`), 57P03 cannot_connect_now (starting up / shutting down);
 * and the two the server asks clients to retry, having rolled the transaction back: 40001 serialization_failure,
 * 40P01 deadlock_detected (PostgreSQL 13.4 "Serialization Failure Handling").
 */
const TRANSIENT_SQLSTATE = /^(08...|57P0[123]|40001|40P01)$/;
/** Socket errors of a connection that was refused, reset or cut (Node errno codes). */
const TRANSIENT_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTCONN"]);
/**
 * node-postgres reports a connection lost between queries, or a pool that could not connect in time, with plain
 * Errors that carry no code (pg 8.x lib/client.js, pg-pool index.js); their messages are all there is to go by.
 */
const PG_CONNECTION_MESSAGES = [
  "Connection terminated unexpectedly",
  "Client has encountered a connection error and is not queryable",
  "timeout exceeded when trying to connect",
  "Connection terminated due to connection timeout",
];

/**
 * True when `error` (or anything in its `cause` chain: drizzle wraps driver errors in DrizzleQueryError) says the
 * database connection failed or the server is restarting, so the same work may succeed later. A statement the
 * server refused (constraint, syntax, serialization) is not transient here.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && typeof e === "object" && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_ERRNO.has(code))) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && PG_CONNECTION_MESSAGES.some((text) => message.includes(text))) return true;
    // AggregateError (Node's net connect over several addresses) carries its causes in `errors`.
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.some((inner) => isTransientDatabaseError(inner))) return true;
  }
  return false;
}

/** Thrown by probeDatabase when the answer does not come within its timeout. */
class ProbeTimeout extends Error {}

/**
 * `select 1` within `timeoutMs` (default 2000): "up" when it answers, "down" when it fails or does not answer in
 * time (a query stuck on a dead connection must not hang a health probe). Never throws.
 */
export async function probeDatabase(db: Database, timeoutMs = 2000): Promise<"up" | "down"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      db.execute(sql`select 1`),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ProbeTimeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return "up";
  } catch {
    return "down";
  } finally {
    clearTimeout(timer);
  }
}
