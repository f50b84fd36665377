/**
 * HW-FAULT-1 regressions: a PostgreSQL connection killed under a running transaction (what a server restart does
 * to every backend) fails that transaction with a transient error and nothing else; the process survives and the
 * pool serves the next query on a new connection. Before the fix, pg-pool's checked-out client had no 'error'
 * listener and the plane died with "Connection terminated unexpectedly" (seen in test/faults/postgres-restart).
 */
import { sql } from "drizzle-orm";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { describeUnless } from "../../../test/support/skip.js";
import { waitFor } from "../../../test/support/wait.js";
import { openDatabase } from "./index.js";
import { withTemporaryPostgres } from "./test-postgres.js";
import { isTransientDatabaseError } from "./transient.js";

describe("isTransientDatabaseError", () => {
  it("knows a lost connection and a restarting server, through drizzle's cause chain", () => {
    const wrap = (cause: unknown) => Object.assign(new Error("Failed query: select 1"), { cause });
    expect(isTransientDatabaseError(wrap(new Error("Connection terminated unexpectedly")))).toBe(true);
    expect(isTransientDatabaseError(wrap(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5"), { code: "ECONNREFUSED" })))).toBe(true);
    expect(isTransientDatabaseError(wrap(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" })))).toBe(true);
    expect(isTransientDatabaseError(wrap(Object.assign(new Error("the database system is starting up"), { code: "57P03" })))).toBe(true);
    expect(isTransientDatabaseError(Object.assign(new Error("connection failure"), { code: "08006" }))).toBe(true);
  });

  it("leaves a refused statement alone: retrying it would fail the same way", () => {
    expect(isTransientDatabaseError(Object.assign(new Error("duplicate key"), { code: "23505" }))).toBe(false);
    expect(isTransientDatabaseError(Object.assign(new Error("syntax error"), { code: "42601" }))).toBe(false);
    expect(isTransientDatabaseError(new Error("anything else"))).toBe(false);
    expect(isTransientDatabaseError(undefined)).toBe(false);
  });
});

const baseUrl = process.env.HASHWARD_TEST_DATABASE_URL;
describeUnless(baseUrl ? null : "set HASHWARD_TEST_DATABASE_URL to a PostgreSQL URL to run", "a PostgreSQL connection killed mid-transaction (HW-FAULT-1)", () => {
  it("fails that transaction as transient, keeps the process alive and serves the next query", async () => {
    await withTemporaryPostgres(baseUrl!, async (url) => {
      const opened = await openDatabase({ dataDir: "unused", databaseUrl: url });
      const killer = new pg.Client({ connectionString: url });
      await killer.connect();
      const uncaught: unknown[] = [];
      const onUncaught = (error: unknown) => uncaught.push(error);
      process.on("uncaughtException", onUncaught);
      try {
        const failed = await opened.db
          .transaction(async (tx) => {
            const { rows } = (await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as { rows: Array<{ pid: number }> };
            const pid = rows[0]!.pid;
            // The server ends this backend while the transaction is between statements (as a restart does).
            await killer.query("select pg_terminate_backend($1)", [pid]);
            await waitFor("the backend gone", async () => (await killer.query("select 1 from pg_stat_activity where pid = $1", [pid])).rowCount === 0);
            await tx.execute(sql`select 1`);
          })
          .then(() => null, (error: unknown) => error);
        expect(failed).not.toBeNull();
        expect(isTransientDatabaseError(failed)).toBe(true);
        const { rows } = (await opened.db.execute(sql`select 41 + 1 as answer`)) as unknown as { rows: Array<{ answer: number }> };
        expect(rows[0]!.answer).toBe(42);
        expect(uncaught).toEqual([]);
      } finally {
        process.off("uncaughtException", onUncaught);
        await killer.end();
        await opened.close();
      }
    });
  }, 120_000);
});
