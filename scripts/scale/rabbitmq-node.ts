/**
 * A RabbitMQ node of the project's own, under a data folder: its own node name, AMQP, distribution, MQTT and
 * management ports (picked free), its own epmd port and Erlang cookie, its mnesia/log/config/plugins files under
 * `dir`. It never touches the machine's own RabbitMQ node (rabbit@host on 5672, epmd on 4369): every variable the
 * rabbitmq-server script reads is set here, and the epmd it starts listens on a port of its own.
 *
 * Used by `npm run scale:up` (scripts/scale/up.ts) and by the tests (test/support/rabbitmq.ts).
 * Needs Debian's rabbitmq-server (3.10: rabbitmq_mqtt, rabbitmq_auth_backend_http, rabbitmq_management,
 * rabbitmq_event_exchange ship with it). Nothing here is a stand-in: the node is the real broker.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { createServer, connect } from "node:net";
import { join } from "node:path";

export const RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";
export const RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/** Why a RabbitMQ node cannot be started here, or null when it can. */
export function rabbitmqMissing(): string | null {
  if (!existsSync(RABBITMQ_SERVER)) return "rabbitmq-server is not installed (apt-get install rabbitmq-server)";
  return null;
}

/** The plugins every Hashward node runs (the HTTP auth backend asks the plane; management closes revoked devices' connections). */
export const PLUGINS = ["rabbitmq_mqtt", "rabbitmq_auth_backend_http", "rabbitmq_management", "rabbitmq_event_exchange"] as const;

export interface RabbitNodePorts {
  amqp: number;
  dist: number;
  epmd: number;
  mqtt: number;
  management: number;
}

export interface RabbitNodeSpec {
  /** The node's own folder (mnesia, logs, config, cookie, pid). Created if missing. */
  dir: string;
  /** Short node name; the node is `<name>@localhost`. */
  name: string;
  ports: RabbitNodePorts;
  /** Internal user the plane connects with (AMQP + management), administrator tag. */
  planeUser: string;
  planePassword: string;
  /** Base URL of the plane's hook listener including its secret path, e.g. http://127.0.0.1:8090/<secret>. */
  hookBaseUrl: string;
  /** PEM files for the MQTT TLS listener (the plane's CA-issued server certificate); null = plaintext MQTT. */
  tls: { certFile: string; keyFile: string; caFile: string } | null;
  /** Largest message RabbitMQ accepts (bytes); the plane's payload cap plus topic overhead. */
  maxMessageBytes: number;
  /** Erlang cookie shared by a cluster's nodes. */
  cookie: string;
  /**
   * Node names (`name@localhost`) of the cluster this node forms or joins at its first boot (classic peer
   * discovery); the nodes of one cluster share `cookie` and `ports.epmd`. Unset: a single node.
   */
  clusterNodes?: string[];
}

/** A free TCP port on 127.0.0.1 (bound with port 0 and released; RabbitMQ cannot be given port 0 itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function freePorts(): Promise<RabbitNodePorts> {
  const picked = new Set<number>();
  const next = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!picked.has(port)) {
        picked.add(port);
        return port;
      }
    }
  };
  return { amqp: await next(), dist: await next(), epmd: await next(), mqtt: await next(), management: await next() };
}

export function newCookie(): string {
  return randomBytes(24).toString("hex").toUpperCase();
}

/** rabbitmq.conf for a node: the HTTP auth backend after the internal one (the plane's own user is internal). */
export function rabbitmqConf(spec: RabbitNodeSpec): string {
  const hook = spec.hookBaseUrl.replace(/\/$/, "");
  const lines = [
    "# Written by scripts/scale/rabbitmq-node.ts; regenerated on every start.",
    `listeners.tcp.default = 127.0.0.1:${spec.ports.amqp}`,
    `management.tcp.ip = 127.0.0.1`,
    `management.tcp.port = ${spec.ports.management}`,
    "loopback_users = none",
    `default_user = ${spec.planeUser}`,
    `default_pass = ${spec.planePassword}`,
    "default_user_tags.administrator = true",
    "default_permissions.configure = .*",
    "default_permissions.read = .*",
    "default_permissions.write = .*",
    // The internal database knows only the plane's user; devices fall through to the plane's hooks (HW-BROKER-1).
    "auth_backends.1 = internal",
    "auth_backends.2 = http",
    "auth_http.http_method = post",
    `auth_http.user_path = ${hook}/user`,
    `auth_http.vhost_path = ${hook}/vhost`,
    `auth_http.resource_path = ${hook}/resource`,
    `auth_http.topic_path = ${hook}/topic`,
    "mqtt.allow_anonymous = false",
    "mqtt.vhost = /",
    "mqtt.exchange = amq.topic",
    // HW-BROKER-3: the MQTT plugin publishes through an AMQP channel, which refuses (and disconnects) larger messages.
    `max_message_size = ${spec.maxMessageBytes}`,
    "collect_statistics_interval = 10000",
    // Every MQTT connection is an info line; warnings and errors are what an operator reads.
    "log.console.level = warning",
  ];
  if (spec.clusterNodes && spec.clusterNodes.length > 0) {
    lines.push("cluster_formation.peer_discovery_backend = classic_config");
    spec.clusterNodes.forEach((node, index) => lines.push(`cluster_formation.classic_config.nodes.${index + 1} = ${node}`));
  }
  if (spec.tls) {
    lines.push(
      "mqtt.listeners.tcp = none",
      `mqtt.listeners.ssl.default = 127.0.0.1:${spec.ports.mqtt}`,
      `ssl_options.cacertfile = ${spec.tls.caFile}`,
      `ssl_options.certfile = ${spec.tls.certFile}`,
      `ssl_options.keyfile = ${spec.tls.keyFile}`,
      "ssl_options.verify = verify_none",
      "ssl_options.fail_if_no_peer_cert = false",
      "ssl_options.versions.1 = tlsv1.3",
      "ssl_options.versions.2 = tlsv1.2",
    );
  } else {
    lines.push(`mqtt.listeners.tcp.default = 127.0.0.1:${spec.ports.mqtt}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The environment the rabbitmq-server and rabbitmqctl scripts read for this node (nothing machine-wide). */
export function nodeEnv(spec: RabbitNodeSpec): Record<string, string> {
  const home = join(spec.dir, "home");
  return {
    HOME: home,
    RABBITMQ_NODENAME: `${spec.name}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(spec.ports.amqp),
    RABBITMQ_DIST_PORT: String(spec.ports.dist),
    ERL_EPMD_PORT: String(spec.ports.epmd),
    ERL_EPMD_ADDRESS: "127.0.0.1",
    RABBITMQ_MNESIA_BASE: join(spec.dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(spec.dir, "log"),
    RABBITMQ_LOGS: "-",
    RABBITMQ_CONFIG_FILE: join(spec.dir, "rabbitmq.conf"),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(spec.dir, "advanced.config"),
    RABBITMQ_CONF_ENV_FILE: join(spec.dir, "rabbitmq-env.conf"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(spec.dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: join(spec.dir, "rabbitmq.pid"),
    RABBITMQ_USE_LONGNAME: "false",
    // Erlang distribution (clustering, CLI) on loopback only, like every other listener of the node.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
  };
}

function writeNodeFiles(spec: RabbitNodeSpec): void {
  for (const sub of ["home", "mnesia", "log"]) mkdirSync(join(spec.dir, sub), { recursive: true, mode: 0o700 });
  const cookieFile = join(spec.dir, "home", ".erlang.cookie");
  if (!existsSync(cookieFile) || readFileSync(cookieFile, "utf8") !== spec.cookie) {
    if (existsSync(cookieFile)) chmodSync(cookieFile, 0o600);
    writeFileSync(cookieFile, spec.cookie, { mode: 0o400 });
    chmodSync(cookieFile, 0o400);
  }
  writeFileSync(join(spec.dir, "rabbitmq.conf"), rabbitmqConf(spec), { mode: 0o600 });
  writeFileSync(join(spec.dir, "advanced.config"), "[].\n", { mode: 0o600 });
  writeFileSync(join(spec.dir, "rabbitmq-env.conf"), "", { mode: 0o600 });
  writeFileSync(join(spec.dir, "enabled_plugins"), `[${PLUGINS.join(",")}].\n`, { mode: 0o600 });
  writeFileSync(join(spec.dir, "spec.json"), `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export class RabbitNode {
  private child: ChildProcess | null = null;
  private exited: Promise<void> | null = null;

  constructor(readonly spec: RabbitNodeSpec) {}

  get nodename(): string {
    return `${this.spec.name}@localhost`;
  }

  get amqpUrl(): string {
    return `amqp://${encodeURIComponent(this.spec.planeUser)}:${encodeURIComponent(this.spec.planePassword)}@127.0.0.1:${this.spec.ports.amqp}`;
  }

  get managementUrl(): string {
    return `http://${encodeURIComponent(this.spec.planeUser)}:${encodeURIComponent(this.spec.planePassword)}@127.0.0.1:${this.spec.ports.management}`;
  }

  get mqttUrl(): string {
    return `${this.spec.tls ? "mqtts" : "mqtt"}://127.0.0.1:${this.spec.ports.mqtt}`;
  }

  /** The rabbitmq-server process id (its Erlang VM), or null when not started by this object. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /**
   * Starts the node and resolves once its MQTT and management listeners answer (first boot: a few seconds;
   * `timeoutMs` is generous for a loaded machine). `detached` keeps it running after this process exits
   * (scale:up); the log goes to `<dir>/log/node.log`.
   */
  async start({ timeoutMs = 180_000, detached = false }: { timeoutMs?: number; detached?: boolean } = {}): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    writeNodeFiles(this.spec);
    const logFd = openSync(join(this.spec.dir, "log", "node.log"), "a");
    const child = spawn(RABBITMQ_SERVER, [], {
      cwd: this.spec.dir,
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", ...nodeEnv(this.spec) },
      stdio: ["ignore", logFd, logFd],
      detached: true, // its own process group: stop() and kill() end the VM and its helpers together
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    if (detached) child.unref();
    writeFileSync(join(this.spec.dir, "server.pid"), `${child.pid}\n`);
    const deadline = Date.now() + timeoutMs;
    let gone = false;
    void this.exited.then(() => (gone = true));
    for (;;) {
      if (gone) throw new Error(`rabbitmq node ${this.nodename} exited during start; see ${join(this.spec.dir, "log", "node.log")}`);
      if ((await tcpOpen(this.spec.ports.mqtt)) && (await this.managementAnswers())) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`rabbitmq node ${this.nodename} not ready within ${timeoutMs} ms; see ${join(this.spec.dir, "log", "node.log")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async managementAnswers(): Promise<boolean> {
    try {
      const auth = Buffer.from(`${this.spec.planeUser}:${this.spec.planePassword}`).toString("base64");
      const response = await fetch(`http://127.0.0.1:${this.spec.ports.management}/api/overview`, { headers: { authorization: `Basic ${auth}` } });
      await response.arrayBuffer();
      return response.ok;
    } catch {
      return false;
    }
  }

  /** What the node logged so far (`<dir>/log/node.log`). */
  logText(): string {
    try {
      return readFileSync(join(this.spec.dir, "log", "node.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** `rabbitmqctl <args>` against this node (its own cookie and epmd port). Throws with the output on failure. */
  ctl(args: string[], timeoutMs = 120_000): string {
    const result = spawnSync(RABBITMQCTL, ["-n", this.nodename, ...args], {
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", ...nodeEnv(this.spec) },
      encoding: "utf8",
      timeout: timeoutMs,
    });
    if (result.status !== 0) throw new Error(`rabbitmqctl ${args.join(" ")} failed: ${result.stderr || result.stdout}`);
    return result.stdout;
  }

  /** Graceful stop (rabbitmqctl stop), falling back to SIGKILL of its process group. */
  async stop(): Promise<void> {
    const pid = this.child?.pid ?? readPid(this.spec.dir);
    if (pid === null) return;
    try {
      this.ctl(["stop"], 60_000);
    } catch {
      // not reachable: the kill below ends it
    }
    await this.kill();
  }

  /** SIGKILL the node's process group (a crash), and wait for it to exit. */
  async kill(): Promise<void> {
    const pid = this.child?.pid ?? readPid(this.spec.dir);
    if (pid === null) return;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
    await this.exited;
    this.child = null;
  }

  /**
   * Stops the epmd this node's VM started on its own port (after the last node on that port is down). epmd refuses
   * while it still lists a node, which it drops shortly after the VM's socket closes: asked again a few times.
   */
  async stopEpmd(): Promise<void> {
    for (let attempt = 0; attempt < 40; attempt += 1) {
      const result = spawnSync("epmd", ["-kill"], { env: { ...process.env, ERL_EPMD_PORT: String(this.spec.ports.epmd) }, encoding: "utf8" });
      if (/Killed|Cannot connect/.test(`${result.stdout}${result.stderr}`) || result.error) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function readPid(dir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dir, "server.pid"), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
