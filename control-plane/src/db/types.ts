/**
 * The database handle types, apart from ./index.ts (which opens databases) so that helpers it uses
 * (./transient.ts) can name them without importing it.
 */
import type { PgDatabase } from "drizzle-orm/pg-core";
import type * as schema from "./schema/index.js";

/** One query surface for both drivers: code never branches on the dialect. */
export type Database = PgDatabase<any, typeof schema>;
/** A transaction handle, or the database itself when no transaction is open. */
export type Tx = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** Either: what a helper that may run inside or outside a transaction takes. */
export type Queryable = Database | Tx;
