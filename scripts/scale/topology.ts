/**
 * The local scale topology `npm run scale:up` brings up and `npm run scale:down` tears down: one RabbitMQ node of
 * the project's own (scripts/scale/rabbitmq-node.ts), the machine's PostgreSQL (a database of its own), and two
 * plane replicas in the external broker mode sharing one data folder (keys, CA) and that database.
 * Everything lives under `.data/scale/` (git-ignored); `state.json` there records what runs.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const SCALE_DIR = join(REPO_ROOT, ".data", "scale");
export const STATE_FILE = join(SCALE_DIR, "state.json");
export const BUN = join(REPO_ROOT, "node_modules/.bin/bun");

export interface ScaleState {
  startedAt: string;
  databaseUrl: string;
  database: string;
  adminDatabaseUrl: string;
  nodeSpecFile: string;
  node: { nodename: string; mqttUrl: string; managementPort: number; amqpPort: number };
  replicas: { name: string; pid: number; httpUrl: string; hookPort: number; log: string }[];
  dataDir: string;
  adminTokenFile: string;
  caCertHash: string | null;
}

/** True when a process with this id exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
