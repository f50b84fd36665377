/**
 * A simulated Antminer-class board on a directory tree, for tests and demos.
 *   <root>/run/miner.state            "running" | "stopped"
 *   <root>/run/network-policy.json    {"mode":"open"} | {"mode":"restricted","allow":[hosts]}
 *   <root>/www/upgrade.cgi            the vendor upgrade path; renamed to upgrade.cgi.disabled (mode 0644)
 *                                     while quarantined
 * Quarantine writes the three in an order that is safe to crash between: stop mining first (the costly
 * harm is hashing for an attacker), then the network, then the upgrade path; each step is idempotent.
 *
 * A/B slots (when created with `slots: true`; see SimulatedSlots below):
 *   <root>/slots/a/firmware/, <root>/slots/b/firmware/   the two firmware slots
 *   <root>/boot/active                                    "a" | "b": the slot the board boots
 *   <root>/boot/trial                                     present while the active slot is on trial; holds the fallback
 * The device path `/firmware` resolves to the active slot's firmware, so attestation measures what runs.
 */
import { accessSync, chmodSync, constants as fsConstants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { jsonStateFile, writeFileAtomicSync } from "../../../shared/fs/index.js";
import type { MinerControl } from "./types.js";
import { extractFirmwareImage } from "../update/image.js";
import { checkDevicePath, PlatformError, resolveUnderRoot } from "./paths.js";
import type { Platform, PlatformDescription, QuarantineOptions, SlotName, SlotStatus, UpdateSlots } from "./types.js";

export { PlatformError } from "./paths.js";

const networkPolicySchema = z.union([z.strictObject({ mode: z.literal("open") }), z.strictObject({ mode: z.literal("restricted"), allow: z.array(z.string()) })]);
/** The simulated firewall: open, or restricted to the control plane's hosts (run/network-policy.json). */
export type NetworkPolicy = z.infer<typeof networkPolicySchema>;

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
  readonly slots: SimulatedSlots;
  /** Set by disableVendorUpgrade (enforcing mode): release() then leaves the upgrade path disabled. */
  private vendorUpgradeLocked = false;

  constructor(root: string) {
    this.root = resolve(root);
    this.slots = new SimulatedSlots(this.root);
  }

  resolve(devicePath: string): string {
    checkDevicePath(devicePath);
    if (devicePath === "/firmware" || devicePath.startsWith("/firmware/")) {
      // HW-UPD-4: on an A/B board /firmware is the running slot's firmware.
      const active = this.slots.activeSlotSync();
      if (active) return resolveUnderRoot(join(this.root, "slots", active), devicePath);
    }
    return resolveUnderRoot(this.root, devicePath);
  }

  private path(rel: string): string {
    return join(this.root, rel);
  }

  async disableVendorUpgrade(): Promise<void> {
    this.vendorUpgradeLocked = true;
    this.disableUpgradeCgi();
  }

  private disableUpgradeCgi(): void {
    const cgi = this.path("www/upgrade.cgi");
    const disabled = this.path("www/upgrade.cgi.disabled");
    if (existsSync(cgi)) {
      chmodSync(cgi, 0o644);
      renameSync(cgi, disabled);
    }
  }

  /** True while the vendor upgrade CGI is disabled (renamed away). */
  vendorUpgradeDisabled(): boolean {
    return !existsSync(this.path("www/upgrade.cgi"));
  }

  async quarantine(opts: QuarantineOptions): Promise<void> {
    writeFileAtomicSync(this.path("run/miner.state"), "stopped\n", 0o644);
    const allow = [...new Set(opts.controlPlaneHosts)].sort();
    const policy: NetworkPolicy = { mode: "restricted", allow };
    this.networkPolicyFile().save(policy);
    this.disableUpgradeCgi();
  }

  async release(): Promise<void> {
    const disabled = this.path("www/upgrade.cgi.disabled");
    const cgi = this.path("www/upgrade.cgi");
    // HW-UPD-6: in enforcing mode the vendor upgrade path stays disabled after a release.
    if (!this.vendorUpgradeLocked && existsSync(disabled)) {
      renameSync(disabled, cgi);
      chmodSync(cgi, 0o755);
    }
    this.networkPolicyFile().save({ mode: "open" });
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

  private networkPolicyFile() {
    return jsonStateFile(this.path("run/network-policy.json"), networkPolicySchema, { mode: 0o644 });
  }

  networkPolicy(): NetworkPolicy {
    return this.networkPolicyFile().loadHint() ?? { mode: "open" };
  }

  describe(): PlatformDescription {
    const active = this.slots.activeSlotSync();
    return { kind: "simulated", root: this.root, miner: this.minerState(), network: this.networkPolicy().mode, ...(active ? { activeSlot: active } : {}) };
  }
}

const other = (slot: SlotName): SlotName => (slot === "a" ? "b" : "a");

/**
 * The simulated board's A/B slots. Every write is atomic (temp + rename) and ordered so that a crash at any
 * point leaves `boot/active` naming a complete slot:
 *  - writeInactive extracts into `slots/<x>.partial` and renames it over `slots/<x>` (x is never the active slot);
 *  - bootTrial writes `boot/trial` (the fallback) BEFORE switching `boot/active`;
 *  - rollback switches `boot/active` back BEFORE removing `boot/trial`; commit only removes `boot/trial`.
 * Health check: the slot has an executable `firmware/bmminer`, and `firmware/etc/selftest` is absent or says
 * "pass" (a test image can carry "fail" to exercise rollback).
 */
export class SimulatedSlots implements UpdateSlots {
  constructor(private readonly root: string) {}

  private path(...parts: string[]): string {
    return join(this.root, ...parts);
  }

  /** The active slot, or null on a board without slots (no `boot/active`). */
  activeSlotSync(): SlotName | null {
    let text: string;
    try {
      text = readFileSync(this.path("boot/active"), "utf8").trim();
    } catch {
      return null;
    }
    if (text !== "a" && text !== "b") throw new PlatformError(`boot/active holds ${JSON.stringify(text.slice(0, 20))}, not a slot name`);
    return text;
  }

  async status(): Promise<SlotStatus> {
    const active = this.activeSlotSync();
    if (!active) throw new PlatformError(`board at ${this.root} has no A/B slots (boot/active missing)`);
    let fallback: SlotName | null = null;
    try {
      const text = readFileSync(this.path("boot/trial"), "utf8").trim();
      fallback = text === "a" || text === "b" ? text : null;
      if (fallback === null) throw new PlatformError(`boot/trial holds ${JSON.stringify(text.slice(0, 20))}, not a slot name`);
    } catch (error) {
      if (error instanceof PlatformError) throw error;
    }
    return { active, fallback };
  }

  async writeInactive(imageFile: string, imageBytes: number): Promise<SlotName> {
    const { active, fallback } = await this.status();
    // HW-UPD-4: never the running slot; and the fallback of a trial is the only known-good one.
    if (fallback !== null) throw new PlatformError(`slot ${active} is on trial; commit or roll back before writing slot ${fallback}`);
    const slot = other(active);
    const partial = this.path("slots", `${slot}.partial`);
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true, mode: 0o755 });
    extractFirmwareImage(imageFile, imageBytes, join(partial, "firmware"));
    rmSync(this.path("slots", slot), { recursive: true, force: true });
    renameSync(partial, this.path("slots", slot));
    return slot;
  }

  async bootTrial(slot: SlotName): Promise<void> {
    const { active } = await this.status();
    if (active === slot) return; // already running it (on trial or committed)
    if (!existsSync(this.path("slots", slot, "firmware"))) throw new PlatformError(`slot ${slot} holds no firmware`);
    writeFileAtomicSync(this.path("boot/trial"), `${active}\n`, 0o644);
    writeFileAtomicSync(this.path("boot/active"), `${slot}\n`, 0o644);
  }

  async healthCheck(): Promise<{ healthy: boolean; reason?: string }> {
    const { active } = await this.status();
    const firmware = this.path("slots", active, "firmware");
    try {
      const bmminer = join(firmware, "bmminer");
      if (!statSync(bmminer).isFile()) return { healthy: false, reason: `slot ${active}: firmware/bmminer is not a file` };
      accessSync(bmminer, fsConstants.X_OK);
    } catch {
      return { healthy: false, reason: `slot ${active}: firmware/bmminer missing or not executable` };
    }
    let selftest = "pass";
    try {
      selftest = readFileSync(join(firmware, "etc/selftest"), "utf8").trim();
    } catch {
      // no self-test marker: nothing more to check
    }
    if (selftest !== "pass") return { healthy: false, reason: `slot ${active}: self-test says ${JSON.stringify(selftest.slice(0, 100))}` };
    return { healthy: true };
  }

  async commit(): Promise<void> {
    await this.status();
    try {
      unlinkSync(this.path("boot/trial"));
    } catch {
      // already committed
    }
  }

  async rollback(): Promise<void> {
    const { fallback } = await this.status();
    if (fallback === null) return;
    writeFileAtomicSync(this.path("boot/active"), `${fallback}\n`, 0o644);
    unlinkSync(this.path("boot/trial"));
  }
}

/** The firmware files a simulated board ships for `model`/`version` (paths relative to `firmware/`). */
export function simulatedFirmwareFiles(model: string, version: string): Record<string, string | Buffer> {
  return {
    bmminer: `#!/bin/sh\n# ${model} bmminer ${version}\nexec /firmware/lib/cgminer-core "$@"\n`,
    "lib/libcgminer.so": Buffer.from(`\x7fELF simulated libcgminer for ${model} ${version}\n`.repeat(64)),
    "etc/version": `${model} ${version}\n`,
  };
}

export interface SimulatedBoardOptions {
  model: string;
  firmwareVersion?: string;
  /** Size of the fake `/dev/mtd2` partition image in bytes (default 256 KiB). */
  partitionBytes?: number;
  /** A/B layout (`slots/a|b/firmware`, `boot/active`) instead of a single `firmware/` (default false). */
  slots?: boolean;
}

/** The device paths a simulated board has, for configs and reference values. */
export const SIMULATED_MEASURE_PATHS = ["/firmware", "/config/cgminer.conf", "/dev/mtd2"] as const;

/** Writes a fresh simulated board tree under `root` (deterministic content per model/version). */
export function createSimulatedBoard(root: string, opts: SimulatedBoardOptions): SimulatedBoard {
  const version = opts.firmwareVersion ?? "1.0.0";
  const firmwareDir = opts.slots ? "slots/a/firmware" : "firmware";
  const files: Record<string, string | Buffer> = {
    ...Object.fromEntries(Object.entries(simulatedFirmwareFiles(opts.model, version)).map(([rel, content]) => [`${firmwareDir}/${rel}`, content])),
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
  chmodSync(join(root, firmwareDir, "bmminer"), 0o755);
  if (opts.slots) {
    mkdirSync(join(root, "slots/b/firmware"), { recursive: true });
    mkdirSync(join(root, "boot"), { recursive: true });
    writeFileSync(join(root, "boot/active"), "a\n");
  }
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
