/**
 * Test helper: a throw-away PostgreSQL database per run, so concurrent runs against one server never collide.
 * Needs a role that may CREATE DATABASE (the test server's `postgres` has it).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { it } from "vitest";
import { describeUnless } from "../../../test/support/skip.js";
import { tempDir } from "../../../test/support/temp-dir.js";
import { type Database, openDatabase } from "./index.js";

export async function createTemporaryPostgres(baseUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `hw_test_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      try {
        await client.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}

export async function withTemporaryPostgres<T>(baseUrl: string, body: (url: string) => Promise<T>): Promise<T> {
  const temp = await createTemporaryPostgres(baseUrl);
  try {
    return await body(temp.url);
  } finally {
    await temp.drop();
  }
}

export interface TestDatabase {
  db: Database;
  close(): Promise<void>;
}

/**
 * Runs one contract suite on every backend (one shared contract suite per interface): PGlite in a temp
 * folder always, and PostgreSQL in a throw-away database when HASHWARD_TEST_DATABASE_URL is set; otherwise a
 * skipped suite says how to run it.
 */
export function onEveryDatabase(suite: string, contract: (backend: string, open: () => Promise<TestDatabase>) => void): void {
  contract("PGlite", async () => {
    const dataDir = tempDir("db");
    const opened = await openDatabase({ dataDir: dataDir.path });
    return {
      db: opened.db,
      async close() {
        await opened.close();
        dataDir.cleanup();
      },
    };
  });
  const baseUrl = process.env.HASHWARD_TEST_DATABASE_URL;
  if (!baseUrl) {
    describeUnless("set HASHWARD_TEST_DATABASE_URL to a PostgreSQL URL to run", `${suite} (PostgreSQL)`, () => {
      it("the contract on PostgreSQL", () => {});
    });
    return;
  }
  contract("PostgreSQL", async () => {
    const temp = await createTemporaryPostgres(baseUrl);
    const opened = await openDatabase({ dataDir: "unused", databaseUrl: temp.url });
    return {
      db: opened.db,
      async close() {
        await opened.close();
        await temp.drop();
      },
    };
  });
}
