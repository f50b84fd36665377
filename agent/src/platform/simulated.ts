/**
 * A simulated Antminer-class board on a directory tree, for tests and demos.
 *   <root>/run/miner.state            "running" | "stopped"
 *   <root>/run/network-policy.json    {"mode":"open"} | {"mode":"restricted","allow":[hosts]}
 *   <root>/www/upgrade.cgi            the vendor upgrade path; renamed to upgrade.cgi.disabled (mode 0644)
 *                                     while quarantined
 * Quarantine writes the three in an order that is safe to crash between: stop mining first (the costly
 * harm is hashing for an attacker), then the network, then the upgrade path; each step is idempotent.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { HashwardError } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import type { MinerControl } from "./types.js";
import type { Platform, PlatformDescription, QuarantineOptions } from "./types.js";

export class PlatformError extends HashwardError {
  override name = "PlatformError";
}

export type NetworkPolicy = { mode: "open" } | { mode: "restricted"; allow: string[] };

export class SimulatedBoard implements Platform {
  readonly root: string;
  /** The simulated miner process: restart bumps run/miner.generation, and the sim-miner reloads its config. */
  readonly miner: MinerControl = {
    restart: async () => {
      const file = join(this.root, "run/miner.generation");
      let generation = 0;
      try {
        generation = Number.parseInt(readFileSync(file, "utf8"), 10) || 0;
      } catch {
        // never restarted yet
      }
      writeFileAtomicSync(file, `${generation + 1}\n`, 0o644);
    },
  };

  constructor(root: string) {
    this.root = resolve(root);
  }

  resolve(devicePath: string): string {
    if (!devicePath.startsWith("/") || devicePath.split("/").includes("..")) {
      throw new PlatformError(`device path ${JSON.stringify(devicePath)} must be absolute without '..'`);
    }
    const hostPath = resolve(this.root, `.${devicePath}`);
    if (hostPath !== this.root && !hostPath.startsWith(this.root + sep)) {
      throw new PlatformError(`device path ${devicePath} escapes the platform root`);
    }
    return hostPath;
  }

  private path(rel: string): string {
    return join(this.root, rel);
  }

  async quarantine(opts: QuarantineOptions): Promise<void> {
    writeFileAtomicSync(this.path("run/miner.state"), "stopped\n", 0o644);
    const allow = [...new Set(opts.controlPlaneHosts)].sort();
    const policy: NetworkPolicy = { mode: "restricted", allow };
    writeFileAtomicSync(this.path("run/network-policy.json"), `${JSON.stringify(policy)}\n`, 0o644);
    const cgi = this.path("www/upgrade.cgi");
    const disabled = this.path("www/upgrade.cgi.disabled");
    if (existsSync(cgi)) {
      chmodSync(cgi, 0o644);
      renameSync(cgi, disabled);
    }
  }

  async release(): Promise<void> {
    const disabled = this.path("www/upgrade.cgi.disabled");
    const cgi = this.path("www/upgrade.cgi");
    if (existsSync(disabled)) {
      renameSync(disabled, cgi);
      chmodSync(cgi, 0o755);
    }
    writeFileAtomicSync(this.path("run/network-policy.json"), `${JSON.stringify({ mode: "open" })}\n`, 0o644);
    writeFileAtomicSync(this.path("run/miner.state"), "running\n", 0o644);
  }

  async isQuarantined(): Promise<boolean> {
    const state = this.minerState();
    const policy = this.networkPolicy();
    return state === "stopped" && policy.mode === "restricted" && !existsSync(this.path("www/upgrade.cgi"));
  }

  minerState(): "running" | "stopped" | "unknown" {
    try {
      const text = readFileSync(this.path("run/miner.state"), "utf8").trim();
      return text === "running" || text === "stopped" ? text : "unknown";
    } catch {
      return "unknown";
    }
  }

  networkPolicy(): NetworkPolicy {
    try {
      return JSON.parse(readFileSync(this.path("run/network-policy.json"), "utf8")) as NetworkPolicy;
    } catch {
      return { mode: "open" };
    }
  }

  describe(): PlatformDescription {
    return { kind: "simulated", root: this.root, miner: this.minerState(), network: this.networkPolicy().mode };
  }
}

export interface SimulatedBoardOptions {
  model: string;
  firmwareVersion?: string;
  /** Size of the fake `/dev/mtd2` partition image in bytes (default 256 KiB). */
  partitionBytes?: number;
}

/** The device paths a simulated board has, for configs and reference values. */
export const SIMULATED_MEASURE_PATHS = ["/firmware", "/config/cgminer.conf", "/dev/mtd2"] as const;

/** Writes a fresh simulated board tree under `root` (deterministic content per model/version). */
export function createSimulatedBoard(root: string, opts: SimulatedBoardOptions): SimulatedBoard {
  const version = opts.firmwareVersion ?? "1.0.0";
  const files: Record<string, string | Buffer> = {
    "firmware/bmminer": `#!/bin/sh\n# ${opts.model} bmminer ${version}\nexec /firmware/lib/cgminer-core "$@"\n`,
    "firmware/lib/libcgminer.so": Buffer.from(`\x7fELF simulated libcgminer for ${opts.model} ${version}\n`.repeat(64)),
    "firmware/etc/version": `${opts.model} ${version}\n`,
    "config/cgminer.conf": `${JSON.stringify(
      {
        pools: [{ url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", pass: "x" }],
        "api-listen": true,
        "api-allow": "W:127.0.0.1",
      },
      null,
      2,
    )}\n`,
    "www/upgrade.cgi": "#!/bin/sh\n# vendor upgrade: runs the uploaded runme.sh as root\n",
    "run/miner.state": "running\n",
    "run/network-policy.json": `${JSON.stringify({ mode: "open" })}\n`,
  };
  for (const [rel, content] of Object.entries(files)) {
    const target = join(root, rel);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
  }
  chmodSync(join(root, "firmware/bmminer"), 0o755);
  chmodSync(join(root, "www/upgrade.cgi"), 0o755);
  // A regular file standing for a flash partition; content depends only on model and version.
  const size = opts.partitionBytes ?? 256 * 1024;
  const seed = Buffer.from(`${opts.model}/${version}/`);
  const image = Buffer.alloc(size);
  for (let i = 0; i < size; i += seed.length) seed.copy(image, i);
  mkdirSync(join(root, "dev"), { recursive: true });
  writeFileSync(join(root, "dev/mtd2"), image);
  return new SimulatedBoard(root);
}
