/**
 * The emulated arm64 miner board (issue 11 part 3; docs/board.md "Emulated arm64 board"): the image built by
 * `scripts/board/build-image.sh` (Debian arm64 kernel, busybox, iptables, libubootenv; Debian's qemu_arm64 U-Boot)
 * booted under `qemu-system-aarch64 -M virt -cpu cortex-a53` (software emulation). The test talks to the board
 * through its serial console (a BusyBox shell) and, as the plane, over qemu's user-mode network: the guest reaches
 * the host's loopback at 10.0.2.2, so the plane listens on 127.0.0.1 only. A "pool" at 10.0.2.100:3333 answers
 * inside qemu itself (guestfwd to `cat`), so no packet leaves the emulator for it.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO_ROOT, tempDir } from "./processes.js";
import { waitFor } from "./wait.js";

export const BOARD_IMAGE_DIR = process.env.HASHWARD_BOARD_IMAGE ?? join(REPO_ROOT, ".cache/board-image");
export const ARM64_AGENT = join(REPO_ROOT, "dist/agent/hashward-agent-linux-arm64");
const QEMU = "/usr/bin/qemu-system-aarch64";
/** Where the board's plane address for the host is (qemu user networking). */
export const HOST_FROM_GUEST = "10.0.2.2";
export const POOL = { host: "10.0.2.100", port: 3333 };

/** Why the emulated board cannot run here, or null: the image, qemu-system-aarch64 and the arm64 agent. */
/**
 * A rootfs slot image made from the image build's slot tree (`rootfs.d`) with `changes` applied (path in the
 * slot -> content, mode 0755): what an update writes to the other slot. Returns the ext4 image's bytes.
 */
export function slotImage(changes: Record<string, string>): Buffer {
  const dir = tempDir("qemu-slot");
  try {
    const tree = join(dir, "rootfs");
    execFileSync("cp", ["-a", join(BOARD_IMAGE_DIR, "rootfs.d"), tree]);
    for (const [path, content] of Object.entries(changes)) {
      // Remove first: applet links point at /bin/busybox, and writing through one would write the HOST's.
      rmSync(join(tree, path), { force: true });
      writeFileSync(join(tree, path), content, { mode: 0o755 });
    }
    execFileSync("mke2fs", ["-q", "-t", "ext4", "-L", "rootfs", "-d", tree, join(dir, "slot.ext4"), "32M"]);
    return readFileSync(join(dir, "slot.ext4"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function qemuBoardSkipReason(): string | null {
  const missing = [join(BOARD_IMAGE_DIR, "disk.img"), join(BOARD_IMAGE_DIR, "layout.json"), join(BOARD_IMAGE_DIR, "rootfs.d"), QEMU, ARM64_AGENT].filter((p) => !existsSync(p));
  if (missing.length === 0) return null;
  return `missing ${missing.join(", ")} (scripts/board/build-image.sh builds the image, apt-get install qemu-system-arm u-boot-qemu; npm run build:agent; .ci/run does all three)`;
}

interface Layout {
  sectorBytes: number;
  config: { start: number; sectors: number };
  env: { start: number; sectors: number };
}

export interface QemuBoard {
  dir: string;
  /** Everything the serial console printed so far (U-Boot, kernel, init, shell). */
  console(): string;
  /** Waits until the console, from `from` (a length of console()), matches `pattern`; returns the match. */
  waitConsole(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpMatchArray>;
  /** Runs a shell command line on the board's console; returns its output and exit status. */
  sh(command: string, timeoutMs?: number): Promise<{ status: number; output: string }>;
  stop(): Promise<void>;
}

/**
 * Boots a fresh copy of the image with `/config` holding the arm64 agent and `agentConfig` (written to
 * /config/hashward/agent.json) unless `agentConfig` is null; `configFiles` adds files under /config (path relative
 * to /config -> content). Returns at once: qemu is started, nothing is booted yet.
 */
export function startQemuBoard(agentConfig: Record<string, unknown> | null, configFiles: Record<string, string | Buffer> = {}): QemuBoard {
  const dir = tempDir("qemu-board");
  const layout = JSON.parse(readFileSync(join(BOARD_IMAGE_DIR, "layout.json"), "utf8")) as Layout;
  const disk = join(dir, "disk.img");
  execFileSync("cp", ["--sparse=always", join(BOARD_IMAGE_DIR, "disk.img"), disk]);
  // /config: the agent under /config/hashward as scripts/board/install.sh puts it, state dir 0700.
  const config = join(dir, "config.d");
  mkdirSync(join(config, "hashward/state"), { recursive: true, mode: 0o700 });
  chmodSync(join(config, "hashward"), 0o700);
  if (agentConfig) {
    copyFileSync(ARM64_AGENT, join(config, "hashward/hashward-agent"));
    chmodSync(join(config, "hashward/hashward-agent"), 0o700);
    writeFileSync(join(config, "hashward/agent.json"), `${JSON.stringify(agentConfig, null, 2)}\n`, { mode: 0o600 });
  }
  for (const [path, content] of Object.entries(configFiles)) {
    mkdirSync(dirname(join(config, path)), { recursive: true });
    writeFileSync(join(config, path), content);
  }
  const configImage = join(dir, "config.ext4");
  execFileSync("mke2fs", ["-q", "-t", "ext4", "-L", "config", "-d", config, configImage, `${(layout.config.sectors * layout.sectorBytes) / 1024}k`]);
  execFileSync("dd", [`if=${configImage}`, `of=${disk}`, "bs=512", `seek=${layout.config.start}`, "conv=notrunc,sparse", "status=none"]);

  const child: ChildProcess = spawn(
    QEMU,
    [
      "-M", "virt", "-cpu", "cortex-a53", "-smp", "2", "-m", "1024", "-nographic",
      "-bios", join(BOARD_IMAGE_DIR, "u-boot.bin"),
      "-drive", `if=none,file=${disk},format=raw,id=d0`, "-device", "virtio-blk-device,drive=d0",
      "-netdev", `user,id=n0,guestfwd=tcp:${POOL.host}:${POOL.port}-cmd:cat`, "-device", "virtio-net-device,netdev=n0",
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  // Also in <dir>/console.log while it runs, for whoever debugs a slow or failed boot.
  const log = createWriteStream(join(dir, "console.log"));
  const take = (chunk: Buffer) => {
    out += chunk.toString("latin1");
    log.write(chunk);
  };
  child.stdout!.on("data", take);
  child.stderr!.on("data", take);
  let exited = false;
  child.on("exit", () => (exited = true));
  let n = 0;

  const waitConsole = (pattern: RegExp, timeoutMs: number, from = 0) =>
    waitFor(`board console to show ${pattern}`, () => {
      if (exited) throw new Error(`qemu exited; console tail:\n${out.slice(-2000)}`);
      return out.slice(from).match(pattern) ?? undefined;
    }, { timeoutMs, intervalMs: 200 });

  return {
    dir,
    console: () => out,
    waitConsole,
    async sh(command, timeoutMs = 120_000) {
      const id = ++n;
      const from = out.length;
      // The echo of the typed line reads `@@""E<id>`; only the command's own output has `@@E<id> <status>`.
      child.stdin!.write(`${command}; echo "@@""E${id}" $?\n`);
      const match = await waitConsole(new RegExp(`\\n@@E${id} (\\d+)`), timeoutMs, from);
      const text = out.slice(from, from + match.index!);
      const lines = text.split(/\r?\n/);
      return { status: Number(match[1]), output: lines.slice(1).join("\n").replace(/\r/g, "") };
    },
    async stop() {
      if (!exited) {
        child.kill("SIGKILL");
        await new Promise((resolve) => child.once("exit", resolve));
      }
      log.end();
      // The disk copy and the agent copy are large; console.log stays for whoever reads a failure.
      for (const path of [disk, configImage, config]) rmSync(path, { recursive: true, force: true });
    },
  };
}
