/**
 * A real Antminer-class board (BusyBox, bmminer/cgminer, lighttpd web UI) behind the Platform interface.
 * Every side effect is a command through an injected CommandExecutor, so tests record them.
 *
 * Quarantine (HW-Q-2), in the order that is safe to crash between, each step idempotent:
 *  1. stop mining: `<init script> stop` (the costly harm is hashing for an attacker);
 *  2. firewall: dedicated chains HASHWARD (OUTPUT) and HASHWARD_IN (INPUT), rebuilt from scratch each time and
 *     hooked once at the top; they leave only loopback, the control plane's IPs (resolved from its host names)
 *     and DNS to the board's resolvers (so the plane's name can be re-resolved); IPv6 too with ip6tables, skipped
 *     with a warning when the kernel has no IPv6 filter table (the chain cannot be created);
 *  3. vendor upgrade path: `mount -o bind /dev/null` over each upgrade CGI (works on a read-only rootfs),
 *     falling back to `chmod 000`.
 * Every step runs even when an earlier one failed (a firewall error must not leave the upgrade CGI open); the
 * first failure is then thrown so the ack says failed.
 *
 * HW-Q-4: the plane's addresses are remembered in `<stateDir>/plane-addresses.json` whenever its names resolve,
 * and used when they do not (boards boot before DNS after a power cut: a quarantine built from no address would
 * cut the device off from the only party that can release it, forever). While quarantined, the plane's names
 * are re-resolved every `quarantineRefreshMs` and the chains rebuilt when the addresses changed.
 * Release undoes 3, 2, 1 in reverse; the upgrade CGIs stay disabled once disableVendorUpgrade() was called
 * (enforcing mode). Quarantine survives reboot because the agent re-applies it at start (HW-Q-1).
 */
import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { join, resolve as resolvePath } from "node:path";
import { z } from "zod";
import { jsonStateFile, type JsonStateFile } from "../../../shared/fs/index.js";
import type { HostResolver } from "../guards/net.js";
import { PlatformError, resolveUnderRoot } from "./paths.js";
import type { MinerControl, Platform, PlatformDescription, QuarantineOptions, UpdateSlots } from "./types.js";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with arguments (never through a shell). Non-zero exit is a result, not an exception. */
export interface CommandExecutor {
  run(command: string, args: readonly string[]): Promise<CommandResult>;
}

export class NodeCommandExecutor implements CommandExecutor {
  constructor(private readonly timeoutMs = 30_000) {}

  run(command: string, args: readonly string[]): Promise<CommandResult> {
    return new Promise((resolve) => {
      execFile(command, [...args], { timeout: this.timeoutMs, maxBuffer: 1024 * 1024, encoding: "utf8" }, (error, stdout, stderr) => {
        const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : err.code === "ENOENT" ? 127 : 1;
        resolve({ code, stdout: String(stdout), stderr: String(stderr || err?.message || "") });
      });
    });
  }
}

export interface AntminerOptions {
  root?: string;
  initScripts?: readonly string[];
  upgradeCgiPaths?: readonly string[];
  iptables?: string;
  /** Empty: no IPv6 firewall. */
  ip6tables?: string;
  executor?: CommandExecutor;
  resolver?: Pick<HostResolver, "resolve">;
  /**
   * The kernel's mount table, a HOST path (not under `root`): where a bind mount over an upgrade CGI is seen.
   * Default `/proc/self/mounts`.
   */
  mountsFile?: string;
  /** Where the last-known plane addresses are kept (HW-Q-4); none: only in memory. */
  stateDir?: string;
  /** While quarantined: how often the plane's names are re-resolved and the chains rebuilt if they changed. */
  quarantineRefreshMs?: number;
  /** A/B slots (a U-Boot board: `UBootSlots`, agent/src/platform/uboot.ts); none: updates are refused. */
  slots?: UpdateSlots;
  /** Non-fatal problems (no IPv6 filter table, unresolvable plane name). Default: a line on stderr. */
  warn?: (message: string) => void;
}

const planeAddressesSchema = z.record(z.string().max(300), z.array(z.string().max(64)).max(64));

export const FIREWALL_CHAINS = { out: "HASHWARD", in: "HASHWARD_IN" } as const;

export class AntminerPlatform implements Platform {
  readonly root: string;
  readonly miner: MinerControl;
  readonly slots?: UpdateSlots;
  private readonly exec: CommandExecutor;
  private readonly initScripts: readonly string[];
  private readonly upgradeCgiPaths: readonly string[];
  private readonly iptables: string;
  private readonly ip6tables: string;
  private readonly resolver: Pick<HostResolver, "resolve"> | null;
  private vendorUpgradeLocked = false;
  private readonly planeFile: JsonStateFile<Record<string, string[]>> | null;
  private readonly mountsFile: string;
  private readonly refreshMs: number;
  private readonly warn: (message: string) => void;
  private knownPlane: Record<string, string[]> = {};
  /** While quarantined: the plane hosts and the addresses the chains were built from. */
  private quarantined: { hosts: string[]; installed: string } | null = null;
  private refreshTimer: ReturnType<typeof setInterval> | null = null;

  constructor(opts: AntminerOptions = {}) {
    this.root = resolvePath(opts.root ?? "/");
    this.exec = opts.executor ?? new NodeCommandExecutor();
    this.initScripts = opts.initScripts ?? ["/etc/init.d/bmminer.sh", "/etc/init.d/cgminer.sh"];
    this.upgradeCgiPaths = opts.upgradeCgiPaths ?? ["/www/pages/cgi-bin/upgrade.cgi", "/www/pages/cgi-bin/upgrade_clear.cgi"];
    this.iptables = opts.iptables ?? "iptables";
    this.ip6tables = opts.ip6tables ?? "ip6tables";
    this.resolver = opts.resolver ?? null;
    this.mountsFile = opts.mountsFile ?? "/proc/self/mounts";
    if (opts.slots) this.slots = opts.slots;
    this.planeFile = opts.stateDir ? jsonStateFile(join(opts.stateDir, "plane-addresses.json"), planeAddressesSchema) : null;
    this.refreshMs = opts.quarantineRefreshMs ?? 30_000;
    this.warn = opts.warn ?? ((message) => process.stderr.write(`hashward-agent: warning: ${message}\n`));
    this.knownPlane = this.planeFile?.loadHint() ?? {}; // a corrupt copy is re-learned at the next successful resolution
    this.miner = {
      restart: async () => {
        await this.initScript("stop");
        await this.initScript("start");
      },
    };
  }

  resolve(devicePath: string): string {
    return resolveUnderRoot(this.root, devicePath);
  }

  async quarantine(opts: QuarantineOptions): Promise<void> {
    const errors: unknown[] = [];
    const step = async (run: () => Promise<void>) => {
      try {
        await run();
      } catch (error) {
        errors.push(error);
      }
    };
    await step(() => this.initScript("stop"));
    await step(async () => {
      const plane = await this.planeIps(opts.controlPlaneHosts);
      await this.firewallOn(plane);
      this.quarantined = { hosts: [...opts.controlPlaneHosts], installed: JSON.stringify(plane) };
      this.startRefresh();
    });
    await step(() => this.disableUpgradeCgis());
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new PlatformError(errors.map((e) => (e instanceof Error ? e.message : String(e))).join("; "));
  }

  /**
   * HW-Q-4: re-resolves the plane's names and rebuilds the chains when its addresses changed (a name that did
   * not resolve at quarantine time, a plane that moved). Returns true when the chains were rebuilt.
   */
  async refreshQuarantine(): Promise<boolean> {
    const current = this.quarantined;
    if (!current) return false;
    const plane = await this.planeIps(current.hosts);
    const installed = JSON.stringify(plane);
    if (installed === current.installed || this.quarantined !== current) return false;
    await this.firewallOn(plane);
    this.quarantined = { hosts: current.hosts, installed };
    return true;
  }

  private startRefresh(): void {
    if (this.refreshTimer || this.refreshMs <= 0) return;
    this.refreshTimer = setInterval(() => {
      this.refreshQuarantine().catch((error: unknown) => this.warn(`quarantine refresh failed: ${error instanceof Error ? error.message : String(error)}`));
    }, this.refreshMs);
    this.refreshTimer.unref?.(); // never keeps the process alive on its own
  }

  private stopRefresh(): void {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    this.quarantined = null;
  }

  async release(): Promise<void> {
    this.stopRefresh();
    if (!this.vendorUpgradeLocked) await this.enableUpgradeCgis();
    await this.firewallOff();
    await this.initScript("start");
  }

  async isQuarantined(): Promise<boolean> {
    return (await this.exec.run(this.iptables, ["-C", "OUTPUT", "-j", FIREWALL_CHAINS.out])).code === 0;
  }

  async disableVendorUpgrade(): Promise<void> {
    this.vendorUpgradeLocked = true;
    await this.disableUpgradeCgis();
  }

  describe(): PlatformDescription {
    return { kind: "antminer", root: this.root, initScript: this.findInitScript() ?? "none", slots: this.slots ? "u-boot" : "none" };
  }

  private exists(devicePath: string): { mode: number } | null {
    try {
      return { mode: statSync(this.resolve(devicePath)).mode & 0o7777 };
    } catch {
      return null;
    }
  }

  private findInitScript(): string | null {
    return this.initScripts.find((p) => this.exists(p) !== null) ?? null;
  }

  private async must(command: string, args: readonly string[]): Promise<CommandResult> {
    const result = await this.exec.run(command, args);
    if (result.code !== 0) throw new PlatformError(`${command} ${args.join(" ")} exited ${result.code}: ${result.stderr.trim().slice(0, 200)}`);
    return result;
  }

  private async initScript(action: "start" | "stop"): Promise<void> {
    const script = this.findInitScript();
    if (!script) throw new PlatformError(`no miner init script found (looked for ${this.initScripts.join(", ")})`);
    // Run from the platform root: with root "/" that is the device path; under a test root, the board's copy.
    await this.must(this.resolve(script), [action]);
  }

  /**
   * Control-plane IPs by family: literal IPs as given, host names through the resolver; a name that does not
   * resolve now gets the addresses it had last time (HW-Q-4), and a fresh answer is remembered.
   */
  private async planeIps(hosts: readonly string[]): Promise<{ v4: string[]; v6: string[] }> {
    const ips = new Set<string>();
    for (const host of hosts) {
      if (isIP(host)) {
        ips.add(host);
        continue;
      }
      const key = host.toLowerCase();
      let fresh: string[] = [];
      try {
        fresh = this.resolver ? await this.resolver.resolve(host) : [];
      } catch {
        fresh = [];
      }
      if (fresh.length > 0) this.rememberPlane(key, fresh);
      const use = fresh.length > 0 ? fresh : (this.knownPlane[key] ?? []);
      if (use.length === 0) this.warn(`control plane host ${host} does not resolve and no earlier address is known; retried while quarantined`);
      for (const ip of use) ips.add(ip);
    }
    const all = [...ips].sort();
    return { v4: all.filter((ip) => isIP(ip) === 4), v6: all.filter((ip) => isIP(ip) === 6) };
  }

  private rememberPlane(host: string, ips: readonly string[]): void {
    const list = [...new Set(ips)].sort().slice(0, 64);
    if (JSON.stringify(this.knownPlane[host]) === JSON.stringify(list)) return;
    const next = { ...this.knownPlane, [host]: list };
    try {
      this.planeFile?.save(next);
      this.knownPlane = next;
    } catch (error) {
      // Only a fallback for the next unresolvable boot: the quarantine itself goes on with the fresh answer.
      this.warn(`cannot remember the plane's addresses: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private nameservers(): { v4: string[]; v6: string[] } {
    let text = "";
    try {
      text = readFileSync(this.resolve("/etc/resolv.conf"), "utf8");
    } catch {
      // no resolver configured: the plane must then be named by IP
    }
    const servers = [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!).filter((ip) => isIP(ip));
    return { v4: servers.filter((ip) => isIP(ip) === 4), v6: servers.filter((ip) => isIP(ip) === 6) };
  }

  private tools(): { tool: string; family: "v4" | "v6" }[] {
    return [{ tool: this.iptables, family: "v4" as const }, ...(this.ip6tables ? [{ tool: this.ip6tables, family: "v6" as const }] : [])];
  }

  private async firewallOn(plane: { v4: string[]; v6: string[] }): Promise<void> {
    const dns = this.nameservers();
    for (const { tool, family } of this.tools()) {
      const { out, in: inbound } = FIREWALL_CHAINS;
      // -N fails when the chain exists: fine, it is flushed and rebuilt right after.
      const created = await this.exec.run(tool, ["-N", out]);
      if (created.code === 127 && family === "v6") continue; // no ip6tables on this board
      await this.exec.run(tool, ["-N", inbound]);
      if (family === "v6" && created.code !== 0) {
        // -N failed: the chain exists (flush works), or ip6tables is there but the kernel has no IPv6 filter
        // table (nothing works). Then skip IPv6 with a warning rather than fail the quarantine half-way.
        const flushed = await this.exec.run(tool, ["-F", out]);
        if (flushed.code !== 0) {
          this.warn(`${tool}: cannot create chain ${out} (${(flushed.stderr || created.stderr).trim().slice(0, 200)}); IPv6 firewall skipped`);
          continue;
        }
      } else await this.must(tool, ["-F", out]);
      await this.must(tool, ["-F", inbound]);
      await this.must(tool, ["-A", out, "-o", "lo", "-j", "ACCEPT"]);
      for (const ip of plane[family]) await this.must(tool, ["-A", out, "-d", ip, "-j", "ACCEPT"]);
      for (const ns of dns[family]) await this.must(tool, ["-A", out, "-p", "udp", "-d", ns, "--dport", "53", "-j", "ACCEPT"]);
      await this.must(tool, ["-A", out, "-j", "DROP"]);
      await this.must(tool, ["-A", inbound, "-i", "lo", "-j", "ACCEPT"]);
      for (const ip of plane[family]) await this.must(tool, ["-A", inbound, "-s", ip, "-j", "ACCEPT"]);
      // Replies to what OUTPUT still allows (the plane, DNS); nothing else can have been sent.
      await this.must(tool, ["-A", inbound, "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT"]);
      await this.must(tool, ["-A", inbound, "-j", "DROP"]);
      for (const [builtin, chain] of [["OUTPUT", out], ["INPUT", inbound]] as const) {
        if ((await this.exec.run(tool, ["-C", builtin, "-j", chain])).code !== 0) await this.must(tool, ["-I", builtin, "1", "-j", chain]);
      }
    }
  }

  private async firewallOff(): Promise<void> {
    for (const { tool } of this.tools()) {
      for (const [builtin, chain] of [["OUTPUT", FIREWALL_CHAINS.out], ["INPUT", FIREWALL_CHAINS.in]] as const) {
        // Unhook every copy (at most a few), then drop the chain; each step tolerates "not there".
        for (let i = 0; i < 8; i++) if ((await this.exec.run(tool, ["-D", builtin, "-j", chain])).code !== 0) break;
        await this.exec.run(tool, ["-F", chain]);
        await this.exec.run(tool, ["-X", chain]);
      }
    }
  }

  /** Whether something is mounted on `hostPath` (the mount table escapes space, tab, newline, backslash as octal). */
  private mounted(hostPath: string): boolean {
    try {
      const mounts = readFileSync(this.mountsFile, "utf8");
      const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
      return mounts.split("\n").some((line) => unescape(line.split(" ")[1] ?? "") === hostPath);
    } catch {
      return false;
    }
  }

  private async disableUpgradeCgis(): Promise<void> {
    for (const cgi of this.upgradeCgiPaths) {
      const st = this.exists(cgi);
      const hostPath = this.resolve(cgi);
      if (!st || this.mounted(hostPath)) continue;
      const bound = await this.exec.run("mount", ["-o", "bind", "/dev/null", hostPath]);
      if (bound.code !== 0) await this.must("chmod", ["000", hostPath]);
    }
  }

  private async enableUpgradeCgis(): Promise<void> {
    for (const cgi of this.upgradeCgiPaths) {
      const hostPath = this.resolve(cgi);
      if (this.mounted(hostPath)) await this.must("umount", [hostPath]);
      const st = this.exists(cgi);
      if (st && (st.mode & 0o777) === 0) await this.must("chmod", ["755", hostPath]);
    }
  }
}
