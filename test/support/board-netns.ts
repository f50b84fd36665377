/**
 * A miner board in Linux namespaces, for tests that need real packets and real mounts (docs/board.md "Quarantine").
 *
 * Topology (addresses drawn at random from 10.0.0.0/8 so parallel runs do not meet). Every non-loopback address
 * lives in a namespace made here; the host namespace gets none and sends no packet to one (the plane, running in
 * the test process, listens on Unix sockets that a forwarder in the plane namespace publishes: exposePlane()):
 *
 *   plane namespace (forwarder)             board namespace (agent, miner)      lan namespace (other hosts)
 *   planeIp 10.A.B.1/30  <--- veth --->  10.A.B.2/30
 *                                        10.A.B.130/25, fd00:A:B::2/64 <--- veth --->  pool 10.A.B.140:3333
 *                                                                                       other 10.A.B.141:80, [fd00:A:B::141]:80
 *                                                                                       resolver 10.A.B.153:53/udp (configured)
 *                                                                                       rogue resolver 10.A.B.154:53/udp
 *
 * The board also has its own persistent MOUNT namespace (a bind-mounted nsfs file), so a bind mount the agent
 * makes over the upgrade CGI is seen by every process entering the board (init scripts, probes, a restarted
 * agent) and never by the host. `ip netns exec` would give each command a fresh mount namespace instead.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./temp-dir.js";

export const BUSYBOX = "/bin/busybox";
export type IptablesBackend = "nft" | "legacy";

const TOOLS = ["/usr/sbin/ip", "/usr/bin/nsenter", "/usr/bin/unshare", "/usr/bin/mount", "/usr/bin/umount", BUSYBOX];
const backendTools = (backend: IptablesBackend) =>
  ["iptables", "ip6tables", "iptables", "ip6tables"].map((t, i) => `/usr/sbin/${t}-${backend}${i >= 2 ? "-save" : ""}`);

/**
 * Why namespaced board tests cannot run here, or null when they can: they need root (CI runs as root) and the
 * Debian packages iproute2, util-linux, busybox-static and iptables (both backends), which `.ci/run` installs.
 */
export function boardNamespaceSkipReason(backend: IptablesBackend): string | null {
  if (process.platform !== "linux") return "namespaced board tests need Linux";
  if (process.getuid?.() !== 0) return "namespaced board tests need root (ip netns, unshare --mount, iptables); CI runs them as root";
  const missing = [...TOOLS, ...backendTools(backend)].filter((tool) => !existsSync(tool));
  if (missing.length > 0) return `missing ${missing.join(", ")} (apt-get install iproute2 util-linux busybox-static iptables; .ci/run does it)`;
  const probe = `hwprobe${process.pid}`;
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "pipe" });
    execFileSync("ip", ["netns", "del", probe], { stdio: "pipe" });
  } catch (error) {
    return `this container cannot create network namespaces: ${String((error as { stderr?: unknown }).stderr ?? error).trim()}`;
  }
  return null;
}

export interface ProbeTarget {
  name: string;
  kind: "tcp" | "udp";
  host: string;
  port: number;
}

/** What a connect attempt from inside the board saw: a TCP handshake or a UDP reply, a refusal, or nothing. */
export type ProbeResult = "answered" | "refused" | "silent";

export interface BoardNamespace {
  dir: string;
  planeIp: string;
  /**
   * Publishes the plane's Unix sockets (test/support/fake-plane.ts `expose`) as TCP listeners on planeIp inside
   * the plane namespace (ports chosen by the kernel); returns the URLs the board uses.
   */
  exposePlane(sockets: { http: string; mqtt: string }): Promise<{ httpUrl: string; mqttUrl: string }>;
  addresses: { pool: string; other: string; other6: string; resolver: string; rogueResolver: string };
  /** Runs a program inside the board's network and mount namespaces; returns stdout (throws on non-zero exit). */
  run(command: string, args: readonly string[], env?: Record<string, string>): string;
  /** Starts a long-running program inside the board's network and mount namespaces (stdout/stderr piped). */
  spawn(command: string, args: readonly string[], env?: Record<string, string>): ChildProcess;
  /** Same, without throwing: exit status and output. */
  tryRun(command: string, args: readonly string[]): { status: number; stdout: string; stderr: string };
  /** Connect attempts from inside the board, all at once; `silentAfterMs` is how long "no answer" waits. */
  probe(targets: readonly ProbeTarget[], silentAfterMs?: number): Promise<Record<string, ProbeResult>>;
  destroy(): Promise<void>;
}

/** Listeners of the lan namespace: TCP accept-and-close, UDP echo. Prints "ready" once every socket is bound. */
const LAN_SERVICES = `
const net = require("node:net"), dgram = require("node:dgram");
const spec = JSON.parse(process.argv[1]);
let pending = spec.length;
const ready = () => { if (--pending === 0) console.log("ready"); };
for (const s of spec) {
  if (s.kind === "tcp") net.createServer((c) => c.end()).listen(s.port, s.host, ready);
  else { const u = dgram.createSocket(s.host.includes(":") ? "udp6" : "udp4"); u.on("message", (m, r) => u.send(m, r.port, r.address)); u.bind(s.port, s.host, ready); }
}`;

/** TCP on planeIp (port 0) -> the plane's Unix sockets; prints {"http": port, "mqtt": port} once listening. */
const FORWARDER = `
const net = require("node:net");
const [host, sockets] = JSON.parse(process.argv[1]);
const ports = {};
const names = Object.keys(sockets);
for (const name of names) {
  const server = net.createServer((inbound) => {
    const outbound = net.createConnection(sockets[name]);
    inbound.pipe(outbound).pipe(inbound);
    const close = () => { inbound.destroy(); outbound.destroy(); };
    inbound.on("error", close); outbound.on("error", close); inbound.on("close", close); outbound.on("close", close);
  });
  server.listen(0, host, () => {
    ports[name] = server.address().port;
    if (Object.keys(ports).length === names.length) console.log(JSON.stringify(ports));
  });
}`;

const PROBE = `
const net = require("node:net"), dgram = require("node:dgram");
const [targets, wait] = JSON.parse(process.argv[1]);
const one = (t) => new Promise((done) => {
  const timer = setTimeout(() => { done("silent"); try { s.destroy ? s.destroy() : s.close(); } catch {} }, wait);
  let s;
  if (t.kind === "tcp") {
    s = net.connect({ host: t.host, port: t.port });
    s.on("connect", () => { clearTimeout(timer); s.destroy(); done("answered"); });
    s.on("error", (e) => { clearTimeout(timer); done(e.code === "ECONNREFUSED" ? "refused" : "silent"); });
  } else {
    s = dgram.createSocket(t.host.includes(":") ? "udp6" : "udp4");
    s.on("message", () => { clearTimeout(timer); s.close(); done("answered"); });
    s.on("error", () => { clearTimeout(timer); try { s.close(); } catch {} done("silent"); });
    s.send(Buffer.from("probe"), t.port, t.host);
  }
});
Promise.all(targets.map(one)).then((r) => console.log(JSON.stringify(Object.fromEntries(targets.map((t, i) => [t.name, r[i]])))));`;

function sh(command: string, args: readonly string[]): string {
  return execFileSync(command, [...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
}

/** Creates the three-namespace topology and the lan listeners. Call destroy() in afterAll. */
export async function createBoardNamespace(): Promise<BoardNamespace> {
  const id = randomBytes(3).toString("hex");
  const [a, b] = [randomInt(16, 250), randomInt(0, 250)];
  const board = `hwb-${id}`;
  const lan = `hwl-${id}`;
  const planeNs = `hwc-${id}`;
  const dir = tempDir("board-ns").path;
  const nsDir = join(dir, "ns");
  const mountNs = join(nsDir, "mnt");
  const planeIp = `10.${a}.${b}.1`;
  const addresses = { pool: `10.${a}.${b}.140`, other: `10.${a}.${b}.141`, other6: `fd00:${a}:${b}::141`, resolver: `10.${a}.${b}.153`, rogueResolver: `10.${a}.${b}.154` };
  const undo: (() => void)[] = [];
  let services: ChildProcess | null = null;
  let forwarder: ChildProcess | null = null;
  const destroy = async () => {
    services?.kill("SIGKILL");
    forwarder?.kill("SIGKILL");
    for (const step of undo.splice(0).reverse()) {
      try {
        step();
      } catch {
        // best effort: the rest must still go
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const inNs = (ns: string, ...args: string[]) => sh("ip", ["-n", ns, ...args]);
    sh("ip", ["netns", "add", board]);
    undo.push(() => sh("ip", ["netns", "del", board]));
    sh("ip", ["netns", "add", lan]);
    undo.push(() => sh("ip", ["netns", "del", lan]));
    sh("ip", ["netns", "add", planeNs]);
    undo.push(() => sh("ip", ["netns", "del", planeNs]));
    // plane link: plane namespace <-> board (made inside the plane namespace: the host never holds either end)
    inNs(planeNs, "link", "add", `hwh${id}`, "type", "veth", "peer", "name", `hwp${id}`, "netns", board);
    inNs(planeNs, "addr", "add", `${planeIp}/30`, "dev", `hwh${id}`);
    inNs(planeNs, "link", "set", `hwh${id}`, "up");
    inNs(planeNs, "link", "set", "lo", "up");
    inNs(board, "addr", "add", `10.${a}.${b}.2/30`, "dev", `hwp${id}`);
    inNs(board, "link", "set", `hwp${id}`, "up");
    inNs(board, "link", "set", "lo", "up");
    // lan link: board <-> lan
    inNs(board, "link", "add", `hwo${id}`, "type", "veth", "peer", "name", `hwn${id}`, "netns", lan);
    inNs(board, "addr", "add", `10.${a}.${b}.130/25`, "dev", `hwo${id}`);
    inNs(board, "addr", "add", `fd00:${a}:${b}::2/64`, "dev", `hwo${id}`, "nodad");
    inNs(board, "link", "set", `hwo${id}`, "up");
    for (const ip of [addresses.pool, addresses.other, addresses.resolver, addresses.rogueResolver]) inNs(lan, "addr", "add", `${ip}/25`, "dev", `hwn${id}`);
    inNs(lan, "addr", "add", `${addresses.other6}/64`, "dev", `hwn${id}`, "nodad");
    inNs(lan, "link", "set", `hwn${id}`, "up");
    inNs(lan, "link", "set", "lo", "up");

    // The board's persistent mount namespace: the nsfs file must live on a private mount.
    mkdirSync(nsDir);
    sh("mount", ["--bind", nsDir, nsDir]);
    undo.push(() => sh("umount", ["-l", nsDir]));
    sh("mount", ["--make-private", nsDir]);
    writeFileSync(mountNs, "");
    sh("unshare", [`--mount=${mountNs}`, "--propagation", "private", "true"]);
    undo.push(() => sh("umount", [mountNs]));

    const spec = [
      { kind: "tcp", host: addresses.pool, port: 3333 },
      { kind: "tcp", host: addresses.other, port: 80 },
      { kind: "tcp", host: addresses.other6, port: 80 },
      { kind: "udp", host: addresses.resolver, port: 53 },
      { kind: "udp", host: addresses.rogueResolver, port: 53 },
    ];
    const child = spawn("ip", ["netns", "exec", lan, process.execPath, "-e", LAN_SERVICES, JSON.stringify(spec)], { stdio: ["ignore", "pipe", "pipe"] });
    services = child;
    await new Promise<void>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("ready")) resolve();
      });
      child.on("exit", (code) => reject(new Error(`lan services exited ${code}`)));
    });
  } catch (error) {
    await destroy();
    throw error;
  }

  const enter = [`--mount=${mountNs}`, `--net=/run/netns/${board}`, "--"];
  const exposePlane = (sockets: { http: string; mqtt: string }) =>
    new Promise<{ httpUrl: string; mqttUrl: string }>((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", planeNs, process.execPath, "-e", FORWARDER, JSON.stringify([planeIp, sockets])], { stdio: ["ignore", "pipe", "pipe"] });
      forwarder = child;
      let out = "";
      let err = "";
      child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (!out.includes("\n")) return;
        const ports = JSON.parse(out) as { http: number; mqtt: number };
        resolve({ httpUrl: `http://${planeIp}:${ports.http}`, mqttUrl: `mqtt://${planeIp}:${ports.mqtt}` });
      });
      child.on("exit", (code) => reject(new Error(`plane forwarder exited ${code}: ${err}`)));
    });

  return {
    dir,
    planeIp,
    exposePlane,
    addresses,
    run: (command, args, env) =>
      execFileSync("nsenter", [...enter, command, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000, env: { ...process.env, ...env } }),
    spawn: (command, args, env) => spawn("nsenter", [...enter, command, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } }),
    tryRun: (command, args) => {
      try {
        return { status: 0, stdout: execFileSync("nsenter", [...enter, command, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 }), stderr: "" };
      } catch (error) {
        const e = error as { status?: number; stdout?: string; stderr?: string };
        return { status: e.status ?? 1, stdout: String(e.stdout ?? ""), stderr: String(e.stderr ?? "") };
      }
    },
    probe: (targets, silentAfterMs = 1_500) =>
      new Promise((resolve, reject) => {
        const child = spawn("nsenter", [...enter, process.execPath, "-e", PROBE, JSON.stringify([targets, silentAfterMs])], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
        child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, ProbeResult>) : reject(new Error(`probe exited ${code}: ${err}`))));
      }),
    destroy,
  };
}
