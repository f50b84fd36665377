import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { eq } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { devices, openDatabase } from "./index.js";
import { describeUnless } from "../../../test/support/skip.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const dirs = tempDirPool("db");
afterEach(dirs.cleanup);

const row = (id: string) => ({ id, publicKey: `pk-${id}`, model: "S19", enrollment: "pending" });

describe("openDatabase (PGlite)", () => {
  it("applies migrations and keeps data across a clean close", async () => {
    const dataDir = dirs.make();
    const first = await openDatabase({ dataDir });
    expect(first.dialect).toBe("pglite");
    await first.db.insert(devices).values(row("hw-a"));
    await first.close();
    const second = await openDatabase({ dataDir });
    const found = await second.db.select().from(devices).where(eq(devices.id, "hw-a"));
    expect(found).toHaveLength(1);
    expect(found[0]?.appraisal).toBe("unknown");
    await second.close();
  }, 120_000); // two PGlite opens (from the prepared image): about 13 s each on a loaded 2-core machine

  it("reopens a folder whose owner was SIGKILLed mid-life, with committed writes intact", async () => {
    const dataDir = dirs.make();
    const moduleUrl = new URL("./index.ts", import.meta.url).href;
    const script = join(dataDir, "child.mjs");
    writeFileSync(
      script,
      `const { openDatabase, devices } = await import(${JSON.stringify(moduleUrl)});
const { db } = await openDatabase({ dataDir: ${JSON.stringify(dataDir)} });
await db.insert(devices).values({ id: "hw-killed", publicKey: "pk", model: "S19", enrollment: "accepted" });
process.stdout.write("written\\n");
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: fileURLToPath(new URL("../../..", import.meta.url)),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("written")) resolve();
      });
      child.on("exit", (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
    });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    child.kill("SIGKILL");
    await exited;

    const reopened = await openDatabase({ dataDir });
    const found = await reopened.db.select().from(devices);
    expect(found.map((d) => d.id)).toEqual(["hw-killed"]);
    await reopened.db.insert(devices).values(row("hw-after"));
    await reopened.close();
  }, 180_000); // a tsx child that opens PGlite, then a reopen here: 33 s on a loaded 2-core machine
});

const pgUrl = process.env.HASHWARD_TEST_DATABASE_URL;
describeUnless(pgUrl ? null : "set HASHWARD_TEST_DATABASE_URL to a PostgreSQL URL to run", "openDatabase (PostgreSQL)", () => {
  it("migrates a fresh database, twice without harm", async () => {
    const { withTemporaryPostgres } = await import("./test-postgres.js");
    await withTemporaryPostgres(pgUrl ?? "", async (url) => {
      const first = await openDatabase({ dataDir: "unused", databaseUrl: url });
      expect(first.dialect).toBe("postgres");
      await first.db.insert(devices).values(row("hw-pg"));
      await first.close();
      const second = await openDatabase({ dataDir: "unused", databaseUrl: url });
      expect(await second.db.select().from(devices)).toHaveLength(1);
      await second.close();
    });
  });
});
