/** Helpers around the real control plane (started with test/support/processes.ts) for the load benches. */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { ApiClient } from "../../test/support/api.js";
import { devices as devicesTable, openDatabase } from "../../control-plane/src/db/index.js";
import { restartControlPlane, startControlPlane, type ControlPlane } from "../../test/support/processes.js";
import { progress, withRetry } from "./report.js";

export interface BenchPlane {
  /** The running plane (a new process after `seed` on PGlite). */
  plane: ControlPlane;
  admin: ApiClient;
  /** Whether the plane still runs, and the tail of its log: printed when a bench fails. */
  describe(): string;
  /**
   * Writes device rows straight into the plane's database, for benches whose fleet is larger than enrollment over
   * HTTP sets up in reasonable time (10,000 devices: minutes) and that do not measure enrollment. PGlite is one
   * process's database: the plane is stopped, seeded in batches of 1,000 and started again on the same data dir
   * and ports (`plane` and `admin` then point to the new process); on PostgreSQL the rows are written while it runs.
   */
  seed(rows: ReadonlyArray<typeof devicesTable.$inferInsert>): Promise<void>;
  close(): Promise<void>;
}

/**
 * The plane as `npm start` runs it (Bun, embedded aedes, PGlite in a temp dir). Log level info: the harness waits
 * for the info-level "control plane ready" line (BENCH_PLANE_LOG_LEVEL may lower it to debug, not raise it).
 */
export async function startBenchPlane(env: Record<string, string> = {}): Promise<BenchPlane> {
  const profileDir = process.env.BENCH_PLANE_CPU_PROF;
  const database = process.env.BENCH_DATABASE_URL ? await createScratchDatabase(process.env.BENCH_DATABASE_URL) : null;
  const plane = await startControlPlane({
    env: {
      ...(database ? { DATABASE_URL: database.url } : {}),
      HASHWARD_LOG_LEVEL: process.env.BENCH_PLANE_LOG_LEVEL ?? "info",
      // Opt-in: a Bun CPU profile (markdown) of the plane, written when it exits, to see where the time goes.
      ...(profileDir ? { BUN_OPTIONS: `--cpu-prof-md --cpu-prof-dir=${profileDir}` } : {}),
      ...env,
    },
  });
  const bench: BenchPlane = {
    plane,
    admin: new ApiClient(plane.httpUrl, plane.adminToken),
    describe() {
      const { proc } = bench.plane;
      const state = proc.running ? "still running" : `exited (code ${proc.child.exitCode}, signal ${proc.child.signalCode})`;
      return `control plane ${state}; last log lines:\n${proc.tail(40)}`;
    },
    async seed(rows) {
      const databaseUrl = database?.url;
      if (!databaseUrl) await bench.plane.proc.kill("SIGTERM");
      const opened = await openDatabase({ dataDir: bench.plane.dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
      try {
        for (let start = 0; start < rows.length; start += 1_000) await opened.db.insert(devicesTable).values(rows.slice(start, start + 1_000));
      } finally {
        await opened.close();
      }
      if (databaseUrl) return;
      bench.plane = await restartControlPlane(bench.plane);
      bench.admin = new ApiClient(bench.plane.httpUrl, bench.plane.adminToken);
    },
    async close() {
      await bench.plane.proc.kill("SIGTERM");
      await database?.drop();
    },
  };
  return bench;
}

/**
 * BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) runs the plane on PostgreSQL instead of
 * PGlite: a fresh database per run (the plane creates its admin token only on an empty database), dropped after.
 */
export async function createScratchDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `hashward_bench_${randomBytes(4).toString("hex")}`;
  const run = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await run(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => run(`drop database if exists ${name} with (force)`) };
}

export async function createEnrollmentToken(admin: ApiClient, maxUses: number): Promise<string> {
  const created = await admin.post<{ token: string }>("/api/v1/enrollment-tokens", { ttlMs: 3_600_000, maxUses, label: "bench" });
  return created.token;
}

/** Sums every sample of `name` whose labels include all of `labels` (Prometheus text format). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const labelText = match[2] ?? "";
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) total += Number(match[3]);
  }
  return total;
}

export async function readMetric(admin: ApiClient, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { body } = await withRetry(() => admin.request<string>("GET", "/metrics"));
  return metricValue(typeof body === "string" ? body : "", name, labels);
}

export interface DeviceRow {
  deviceId: string;
  containment: string;
  connected: boolean;
  lastSeenAt: string | null;
  telemetry: { accepted?: number } | null;
}

/** Every device the plane lists (pages of 1,000, the API's maximum), optionally filtered by a query string. */
export async function listAllDevices(admin: ApiClient, expected: number, query = ""): Promise<DeviceRow[]> {
  const rows: DeviceRow[] = [];
  for (let offset = 0; ; offset += 1000) {
    const { devices } = await withRetry(() => admin.get<{ devices: DeviceRow[] }>(`/api/v1/devices?limit=1000&offset=${offset}${query}`));
    rows.push(...devices);
    if (devices.length < 1000 || rows.length >= expected + 1000) return rows;
  }
}

/**
 * Runs `measure` against a fresh bench plane (startBenchPlane with `env`) and closes the plane afterwards; when the
 * measurement fails, the plane's state and log tail are printed first (describe()).
 */
export async function withBenchPlane<T>(env: Record<string, string>, measure: (bench: BenchPlane) => Promise<T>): Promise<T> {
  const bench = await startBenchPlane(env);
  try {
    return await measure(bench);
  } catch (error) {
    progress(bench.describe());
    throw error;
  } finally {
    await bench.close();
  }
}
