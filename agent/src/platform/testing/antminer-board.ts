/**
 * An Antminer-class board root in a temp dir for AntminerPlatform tests: the files the platform looks at
 * (init script, upgrade CGI, resolv.conf, a mount table) and a RecordingExecutor that plays the kernel's part
 * for what the platform checks back: iptables hooks (`-C`/`-I`/`-D`), bind mounts in the mount table, chmod.
 * Commands are recorded with device paths (the root prefix stripped).
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../testing/index.js";
import { AntminerPlatform } from "../antminer.js";
import { RecordingExecutor } from "./recording-executor.js";

export interface AntminerTestBoardOptions {
  /** The HASHWARD chains are already hooked (a board quarantined before the agent restarted). */
  chains?: boolean;
  /** No ip6tables binary (exit 127). */
  noIp6tables?: boolean;
  /** ip6tables present, the kernel without an IPv6 filter table: every ip6tables call fails. */
  noIp6Table?: boolean;
  /** `mount` fails (no CAP_SYS_ADMIN): the platform falls back to chmod. */
  mountFails?: boolean;
  stateDir?: string;
  /** DNS answers by host name (default: plane.example.net is 192.0.2.10 and 2001:db8::10). */
  resolve?: (host: string) => string[];
  /** Quarantine refresh period in ms (default 0: no timer). */
  refreshMs?: number;
}

/** What the board does now, as the recorded kernel sees it. */
export interface AntminerBoardState {
  /** The miner's init script was not stopped, or started again since. */
  mining: boolean;
  /** While the OUTPUT hook is in place: the IPv4/IPv6 addresses the HASHWARD chain accepts; otherwise null. */
  allowed: string[] | null;
  /** The upgrade CGI is neither bind-mounted over nor chmod 000. */
  upgradeCgiOpen: boolean;
}

export interface AntminerTestBoard {
  root: string;
  exec: RecordingExecutor;
  platform: AntminerPlatform;
  warnings: string[];
  /** Adds a bind mount over `devicePath` to the mount table (as a quarantine before a restart left it). */
  mount(devicePath: string): void;
  state(): AntminerBoardState;
  /** Stops the platform's refresh timer and removes the root. */
  cleanup(): void;
}

const UPGRADE_CGI = "/www/pages/cgi-bin/upgrade.cgi";

/** A fresh board root (see the file comment) and an AntminerPlatform on it, commands recorded. */
export function antminerTestBoard(opts: AntminerTestBoardOptions = {}): AntminerTestBoard {
  const dir = tempDir();
  const root = dir.path;
  for (const sub of ["etc/init.d", "www/pages/cgi-bin", "proc"]) mkdirSync(join(root, sub), { recursive: true });
  writeFileSync(join(root, "etc/init.d/bmminer.sh"), "#!/bin/sh\n");
  writeFileSync(join(root, `.${UPGRADE_CGI}`), "#!/bin/sh\n");
  chmodSync(join(root, `.${UPGRADE_CGI}`), 0o755);
  writeFileSync(join(root, "etc/resolv.conf"), "nameserver 192.168.1.1\n");
  const mountsFile = join(root, "proc/mounts");
  writeFileSync(mountsFile, "rootfs / rootfs rw 0 0\n");
  const mounts = new Set<string>();
  const writeMounts = () => writeFileSync(mountsFile, ["rootfs / rootfs rw 0 0", ...[...mounts].map((p) => `/dev/null ${join(root, `.${p}`)} devtmpfs rw 0 0`)].join("\n") + "\n");
  const mount = (devicePath: string) => {
    mounts.add(devicePath);
    writeMounts();
  };

  const exec = new RecordingExecutor();
  const strip = (s: string) => (s.startsWith(root) ? s.slice(root.length) : s);
  const executor = { run: (command: string, args: readonly string[]) => exec.run(strip(command), args.map(strip)) };
  // The kernel's hooks as the fake sees them: "<tool> <builtin> <chain>".
  const hooks = new Set<string>(opts.chains ? ["iptables OUTPUT HASHWARD", "iptables INPUT HASHWARD_IN"] : []);
  exec.respond = (command, args) => {
    if (command === "ip6tables" && opts.noIp6tables) return { code: 127 };
    if (command === "ip6tables" && opts.noIp6Table) return { code: 3, stderr: "ip6tables v1.4: can't initialize ip6tables table `filter': Table does not exist" };
    const hook = `${command} ${args[1]} ${args.at(-1)}`;
    if (args[0] === "-C") return { code: hooks.has(hook) ? 0 : 1 };
    if (args[0] === "-I") hooks.add(hook);
    if (args[0] === "-D") return { code: hooks.delete(hook) ? 0 : 1 };
    if (command === "mount" && opts.mountFails) return { code: 1, stderr: "mount: permission denied" };
    if (command === "mount") mount(args.at(-1)!);
    if (command === "umount" && mounts.delete(args[0]!)) writeMounts();
    if (command === "chmod") chmodSync(join(root, `.${args[1]}`), Number.parseInt(args[0]!, 8));
    return undefined;
  };
  const warnings: string[] = [];
  const platform = new AntminerPlatform({
    root,
    executor,
    mountsFile,
    resolver: { resolve: async (host: string) => (opts.resolve ? opts.resolve(host) : host === "plane.example.net" ? ["192.0.2.10", "2001:db8::10"] : []) },
    warn: (m) => warnings.push(m),
    quarantineRefreshMs: opts.refreshMs ?? 0,
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
  });

  const state = (): AntminerBoardState => {
    const initCalls = exec.calls.filter((c) => c.startsWith("/etc/init.d/bmminer.sh "));
    const allowed = new Set<string>();
    for (const tool of ["iptables", "ip6tables"]) {
      const lastFlush = exec.calls.lastIndexOf(`${tool} -F HASHWARD`);
      for (const call of exec.calls.slice(lastFlush + 1)) {
        const ip = new RegExp(`^${tool} -A HASHWARD -d (\\S+) -j ACCEPT$`).exec(call)?.[1];
        if (ip) allowed.add(ip);
      }
    }
    const cgiMode = statSync(join(root, `.${UPGRADE_CGI}`)).mode & 0o777;
    return {
      mining: initCalls.at(-1) !== "/etc/init.d/bmminer.sh stop",
      allowed: hooks.has("iptables OUTPUT HASHWARD") ? [...allowed].sort() : null,
      upgradeCgiOpen: !readFileSync(mountsFile, "utf8").includes(join(root, `.${UPGRADE_CGI}`)) && cgiMode !== 0,
    };
  };

  return {
    root,
    exec,
    platform,
    warnings,
    mount,
    state,
    cleanup: () => {
      void platform.release().catch(() => undefined); // stops a refresh timer first (synchronously)
      dir.cleanup();
    },
  };
}
