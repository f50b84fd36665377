/**
 * `npm run scale:down`: stops the replicas (SIGTERM, then SIGKILL after 30 s) and the project's RabbitMQ node and
 * its epmd. Data stays in .data/scale for the next scale:up; `npm run scale:down -- --purge` also drops the
 * database and deletes the folder.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import pg from "pg";
import { RabbitNode, type RabbitNodeSpec } from "./rabbitmq-node.js";
import { alive, SCALE_DIR, STATE_FILE, type ScaleState } from "./topology.js";

async function stopProcess(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  if (alive(pid)) process.kill(pid, "SIGKILL");
}

async function main(): Promise<void> {
  const purge = process.argv.includes("--purge");
  if (!existsSync(STATE_FILE)) {
    console.log("scale:down: nothing is up (no state file)");
    return;
  }
  const state = JSON.parse(readFileSync(STATE_FILE, "utf8")) as ScaleState;
  for (const replica of state.replicas) {
    await stopProcess(replica.pid);
    console.log(`scale:down: ${replica.name} stopped`);
  }
  if (existsSync(state.nodeSpecFile)) {
    const node = new RabbitNode(JSON.parse(readFileSync(state.nodeSpecFile, "utf8")) as RabbitNodeSpec);
    await node.stop();
    await node.stopEpmd();
    console.log(`scale:down: RabbitMQ node ${node.nodename} stopped`);
  }
  rmSync(STATE_FILE, { force: true });
  if (purge) {
    const client = new pg.Client({ connectionString: state.adminDatabaseUrl });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${state.database} WITH (FORCE)`);
    } finally {
      await client.end();
    }
    rmSync(SCALE_DIR, { recursive: true, force: true });
    console.log(`scale:down: database ${state.database} dropped, ${SCALE_DIR} removed`);
  }
}

main().catch((error: unknown) => {
  console.error(`scale:down: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
