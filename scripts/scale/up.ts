/**
 * `npm run scale:up`: RabbitMQ (own node under .data/scale, free ports), the machine's PostgreSQL (database
 * `hashward_scale`, created if missing), and two plane replicas with HASHWARD_BROKER=rabbitmq. Prints what to
 * point agents at. Refuses to start twice (scale:down first). Never touches the machine's own RabbitMQ node.
 *
 * Env: HASHWARD_SCALE_ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres: used only to create
 * the database), HASHWARD_SCALE_DATABASE (default hashward_scale), HASHWARD_SCALE_REPLICAS (default 2).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { brokerTlsFiles } from "../../control-plane/src/broker/rabbitmq/tls-files.js";
import { MAX_PAYLOAD_BYTES } from "../../shared/protocol/index.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "./rabbitmq-node.js";
import { alive, BUN, REPO_ROOT, SCALE_DIR, STATE_FILE, type ScaleState } from "./topology.js";

function fail(message: string): never {
  console.error(`scale:up: ${message}`);
  process.exit(1);
}

async function ensureDatabase(adminUrl: string, database: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) fail(`HASHWARD_SCALE_DATABASE=${database}: must be a lower-case SQL identifier`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect().catch((error: Error) => fail(`PostgreSQL at ${adminUrl.replace(/:[^:@/]*@/, ":***@")} is not reachable: ${error.message}`));
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${database}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Waits for the replica's "control plane ready" line in its log file (JSON lines); returns that line. */
async function readyLine(log: string, pid: number, timeoutMs = 300_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    for (const line of text.split("\n")) {
      if (!line.includes("control plane ready")) continue;
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        // a partial line: read again
      }
    }
    if (!alive(pid)) fail(`replica exited before it was ready; see ${log}`);
    if (Date.now() > deadline) fail(`replica not ready within ${timeoutMs} ms; see ${log}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function main(): Promise<void> {
  const missing = rabbitmqMissing();
  if (missing) fail(missing);
  if (existsSync(STATE_FILE)) {
    const state = JSON.parse(readFileSync(STATE_FILE, "utf8")) as ScaleState;
    if (state.replicas.some((r) => alive(r.pid))) fail(`already up (${STATE_FILE}); run npm run scale:down first`);
  }
  mkdirSync(SCALE_DIR, { recursive: true, mode: 0o700 });
  const adminDatabaseUrl = process.env.HASHWARD_SCALE_ADMIN_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const database = process.env.HASHWARD_SCALE_DATABASE ?? "hashward_scale";
  const replicaCount = Number(process.env.HASHWARD_SCALE_REPLICAS ?? "2");
  if (!Number.isInteger(replicaCount) || replicaCount < 1 || replicaCount > 8) fail("HASHWARD_SCALE_REPLICAS must be 1..8");
  const databaseUrl = await ensureDatabase(adminDatabaseUrl, database);

  // Secrets of this topology live in its folder (0600), generated once and reused by later scale:up runs.
  const secretsFile = join(SCALE_DIR, "secrets.json");
  const secrets = existsSync(secretsFile)
    ? (JSON.parse(readFileSync(secretsFile, "utf8")) as { hookSecret: string; planePassword: string; cookie: string; ports: Awaited<ReturnType<typeof freePorts>> })
    : { hookSecret: randomBytes(24).toString("hex"), planePassword: randomBytes(16).toString("hex"), cookie: newCookie(), ports: await freePorts() };
  writeFileSync(secretsFile, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  const { ports } = secrets;
  const dataDir = join(SCALE_DIR, "plane");
  const hookPorts = await Promise.all(Array.from({ length: replicaCount }, () => freePort()));
  const httpPorts = await Promise.all(Array.from({ length: replicaCount }, () => freePort()));
  const mqttUrl = `mqtts://127.0.0.1:${ports.mqtt}`;

  const replicas: ScaleState["replicas"] = [];
  let firstReady: Record<string, unknown> | null = null;
  let node: RabbitNode | null = null;
  for (let index = 0; index < replicaCount; index += 1) {
    const name = `replica-${index + 1}`;
    const log = join(SCALE_DIR, `${name}.log`);
    const out = openSync(log, "w");
    const child = spawn(BUN, ["control-plane/src/main.ts"], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ["ignore", out, out],
      env: {
        ...process.env,
        HASHWARD_DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        HASHWARD_HTTP_HOST: "127.0.0.1",
        HASHWARD_HTTP_PORT: String(httpPorts[index]),
        HASHWARD_BROKER: "rabbitmq",
        HASHWARD_RABBITMQ_URL: `amqp://hashward:${secrets.planePassword}@127.0.0.1:${ports.amqp}`,
        HASHWARD_RABBITMQ_MANAGEMENT_URL: `http://hashward:${secrets.planePassword}@127.0.0.1:${ports.management}`,
        HASHWARD_BROKER_HOOK_PORT: String(hookPorts[index]),
        HASHWARD_BROKER_HOOK_SECRET: secrets.hookSecret,
        HASHWARD_PUBLIC_MQTT_URL: mqttUrl,
      },
    });
    child.unref();
    const ready = await readyLine(log, child.pid!);
    firstReady ??= ready;
    replicas.push({ name, pid: child.pid!, httpUrl: String(ready.httpUrl), hookPort: hookPorts[index]!, log });
    console.log(`scale:up: ${name} ready at ${String(ready.httpUrl)} (log ${log})`);
    if (index === 0) {
      // The first replica wrote the TLS files RabbitMQ's MQTT listener serves; the node asks its hooks.
      node = new RabbitNode({
        dir: join(SCALE_DIR, "rabbitmq"),
        name: `hashward-scale-${ports.amqp}`,
        ports,
        planeUser: "hashward",
        planePassword: secrets.planePassword,
        hookBaseUrl: `http://127.0.0.1:${hookPorts[0]}/${secrets.hookSecret}`,
        tls: brokerTlsFiles(dataDir),
        maxMessageBytes: MAX_PAYLOAD_BYTES + 1024,
        cookie: secrets.cookie,
      });
      console.log(`scale:up: starting RabbitMQ node ${node.nodename} (first boot takes up to a minute)`);
      await node.start({ detached: true });
    }
  }
  const state: ScaleState = {
    startedAt: new Date().toISOString(),
    databaseUrl,
    database,
    adminDatabaseUrl,
    nodeSpecFile: join(SCALE_DIR, "rabbitmq", "spec.json"),
    node: { nodename: node!.nodename, mqttUrl, managementPort: ports.management, amqpPort: ports.amqp },
    replicas,
    dataDir,
    adminTokenFile: join(dataDir, "admin.token"),
    caCertHash: (firstReady?.caCertHash as string | null) ?? null,
  };
  writeFileSync(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  console.log(
    [
      "scale:up: topology ready",
      `  replicas:    ${replicas.map((r) => r.httpUrl).join("  ")}`,
      `  MQTT (agents): ${mqttUrl}   CA pin: ${state.caCertHash}`,
      `  RabbitMQ management: http://127.0.0.1:${ports.management} (user hashward, password in ${secretsFile})`,
      `  admin token: ${state.adminTokenFile}`,
      `  database:    ${databaseUrl}`,
      "  stop with: npm run scale:down",
    ].join("\n"),
  );
}

main().catch((error: unknown) => fail(error instanceof Error ? error.stack ?? error.message : String(error)));
