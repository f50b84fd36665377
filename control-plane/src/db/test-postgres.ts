/**
 * Test helper: a throw-away PostgreSQL database per run, so concurrent runs against one server never collide.
 * Needs a role that may CREATE DATABASE (the test server's `postgres` has it).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";

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
