/**
 * A/B firmware slots on a U-Boot board (HW-BOARD-2; docs/board.md "A/B updates on U-Boot"): the UpdateSlots a real Antminer-class
 * board uses. The switch goes through the U-Boot environment with libubootenv's `fw_printenv`/`fw_setenv`,
 * using the boot-count convention of RAUC and Mender (`upgrade_available`, `bootcount`, `bootlimit`,
 * `altbootcmd`); `scripts/board/hashward-boot.cmd` is the U-Boot side and tells the kernel which slot it booted
 * (`hashward.slot=a|b` on the command line). Every environment change is ONE `fw_setenv -s` write, which
 * libubootenv makes atomic on a redundant environment (two copies, the newer valid one wins), so a power cut
 * leaves the old or the new environment, never a mix.
 *
 * Order, so that a power cut at any point leaves a board that boots a complete slot:
 *  - writeInactive writes only the slot the kernel did NOT boot from (HW-UPD-4), reads it back and compares its
 *    sha256 with the image before returning; nothing points at the slot yet;
 *  - bootTrial sets hashward_slot=<new>, hashward_fallback=<running>, upgrade_available=1, bootcount=0 in one
 *    write, then reboots; U-Boot falls back by itself when the new slot never commits;
 *  - commit clears upgrade_available/bootcount (one write); rollback selects the fallback again (one write)
 *    and reboots into it.
 * Slots are block devices (eMMC/SD partitions, or files: written in place and fsynced), raw MTD partitions
 * (`flash_erase` + `nandwrite -p`, read back with `nanddump`) or UBI volumes (`ubiupdatevol`). Images are raw
 * slot images (a squashfs/ubifs/ext4 root filesystem), written as they are.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { NodeCommandExecutor, type CommandExecutor, type CommandResult } from "./antminer.js";
import { PlatformError } from "./paths.js";
import type { SlotName, SlotStatus, UpdateSlots } from "./types.js";

/** Where one slot lives. Paths are host paths (the platform resolves them under its root). */
export type SlotDevice =
  | { kind: "block"; path: string; sizeBytes?: number }
  | { kind: "mtd"; device: string }
  | { kind: "ubi"; volume: string };

/** U-Boot environment names (RAUC/Mender boot-count convention plus the slot selection of hashward-boot.cmd). */
export const UBOOT_ENV = {
  slot: "hashward_slot",
  fallback: "hashward_fallback",
  failed: "hashward_failed",
  upgradeAvailable: "upgrade_available",
  bootcount: "bootcount",
  bootlimit: "bootlimit",
} as const;

/** The kernel command-line parameter hashward-boot.cmd adds: the slot U-Boot booted. */
export const SLOT_CMDLINE_PARAM = "hashward.slot";

export interface UBootSlotsOptions {
  slots: Record<SlotName, SlotDevice>;
  /** libubootenv configuration (`fw_env.config` format), passed with -c. Default /etc/fw_env.config. */
  fwEnvConfig?: string;
  fwPrintenv?: string;
  fwSetenv?: string;
  /** Boots on trial before U-Boot falls back (1..9; hashward-boot.cmd counts with setexpr, in hex). Default 3. */
  bootlimit?: number;
  /** The kernel command line (host path). Default /proc/cmdline. */
  cmdlineFile?: string;
  /** Reboots the board. Default: runs `rebootCommand`. A test passes a U-Boot emulator's boot. */
  reboot?: () => Promise<void>;
  rebootCommand?: readonly string[];
  /** How long to wait for a requested reboot to end this process before the switch counts as failed. */
  rebootWaitMs?: number;
  /** Extra health check on the trial slot: a command that must exit 0 (e.g. the miner's init script `status`). */
  healthCommand?: readonly string[];
  executor?: CommandExecutor;
}

const other = (slot: SlotName): SlotName => (slot === "a" ? "b" : "a");
const isSlot = (value: string | undefined): value is SlotName => value === "a" || value === "b";
const CHUNK_BYTES = 1024 * 1024;

export class UBootSlots implements UpdateSlots {
  private readonly exec: CommandExecutor;
  private readonly fwEnvConfig: string;
  private readonly bootlimit: number;
  private readonly cmdlineFile: string;
  private readonly rebootWaitMs: number;

  constructor(private readonly opts: UBootSlotsOptions) {
    this.exec = opts.executor ?? new NodeCommandExecutor();
    this.fwEnvConfig = opts.fwEnvConfig ?? "/etc/fw_env.config";
    this.bootlimit = opts.bootlimit ?? 3;
    if (!Number.isInteger(this.bootlimit) || this.bootlimit < 1 || this.bootlimit > 9) throw new PlatformError(`bootlimit ${this.bootlimit} must be an integer 1..9`);
    this.cmdlineFile = opts.cmdlineFile ?? "/proc/cmdline";
    this.rebootWaitMs = opts.rebootWaitMs ?? 300_000;
  }

  /** The slot the running kernel was booted from (`hashward.slot=` on its command line). */
  running(): SlotName {
    let cmdline: string;
    try {
      cmdline = readFileSync(this.cmdlineFile, "utf8");
    } catch (error) {
      throw new PlatformError(`cannot read the kernel command line ${this.cmdlineFile}: ${(error as Error).message}`);
    }
    const value = new RegExp(`(?:^|\\s)${SLOT_CMDLINE_PARAM.replace(".", "\\.")}=(\\S*)`).exec(cmdline)?.[1];
    if (!isSlot(value)) {
      throw new PlatformError(`kernel command line has no ${SLOT_CMDLINE_PARAM}=a|b (seen ${JSON.stringify(value ?? null)}): was the board booted by scripts/board/hashward-boot.cmd?`);
    }
    return value;
  }

  /** The whole U-Boot environment as fw_printenv prints it. Throws PlatformError when it cannot be read. */
  async env(): Promise<Record<string, string>> {
    const result = await this.run(this.opts.fwPrintenv ?? "fw_printenv", ["-c", this.fwEnvConfig]);
    const env: Record<string, string> = {};
    for (const line of result.stdout.split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return env;
  }

  /** One atomic environment write: every name set (or deleted, for null) together. */
  private async setEnv(vars: Record<string, string | null>): Promise<void> {
    const lines = Object.entries(vars).map(([name, value]) => {
      if (!/^[A-Za-z0-9_]+$/.test(name) || (value !== null && /[\n\r]/.test(value))) throw new PlatformError(`bad U-Boot variable ${JSON.stringify(name)}`);
      return `${name}=${value ?? ""}`;
    });
    const dir = mkdtempSync(join(tmpdir(), "hashward-fwenv-"));
    try {
      const script = join(dir, "env.txt");
      writeFileSync(script, `${lines.join("\n")}\n`, { mode: 0o600 });
      await this.run(this.opts.fwSetenv ?? "fw_setenv", ["-c", this.fwEnvConfig, "-s", script]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * `active` is the slot the kernel booted (never the env's choice, which may be a switch not yet booted);
   * `fallback` is set only while that slot is on trial (upgrade_available=1, selected, with a valid fallback).
   * Throws PlatformError when the command line or the environment cannot be read.
   */
  async status(): Promise<SlotStatus> {
    const running = this.running();
    const env = await this.env();
    const fallback = env[UBOOT_ENV.fallback];
    const onTrial = env[UBOOT_ENV.upgradeAvailable] === "1" && env[UBOOT_ENV.slot] === running && isSlot(fallback) && fallback !== running;
    return { active: running, fallback: onTrial ? (fallback as SlotName) : null };
  }

  /**
   * Writes `imageFile` (exactly `imageBytes` bytes, a raw slot image) to the slot not running, reads it back and
   * compares sha256 (HW-BOARD-2). Throws PlatformError, with nothing pointed at the slot, when on trial, when a
   * switch is pending, when the image does not fit or does not read back identical, or when a tool fails.
   */
  async writeInactive(imageFile: string, imageBytes: number): Promise<SlotName> {
    const { active, fallback } = await this.status();
    const env = await this.env();
    // HW-UPD-4: never the running slot, and never the known-good fallback of a trial.
    if (fallback !== null) throw new PlatformError(`slot ${active} is on trial; commit or roll back before writing slot ${fallback}`);
    const selected = env[UBOOT_ENV.slot];
    if (isSlot(selected) && selected !== active) throw new PlatformError(`U-Boot will boot slot ${selected} next, not the running ${active}: reboot or roll back before writing it`);
    const size = statSync(imageFile).size;
    if (size !== imageBytes) throw new PlatformError(`image ${imageFile} is ${size} bytes, expected ${imageBytes}`);
    const slot = other(active);
    const device = this.opts.slots[slot];
    const expected = hashFile(imageFile, imageBytes);
    await this.writeDevice(device, imageFile, imageBytes);
    // HW-BOARD-2: read back what the flash holds before anything may point at it.
    const seen = await this.readBackSha256(device, imageBytes);
    if (seen !== expected) throw new PlatformError(`slot ${slot} (${describeDevice(device)}) reads back sha256 ${seen}, the image is ${expected}`);
    // A fresh image: an earlier fallback from this slot no longer says anything about it.
    if (env[UBOOT_ENV.failed] !== undefined) await this.setEnv({ [UBOOT_ENV.failed]: null });
    return slot;
  }

  /**
   * Selects `slot` on trial (one environment write) and reboots; returns at once when already running it.
   * Throws PlatformError when U-Boot already fell back from that slot (`hashward_failed`), or when the reboot did
   * not end this process within `rebootWaitMs`.
   */
  async bootTrial(slot: SlotName): Promise<void> {
    const running = this.running();
    if (running === slot) return; // booted into it: the trial is under way (or committed)
    const env = await this.env();
    if (env[UBOOT_ENV.failed] === slot) {
      throw new PlatformError(`slot ${slot} was not committed within bootlimit ${env[UBOOT_ENV.bootlimit] ?? this.bootlimit} boots; U-Boot fell back to slot ${running} (altbootcmd)`);
    }
    // One write: the switch and the trial flag together (HW-BOARD-2), then the reboot.
    await this.setEnv({
      [UBOOT_ENV.slot]: slot,
      [UBOOT_ENV.fallback]: running,
      [UBOOT_ENV.upgradeAvailable]: "1",
      [UBOOT_ENV.bootcount]: "0",
      [UBOOT_ENV.bootlimit]: String(this.bootlimit),
    });
    await this.reboot(slot);
  }

  /** Healthy when U-Boot selects the running slot and `healthCommand` (if any) exits 0. */
  async healthCheck(): Promise<{ healthy: boolean; reason?: string }> {
    const running = this.running();
    const env = await this.env();
    if (env[UBOOT_ENV.slot] !== running) return { healthy: false, reason: `running slot ${running} but U-Boot selects ${env[UBOOT_ENV.slot] ?? "none"}` };
    const command = this.opts.healthCommand;
    if (command && command.length > 0) {
      const result = await this.exec.run(command[0]!, command.slice(1));
      if (result.code !== 0) return { healthy: false, reason: `${command.join(" ")} exited ${result.code}: ${result.stderr.trim().slice(0, 200)}` };
    }
    return { healthy: true };
  }

  /** Ends the trial (upgrade_available=0, bootcount=0: one write); a no-op when not on trial. */
  async commit(): Promise<void> {
    const { fallback } = await this.status();
    if (fallback === null) return;
    await this.setEnv({ [UBOOT_ENV.upgradeAvailable]: "0", [UBOOT_ENV.bootcount]: "0", [UBOOT_ENV.fallback]: null });
  }

  /**
   * On trial: selects the fallback (one write) and reboots into it. Not on trial but a switch pending (its reboot
   * never happened): points U-Boot back at the running slot. Otherwise a no-op.
   */
  async rollback(): Promise<void> {
    const running = this.running();
    const env = await this.env();
    const { fallback } = await this.status();
    if (fallback === null) {
      // A switch written but never booted (the reboot did not happen): point U-Boot back at the running slot.
      if (env[UBOOT_ENV.slot] !== running) {
        await this.setEnv({ [UBOOT_ENV.slot]: running, [UBOOT_ENV.upgradeAvailable]: "0", [UBOOT_ENV.bootcount]: "0", [UBOOT_ENV.fallback]: null });
      }
      return;
    }
    await this.setEnv({ [UBOOT_ENV.slot]: fallback, [UBOOT_ENV.upgradeAvailable]: "0", [UBOOT_ENV.bootcount]: "0", [UBOOT_ENV.fallback]: null });
    await this.reboot(fallback);
  }

  private async reboot(into: SlotName): Promise<void> {
    if (this.opts.reboot) await this.opts.reboot();
    else {
      const [command, ...args] = this.opts.rebootCommand ?? ["reboot"];
      await this.run(command!, args);
    }
    if (this.running() === into) return;
    // On a board the reboot ends this process; still here after the wait means it did not happen.
    await new Promise((resolve) => setTimeout(resolve, this.rebootWaitMs));
    throw new PlatformError(`asked for a reboot into slot ${into}; still running slot ${this.running()} after ${this.rebootWaitMs} ms`);
  }

  private async run(command: string, args: readonly string[]): Promise<CommandResult> {
    const result = await this.exec.run(command, args);
    if (result.code !== 0) throw new PlatformError(`${command} ${args.join(" ")} exited ${result.code}: ${result.stderr.trim().slice(0, 200)}`);
    return result;
  }

  private async writeDevice(device: SlotDevice, imageFile: string, imageBytes: number): Promise<void> {
    switch (device.kind) {
      case "block": {
        const capacity = device.sizeBytes ?? blockDeviceBytes(device.path);
        if (capacity !== null && imageBytes > capacity) throw new PlatformError(`image of ${imageBytes} bytes does not fit slot ${device.path} (${capacity} bytes)`);
        copyInPlace(imageFile, device.path, imageBytes);
        return;
      }
      case "mtd":
        await this.run("flash_erase", ["-q", device.device, "0", "0"]);
        await this.run("nandwrite", ["-q", "-p", device.device, imageFile]);
        return;
      case "ubi":
        await this.run("ubiupdatevol", [device.volume, imageFile]);
        return;
    }
  }

  private async readBackSha256(device: SlotDevice, imageBytes: number): Promise<string> {
    switch (device.kind) {
      case "block":
        return hashFile(device.path, imageBytes);
      case "ubi":
        return hashFile(device.volume, imageBytes);
      case "mtd": {
        // nanddump skips bad blocks the way nandwrite did, so the dump lines up with the image.
        const dir = mkdtempSync(join(tmpdir(), "hashward-nanddump-"));
        try {
          const out = join(dir, "dump");
          await this.run("nanddump", ["-q", "--bb=skipbad", "-l", String(imageBytes), "-f", out, device.device]);
          return hashFile(out, imageBytes);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  }
}

function describeDevice(device: SlotDevice): string {
  return device.kind === "block" ? device.path : device.kind === "mtd" ? device.device : device.volume;
}

/**
 * Reads the first `bytes` bytes of the file at `path` in CHUNK_BYTES pieces and hands each to `use` with its
 * offset (the buffer is reused: copy what must outlive the call). Fewer bytes there is a PlatformError saying
 * `<path> <short> <done> of <bytes> bytes`.
 */
function readInChunks(path: string, bytes: number, short: string, use: (chunk: Buffer, offset: number) => void): void {
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.alloc(CHUNK_BYTES);
    let done = 0;
    while (done < bytes) {
      const n = readSync(fd, buffer, 0, Math.min(CHUNK_BYTES, bytes - done), done);
      if (n === 0) throw new PlatformError(`${path} ${short} ${done} of ${bytes} bytes`);
      use(buffer.subarray(0, n), done);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** sha256 of the first `bytes` bytes of a file or device; fewer bytes there is a PlatformError. */
function hashFile(path: string, bytes: number): string {
  const hash = createHash("sha256");
  readInChunks(path, bytes, "holds only", (chunk) => hash.update(chunk));
  return hash.digest("hex");
}

/** Writes the image over the start of a block device (or slot file) without truncating it, then fsyncs. */
function copyInPlace(imageFile: string, target: string, bytes: number): void {
  const output = openSync(target, "r+");
  try {
    readInChunks(imageFile, bytes, "ended after", (chunk, offset) => {
      let written = 0;
      while (written < chunk.length) written += writeSync(output, chunk, written, chunk.length - written, offset + written);
    });
    fsyncSync(output);
  } finally {
    closeSync(output);
  }
}

/** A block device's size from sysfs (stat reports 0 for device nodes); null for a regular file. */
function blockDeviceBytes(path: string): number | null {
  try {
    if (!statSync(path).isBlockDevice()) return null;
    const sectors = Number(readFileSync(`/sys/class/block/${basename(realpathSync(path))}/size`, "utf8").trim());
    return Number.isFinite(sectors) ? sectors * 512 : null;
  } catch {
    return null;
  }
}
