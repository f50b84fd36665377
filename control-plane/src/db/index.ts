/**
 * Opens the control plane's database: embedded PGlite in `<dataDir>/pglite` by default, PostgreSQL through a
 * node-postgres Pool when a URL is given. The committed drizzle-kit migrations (control-plane/drizzle/) are
 * applied at open, so a fresh directory or an empty database is ready after this returns. A fresh PGlite directory
 * starts as a copy of the prepared image for the current migrations (./image.ts) instead of running initdb.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { copyDatabaseImage, ensureDatabaseImage, imageCacheDirFromEnv, isFreshDirectory } from "./image.js";
import { probeDatabase } from "./transient.js";
import * as schema from "./schema/index.js";

export { schema };
export * from "./schema/index.js";

import type { Database, Queryable, Tx } from "./types.js";

export type { Database, Queryable, Tx } from "./types.js";

export type Dialect = "pglite" | "postgres";

export interface OpenedDatabase {
  db: Database;
  dialect: Dialect;
  /**
   * HW-FAULT-3: whether the database answers `select 1` now, within `timeoutMs` (default 2000). On PostgreSQL
   * this uses a connection of its own: a pool busy with a reconnecting fleet must not read as a database down.
   */
  probe(timeoutMs?: number): Promise<"up" | "down">;
  close(): Promise<void>;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

// Any constant works; replicas starting together take turns applying migrations.
const MIGRATION_LOCK_KEY = 0x4857_4d31;

export { DatabaseImageError, ensureDatabaseImage, imageCacheDirFromEnv } from "./image.js";

/** Hooks waiting for a transaction's commit, by transaction handle, with the database it belongs to. */
const commitHooks = new WeakMap<object, { root: Database; hooks: Array<(root: Database) => void> }>();

/**
 * Runs `hook` once what `executor` wrote is committed: after the transaction's COMMIT when `executor` is a
 * transaction opened by `db.transaction` of a database from `openDatabase`, at once otherwise (a statement on the
 * database itself has committed when it returns). Not run when the transaction rolls back. A throwing hook is
 * ignored: it cannot undo the commit. Used by writers to signal readers in this process after commit (HW-SSE-2).
 * Drizzle has no commit hook, so `openDatabase` wraps `transaction` once, at open (the same path in tests).
 */
export function afterCommit(executor: Queryable, hook: (root: Database) => void): void {
  const pending = commitHooks.get(executor);
  if (pending) pending.hooks.push(hook);
  else runHook(hook, executor as Database);
}

function runHook(hook: (root: Database) => void, root: Database): void {
  try {
    hook(root);
  } catch {
    // committed already; a failing listener must not turn a commit into an error
  }
}

function withCommitHooks(db: Database): Database {
  const transaction = db.transaction.bind(db);
  db.transaction = (async (run: (tx: Tx) => Promise<unknown>, config?: Parameters<Database["transaction"]>[1]) => {
    const pending = { root: db, hooks: [] as Array<(root: Database) => void> };
    const result = await transaction(async (tx) => {
      commitHooks.set(tx, pending);
      return run(tx);
    }, config);
    for (const hook of pending.hooks) runHook(hook, db);
    return result;
  }) as Database["transaction"];
  return db;
}

/**
 * Opens (and migrates) the database: PostgreSQL at `databaseUrl` when given, else PGlite in `<dataDir>/pglite`.
 * `imageCacheDir` is where prepared PGlite images live (default: HASHWARD_PGLITE_IMAGE_DIR, else
 * `<repository>/.cache/pglite-image`; `false` creates a fresh directory with initdb as before).
 * @throws DatabaseImageError when the image cache is not private to this user (HW-DB-2); driver and migration errors.
 */
export async function openDatabase(opts: { dataDir: string; databaseUrl?: string; imageCacheDir?: string | false }): Promise<OpenedDatabase> {
  if (opts.databaseUrl) return openPostgres(opts.databaseUrl);
  return openPglite(join(opts.dataDir, "pglite"), opts.imageCacheDir ?? imageCacheDirFromEnv());
}

async function openPglite(directory: string, imageCacheDir: string | false): Promise<OpenedDatabase> {
  if (imageCacheDir !== false && isFreshDirectory(directory)) {
    copyDatabaseImage(await ensureDatabaseImage(imageCacheDir, MIGRATIONS_FOLDER), directory);
  }
  mkdirSync(directory, { recursive: true });
  // PGlite replays its write-ahead log on open, so a folder left by a SIGKILLed process reopens (tested).
  const client = await PGlite.create(directory);
  const db = withCommitHooks(drizzlePglite({ client, schema }) as unknown as Database);
  try {
    await migratePglite(db as never, { migrationsFolder: MIGRATIONS_FOLDER });
  } catch (error) {
    await client.close();
    throw error;
  }
  let closed = false;
  return {
    db,
    dialect: "pglite",
    probe: (timeoutMs) => probeDatabase(db, timeoutMs),
    async close() {
      if (closed) return;
      closed = true;
      await client.close();
    },
  };
}

/**
 * HW-FAULT-1: a lost connection must not crash the process. An idle client's error reaches the pool's listener;
 * but pg-pool removes its error listener from a client while it is checked out (a drizzle transaction holds one
 * across awaits), and a connection dying then (PostgreSQL restarted) emitted an unhandled 'error' that killed the
 * plane. The queries on that client still fail with the error, and pg-pool drops the client when it is released
 * (not queryable), so swallowing the event here loses nothing; the next query opens a new connection.
 */
function survivesLostConnections(pool: pg.Pool): void {
  pool.on("error", () => {});
  pool.on("connect", (client) => {
    client.on("error", () => {});
  });
}

async function openPostgres(url: string): Promise<OpenedDatabase> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    // HW-FAULT-1: a server that stops answering (a cut network, not a clean close) is noticed by TCP keepalive,
    // so queries on that connection fail (and are retried) instead of hanging. No connectionTimeoutMillis: in
    // pg-pool it also bounds the wait for a free client, and 2,000 devices reconnecting after a restart queue
    // longer than any such bound (measured: CONNECTs refused for minutes with 10 s), while waiting costs nothing.
    keepAlive: true,
  });
  survivesLostConnections(pool);
  try {
    const client = await pool.connect();
    try {
      await client.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      try {
        await migratePg(drizzlePg({ client }), { migrationsFolder: MIGRATIONS_FOLDER });
      } finally {
        await client.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
      }
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end();
    throw error;
  }
  const db = withCommitHooks(drizzlePg({ client: pool, schema }) as unknown as Database);
  // HW-FAULT-3: the health probe's own single connection (reopened by pg-pool after a restart).
  const probePool = new pg.Pool({ connectionString: url, max: 1, keepAlive: true, idleTimeoutMillis: 0 });
  survivesLostConnections(probePool);
  const probeDb = drizzlePg({ client: probePool, schema }) as unknown as Database;
  let closed = false;
  return {
    db,
    dialect: "postgres",
    probe: (timeoutMs) => probeDatabase(probeDb, timeoutMs),
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
      await probePool.end();
    },
  };
}

