/**
 * A simulated miner for tests and demos (a directory tree plus a fake
 * cgminer API): a TCP server that answers in cgminer's exact bytes (cgminer-format.ts: JSON and plain
 * `command|parameter` requests, strings escaped only as cgminer escapes them, raw control and non-UTF-8 bytes,
 * NUL terminator, joined `a+b` commands) over the pools of the simulated board's config file, read as cgminer's
 * parse_config reads it, and simulated `/proc/net/tcp{,6}` and
 * `/etc/hosts` files under the board root that tests edit to stage attacks.
 *
 * Board files it reads (device paths under the board root):
 *   /config/bmminer.conf or /config/cgminer.conf  pools loaded at start and after every restart
 *   /run/miner.state        "stopped" -> connections are dropped without an answer (the miner process is down)
 *   /run/miner.generation   changed by SimulatedBoard.miner.restart(): reload the config (a restarted bmminer)
 *   /run/miner-api.fault    optional: malformed | oversized | wrong-shape | hang (stage a misbehaving miner)
 *   /run/miner-stop.fault   optional: "ignore-stop" -> the miner keeps answering and hashing although
 *                           miner.state says stopped (stage a quarantine whose stop failed: a trojaned init
 *                           script, a second miner process)
 *   /run/miner-telemetry.json  optional (SimTelemetry): what `summary` and `stats` report and which pool is active,
 *                           to stage the farm-alert attacks (HW-ALERT-1): a kill switch (`hashrateGhs: 0`),
 *                           stopped fans (`fanRpm`) with temperatures climbing (`temperatureClimbCPerMin`, from the
 *                           file's modification time), a hashrate drop, a time-sliced dev fee (`devFee`)
 * Live pool changes (addpool/switchpool/removepool) stay in memory, like cgminer's, until a restart.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { readMinerPoolUrl } from "../../../shared/pools/index.js";
import { ipv6Groups } from "../../../shared/net/index.js";
import { parseMinerConfig } from "../guards/pools.js";
import { cgAnswer, cgAnswerBody, cgEscape, cgJoined, cgPoolUrl, parseCgRequest, splitCgParameter, type CgField, type CgRequest, type CgSection, type CgStatus } from "./cgminer-format.js";

export type SimMinerFault = "none" | "malformed" | "oversized" | "wrong-shape" | "hang";

/** The telemetry knob file (`/run/miner-telemetry.json`); every field optional, absent = the healthy default. */
export interface SimTelemetry {
  /** Reported as "GHS 5s" and "GHS av" (default 13512.34 / 13500.12). */
  hashrateGhs?: number;
  /** fan1..fanN with fan_num = N (default 5400, 5460, 5520, 5580); 0 = a stopped fan. */
  fanRpm?: number[];
  /** Board temperatures temp1..tempN (default 60, 61, 62); the chips (temp2_1..N) report 15 C more. */
  temperaturesC?: number[];
  /** Every temperature rises this many degrees C per minute since the file was written (cooling disabled). */
  temperatureClimbCPerMin?: number;
  /**
   * A time-sliced dev fee: every `periodMs` (on the miner's clock) the miner mines `url` for `sliceMs`, and its
   * pools answer shows that pool (appended when not configured) as the active one.
   */
  devFee?: { url: string; user?: string; periodMs: number; sliceMs: number };
}

interface SimPool {
  url: string;
  user: string;
  pass: string;
  priority: number;
  enabled: boolean;
}

export interface SimMinerOptions {
  /** Board root directory (created by createSimulatedBoard). */
  root: string;
  host?: string;
  port?: number;
  /** Device path of the miner config; default: /config/bmminer.conf if present, else /config/cgminer.conf. */
  configPath?: string;
  now?: () => number;
}

export const SIM_MINER_FILES = {
  tcp: "proc/net/tcp",
  tcp6: "proc/net/tcp6",
  hosts: "etc/hosts",
  state: "run/miner.state",
  generation: "run/miner.generation",
  fault: "run/miner-api.fault",
  stopFault: "run/miner-stop.fault",
  telemetry: "run/miner-telemetry.json",
} as const;

const HEALTHY = { hashrateGhs: 13512.34, hashrateAvgGhs: 13500.12, fanRpm: [5400, 5460, 5520, 5580], temperaturesC: [60, 61, 62] };

/** Writes the telemetry knob file (tests stage a farm-alert attack this way; `{}` is healthy again). */
export function writeSimulatedTelemetry(root: string, telemetry: SimTelemetry): void {
  writeFileSync(join(root, SIM_MINER_FILES.telemetry), `${JSON.stringify(telemetry)}\n`);
}

export class SimMiner {
  private server: Server | null = null;
  private pools: SimPool[] = [];
  private loadedGeneration: string | null = null;
  private readonly startedAtMs: number;
  private readonly now: () => number;
  private readonly sockets = new Set<Socket>();
  /** Overrides the fault file when set (in-process tests). */
  fault: SimMinerFault | null = null;
  /** Overrides the stop-fault file when set (in-process tests): true keeps mining through a stop. */
  ignoreStop: boolean | null = null;
  /** Commands answered, in order (for tests). */
  readonly log: string[] = [];
  port = 0;

  constructor(private readonly opts: SimMinerOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAtMs = this.now();
    prepareSimulatedBoardFiles(opts.root);
    this.reloadIfRestarted();
  }

  async start(): Promise<number> {
    // Half-open: a client that sends and shuts down its side still gets the answer (and a "hang" stays silent).
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    await new Promise<void>((resolve) => this.server!.listen(this.opts.port ?? 0, this.opts.host ?? "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = null;
  }

  /** The live pool list (what `pools` answers). */
  livePools(): { url: string; user: string; active: boolean }[] {
    this.reloadIfRestarted();
    const active = this.activeIndex();
    return this.pools.map((p, i) => ({ url: p.url, user: p.user, active: i === active }));
  }

  private file(rel: string): string {
    return join(this.opts.root, rel);
  }

  private configFile(): string {
    if (this.opts.configPath) return this.file(`.${this.opts.configPath}`);
    const bmminer = this.file("config/bmminer.conf");
    return existsSync(bmminer) ? bmminer : this.file("config/cgminer.conf");
  }

  private readOptional(rel: string): string {
    try {
      return readFileSync(this.file(rel), "utf8").trim();
    } catch {
      return "";
    }
  }

  /** The stop-fault knob: a miner that does not stop when the board stops it. */
  private ignoresStop(): boolean {
    return this.ignoreStop ?? this.readOptional(SIM_MINER_FILES.stopFault) === "ignore-stop";
  }

  /** The telemetry knob file, or {} (healthy) when absent or unreadable. */
  private telemetry(): SimTelemetry & { writtenAtMs: number } {
    const file = this.file(SIM_MINER_FILES.telemetry);
    try {
      const parsed = JSON.parse(readFileSync(file, "utf8")) as SimTelemetry;
      return { ...(parsed && typeof parsed === "object" ? parsed : {}), writtenAtMs: statSync(file).mtimeMs };
    } catch {
      return { writtenAtMs: this.now() };
    }
  }

  /** What the miner reports now: hashrate, fans, temperatures (climbing if staged). */
  private readings() {
    const t = this.telemetry();
    const climb = (t.temperatureClimbCPerMin ?? 0) * Math.max(0, this.now() - t.writtenAtMs) / 60_000;
    return {
      hashrateGhs: t.hashrateGhs ?? HEALTHY.hashrateGhs,
      hashrateAvgGhs: t.hashrateGhs ?? HEALTHY.hashrateAvgGhs,
      fanRpm: t.fanRpm ?? HEALTHY.fanRpm,
      temperaturesC: (t.temperaturesC ?? HEALTHY.temperaturesC).map((c) => Math.round((c + climb) * 10) / 10),
    };
  }

  /** The dev-fee pool while its time slice runs, else null. */
  private devFeeNow(): { url: string; user: string } | null {
    const fee = this.telemetry().devFee;
    if (!fee || !(fee.periodMs > 0) || !(fee.sliceMs > 0)) return null;
    return this.now() % fee.periodMs < fee.sliceMs ? { url: fee.url, user: fee.user ?? "devfee" } : null;
  }

  private reloadIfRestarted(): void {
    const generation = this.readOptional(SIM_MINER_FILES.generation);
    if (generation === this.loadedGeneration) return;
    this.loadedGeneration = generation;
    let text = "";
    try {
      // Binary string: one character per byte, so the config's bytes reach the answers unchanged.
      text = readFileSync(this.configFile(), "latin1");
    } catch {
      text = ""; // a miner with an unreadable config starts without pools
    }
    // The pools cgminer's parse_config builds (pools array, top-level url/user/pass, arrays, quota, userpass).
    const config = parseMinerConfig(this.configFile(), text);
    this.pools = (config.ok ? config.pools : []).map((p, i) => ({ url: cgPoolUrl(p.url), user: p.user, pass: p.pass, priority: i, enabled: true }));
  }

  private activeIndex(): number {
    let best = -1;
    this.pools.forEach((p, i) => {
      if (p.enabled && (best < 0 || p.priority < this.pools[best]!.priority)) best = i;
    });
    return best;
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    if (this.readOptional(SIM_MINER_FILES.state) === "stopped" && !this.ignoresStop()) {
      socket.destroy();
      return;
    }
    let text = "";
    let answered = false;
    const tryAnswer = (final: boolean) => {
      if (answered) return;
      const request = parseCgRequest(text);
      // A JSON request is answered once it parses; a plain one when the client ends its side (or sends a NUL).
      if (!final && (request === null || (!request.isJson && !text.includes("\0")))) return;
      answered = true;
      this.answer(socket, request ?? { command: "", parameter: "", isJson: text.trimStart().startsWith("{") });
    };
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (text.length > 64 * 1024) socket.destroy();
      else tryAnswer(false);
    });
    socket.on("end", () => tryAnswer(true));
  }

  private answer(socket: Socket, request: CgRequest): void {
    this.reloadIfRestarted();
    const { command, parameter, isJson } = request;
    this.log.push(parameter ? `${command}|${parameter}` : command);
    const fault = this.fault ?? ((this.readOptional(SIM_MINER_FILES.fault) || "none") as SimMinerFault);
    const commands = isJson && command.includes("+") ? command.split("+") : [command];
    const isQuery = commands.every((c) => QUERY_COMMANDS.has(c));
    if (isQuery && fault === "hang") return; // say nothing; the client's timeout must fire
    if (isQuery && fault === "oversized") {
      const blob = `{"STATUS":[{"STATUS":"S","Code":7,"Msg":"x"}],"POOLS":[${`{"POOL":0,"URL":"${"x".repeat(1000)}"},`.repeat(2048)}{}]}`;
      socket.end(`${blob}\0`);
      return;
    }
    if (isQuery && fault === "malformed") {
      socket.end(`{"STATUS":[{"STATUS":"S","Code":7,"Msg":"${command}"}],"POOLS":[{"POOL":0,"URL":\0`);
      return;
    }
    if (isQuery && fault === "wrong-shape") {
      socket.end(`{"STATUS":[{"STATUS":"S","When":1,"Code":7,"Msg":"${command}","Description":"x"}],"SUMMARY":"not a list","POOLS":"not a list","STATS":42,"DEVS":"x","CONFIG":[],"id":1}\0`);
      return;
    }
    if (commands.length > 1) {
      // api.c: joined commands must all be joinable (no privileged ones) or the whole request is refused.
      if (!isQuery) {
        socket.end(cgAnswer(this.status("E", 45, `Invalid join command '${command}'`), null, true));
        return;
      }
      socket.end(cgJoined(commands.map((c) => ({ command: c, body: this.respondBody(c, "", true) }))));
      return;
    }
    socket.end(Buffer.from(`${this.respondBody(command, parameter, isJson)}\0`, "latin1"));
  }

  private status(status: "S" | "E", code: number, msg: string): CgStatus {
    return { status, when: Math.floor(this.now() / 1000), code, msg, description: "bmminer 1.0.0 (simulated)" };
  }

  /** One answer in cgminer's bytes (binary string, no NUL). */
  private respondBody(command: string, parameter: string, isJson: boolean): string {
    const elapsed = Math.max(0, Math.floor((this.now() - this.startedAtMs) / 1000));
    const readings = this.readings();
    const fee = this.devFeeNow();
    const feeIndex = fee ? this.pools.findIndex((p) => p.url === cgPoolUrl(fee.url)) : -1;
    // During a dev-fee slice the fee pool is the active one (shown as an extra pool when not configured).
    const shown: SimPool[] = fee && feeIndex < 0 ? [...this.pools, { url: cgPoolUrl(fee.url), user: fee.user, pass: "x", priority: this.pools.length, enabled: true }] : this.pools;
    const active = fee ? (feeIndex < 0 ? shown.length - 1 : feeIndex) : this.activeIndex();
    const index = /^\d+$/.test(parameter) ? Number(parameter) : NaN;
    const validIndex = Number.isInteger(index) && index >= 0 && index < this.pools.length;
    const say = (status: CgStatus, section: CgSection | null = null) => cgAnswerBody(status, section, isJson);
    const invalidPool = () => say(this.status("E", 26, `Invalid pool id ${parameter} - range is 0 - ${this.pools.length - 1}`));
    switch (command) {
      case "summary":
        return say(this.status("S", 11, "Summary"), {
          name: "SUMMARY",
          items: [
            [
              ["Elapsed", elapsed],
              ["GHS 5s", readings.hashrateGhs.toFixed(2)],
              ["GHS av", readings.hashrateAvgGhs, "float"],
              ["Found Blocks", 0],
              ["Getworks", 0],
              ["Accepted", 10 + elapsed],
              ["Rejected", 1],
              ["Hardware Errors", 0],
              ["Utility", 1.2, "float"],
            ],
          ],
        });
      case "pools":
        if (shown.length === 0) return say(this.status("E", 8, "No pools"));
        return say(this.status("S", 7, `${shown.length} Pool(s)`), {
          name: "POOLS",
          items: shown.map((p, i): CgField[] => [
            ["POOL", i],
            ["URL", p.url, "escape"],
            ["Status", p.enabled ? "Alive" : "Disabled"],
            ["Priority", p.priority],
            ["Quota", 1],
            ["Long Poll", "N"],
            ["Getworks", 0],
            ["Accepted", i === active ? 10 + elapsed : 0],
            ["Rejected", 0],
            ["Discarded", 0],
            ["Stale", 0],
            ["Get Failures", 0],
            ["Remote Failures", 0],
            ["User", p.user, "escape"],
            ["Last Share Time", 0],
            ["Diff1 Shares", 0],
            ["Proxy Type", ""],
            ["Proxy", ""],
            ["Difficulty Accepted", 0, "float"],
            ["Has Stratum", true],
            ["Stratum Active", i === active],
            ["Stratum URL", i === active ? safeHost(p.url) : ""],
            ["Has GBT", false],
            ["Best Share", 0],
          ]),
        });
      case "devs":
        return say(this.status("S", 9, "3 ASC(s)"), {
          name: "DEVS",
          items: [0, 1, 2].map((asc): CgField[] => [
            ["ASC", asc],
            ["Name", "BTM"],
            ["ID", asc],
            ["Enabled", "Y"],
            ["Status", "Alive"],
            ["Temperature", 62 + asc, "float"],
            ["MHS av", 4_500_000, "float"],
          ]),
        });
      case "stats":
        return say(this.status("S", 70, "CGMiner stats"), {
          name: "STATS",
          items: [
            [
              ["CGMiner", "4.9.0"],
              ["Miner", "1.0.0"],
              ["CompileTime", "simulated"],
              ["Type", "Antminer S19 (simulated)"],
            ],
            [
              ["STATS", 0],
              ["ID", "BC50"],
              ["Elapsed", elapsed],
              ["GHS 5s", readings.hashrateGhs.toFixed(2)],
              ["GHS av", readings.hashrateAvgGhs, "float"],
              ["fan_num", readings.fanRpm.length],
              ...readings.fanRpm.map((rpm, i): CgField => [`fan${i + 1}`, rpm]),
              ["temp_num", readings.temperaturesC.length],
              ...readings.temperaturesC.map((c, i): CgField => [`temp${i + 1}`, c]),
              // Chip temperatures run 15 C above their board's.
              ...readings.temperaturesC.map((c, i): CgField => [`temp2_${i + 1}`, Math.round((c + 15) * 10) / 10]),
            ],
          ],
        });
      case "config":
        return say(this.status("S", 33, "CGMiner config"), {
          name: "CONFIG",
          items: [
            [
              ["ASC Count", 3],
              ["PGA Count", 0],
              ["Pool Count", this.pools.length],
              ["Strategy", "Failover"],
              ["Log Interval", 5],
            ],
          ],
        });
      case "addpool": {
        const [url, user, pass] = splitCgParameter(parameter);
        if (!parameter || !url || user === undefined || pass === undefined) return say(this.status("E", 25, "Missing addpool details"));
        const stored = cgPoolUrl(url);
        this.pools.push({ url: stored, user, pass, priority: Math.max(-1, ...this.pools.map((p) => p.priority)) + 1, enabled: true });
        // The Msg carries the URL through escape_string (api.c addpool).
        return say(this.status("S", 55, `Added pool ${this.pools.length - 1}: '${cgEscape(stored, isJson)}'`));
      }
      case "switchpool": {
        if (!validIndex) return invalidPool();
        const chosen = this.pools[index]!;
        const old = chosen.priority;
        for (const p of this.pools) if (p.priority < old) p.priority += 1;
        chosen.priority = 0;
        chosen.enabled = true;
        return say(this.status("S", 27, `Switching to pool ${index}:'${cgEscape(chosen.url, isJson)}'`));
      }
      case "enablepool":
        if (!validIndex) return invalidPool();
        this.pools[index]!.enabled = true;
        return say(this.status("S", 47, `Enabling pool ${index}:'${cgEscape(this.pools[index]!.url, isJson)}'`));
      case "disablepool":
        if (!validIndex) return invalidPool();
        this.pools[index]!.enabled = false;
        return say(this.status("S", 48, `Disabling pool ${index}:'${cgEscape(this.pools[index]!.url, isJson)}'`));
      case "removepool": {
        if (!validIndex) return invalidPool();
        if (index === active) return say(this.status("E", 67, `Cannot remove active pool ${index}:'${cgEscape(this.pools[index]!.url, isJson)}'`));
        const [removed] = this.pools.splice(index, 1);
        return say(this.status("S", 68, `Removed pool ${index}:'${cgEscape(removed!.url, isJson)}'`));
      }
      default:
        return say(this.status("E", 14, "Invalid command"));
    }
  }
}

const QUERY_COMMANDS = new Set(["summary", "pools", "devs", "stats", "config", "version", "devdetails"]);

function safeHost(url: string): string {
  const target = readMinerPoolUrl(url);
  return target.port === null ? "" : target.host;
}

/** One socket as a line of /proc/net/tcp{,6}. */
export interface SimSocket {
  local: string; // "0.0.0.0:4028", "[::]:22", "192.168.1.20:40112"
  remote?: string; // default 0.0.0.0:0 / [::]:0
  state: "LISTEN" | "ESTABLISHED" | "SYN_SENT" | "TIME_WAIT";
}

const STATE_CODES = { ESTABLISHED: "01", SYN_SENT: "02", TIME_WAIT: "06", LISTEN: "0A" } as const;

function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, "0");
}

function splitHostPort(endpoint: string): { host: string; port: number } {
  const m = /^\[(.*)\]:(\d+)$/.exec(endpoint) ?? /^([^:]*):(\d+)$/.exec(endpoint);
  if (!m) throw new TypeError(`endpoint ${endpoint} must be host:port or [v6]:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

function hexIpv4(ip: string): string {
  const bytes = ip.split(".").map(Number);
  return bytes.reverse().map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
}

function hexIpv6(ip: string): string {
  const groups = ipv6Groups(ip);
  let out = "";
  for (let w = 0; w < 4; w++) {
    // Each 32-bit word is printed in host (little-endian) byte order.
    const bytes = [groups[w * 2]! >> 8, groups[w * 2]! & 0xff, groups[w * 2 + 1]! >> 8, groups[w * 2 + 1]! & 0xff];
    out += bytes.reverse().map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
  }
  return out;
}

/** Formats sockets as /proc/net/tcp (IPv4) or tcp6 (IPv6) text, the inverse of guards' parseProcNetTcp. */
export function formatProcNetTcp(sockets: readonly SimSocket[], family: 4 | 6): string {
  const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
  const lines = sockets.map((s, i) => {
    const local = splitHostPort(s.local);
    const remote = splitHostPort(s.remote ?? (family === 4 ? "0.0.0.0:0" : "[::]:0"));
    const addr = (host: string) => (family === 4 ? hexIpv4(host) : hexIpv6(host));
    return `${String(i).padStart(4)}: ${addr(local.host)}:${hexPort(local.port)} ${addr(remote.host)}:${hexPort(remote.port)} ${STATE_CODES[s.state]} 00000000:00000000 00:00000000 00000000     0        0 ${10000 + i} 1 0000000000000000 100 0 0 10 0\n`;
  });
  return header + lines.join("");
}

/** A clean board's sockets: the miner API, the web UI and ssh listening; nothing established outbound. */
export const CLEAN_SOCKETS: readonly SimSocket[] = [
  { local: "0.0.0.0:4028", state: "LISTEN" },
  { local: "0.0.0.0:80", state: "LISTEN" },
  { local: "0.0.0.0:22", state: "LISTEN" },
];
export const CLEAN_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/** Writes clean /proc/net/tcp, tcp6 and /etc/hosts under the board root when they are missing. */
export function prepareSimulatedBoardFiles(root: string): void {
  const files: Record<string, string> = {
    [SIM_MINER_FILES.tcp]: formatProcNetTcp(CLEAN_SOCKETS, 4),
    [SIM_MINER_FILES.tcp6]: formatProcNetTcp([], 6),
    [SIM_MINER_FILES.hosts]: CLEAN_HOSTS,
  };
  for (const [rel, content] of Object.entries(files)) {
    const target = join(root, rel);
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
  }
}

/** Replaces the simulated socket tables (tests stage a phone-home connection this way). */
export function writeSimulatedSockets(root: string, sockets: { v4?: readonly SimSocket[]; v6?: readonly SimSocket[] }): void {
  if (sockets.v4) writeFileSync(join(root, SIM_MINER_FILES.tcp), formatProcNetTcp(sockets.v4, 4));
  if (sockets.v6) writeFileSync(join(root, SIM_MINER_FILES.tcp6), formatProcNetTcp(sockets.v6, 6));
}
