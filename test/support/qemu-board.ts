/**
 * The emulated arm64 miner board (docs/board.md "Emulated arm64 board"): the image built by
 * `scripts/board/build-image.sh` (Debian arm64 kernel, busybox, iptables, libubootenv; Debian's qemu_arm64 U-Boot)
 * booted under `qemu-system-aarch64 -M virt -cpu cortex-a53` (software emulation). The test talks to the board
 * through its serial console (a BusyBox shell); the board's agent talks to the real control plane on the host
 * (`startBoardOnPlane`) over qemu's user-mode network: the guest reaches the host's loopback at 10.0.2.2, so the
 * plane listens on 127.0.0.1 only. A "pool" at 10.0.2.100:3333 answers inside qemu itself (guestfwd to `cat`), so
 * no packet leaves the emulator for it.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ApiClient } from "./api.js";
import { AGENT_BINARY, measureWithAgent, REPO_ROOT, startControlPlane, writeAgentConfig, type ControlPlane } from "./processes.js";
import { tempDir } from "./temp-dir.js";
import { createReleaser, type Releaser } from "./release.js";
import { waitFor } from "./wait.js";

export const BOARD_IMAGE_DIR = process.env.HASHWARD_BOARD_IMAGE ?? join(REPO_ROOT, ".cache/board-image");
export const ARM64_AGENT = join(REPO_ROOT, "dist/agent/hashward-agent-linux-arm64");
const QEMU = "/usr/bin/qemu-system-aarch64";
/** Where the board's plane address for the host is (qemu user networking). */
export const HOST_FROM_GUEST = "10.0.2.2";
export const POOL = { host: "10.0.2.100", port: 3333 };

/**
 * Why the emulated board cannot run here, or null: the image, qemu-system-aarch64, the arm64 agent, and the x64
 * agent (it measures release slot trees on the host, `measureSlotTree`).
 */
export function qemuBoardSkipReason(): string | null {
  const missing = [join(BOARD_IMAGE_DIR, "disk.img"), join(BOARD_IMAGE_DIR, "layout.json"), join(BOARD_IMAGE_DIR, "rootfs.d"), QEMU, ARM64_AGENT, AGENT_BINARY].filter((p) => !existsSync(p));
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
  const dir = tempDir("qemu-board").path;
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
      // The console echoes the typed line first, wrapped at the terminal's width when long: the output starts
      // after the line on which the echo ends (`" $?`).
      // (`text` ends before the newline that precedes the status line, so an empty output has no newline at all.)
      const echoEnd = text.indexOf('" $?');
      const outputStart = text.indexOf("\n", echoEnd >= 0 ? echoEnd : 0);
      const body = outputStart >= 0 ? text.slice(outputStart + 1) : "";
      return { status: Number(match[1]), output: body.replace(/\r/g, "") };
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

// --- the board against the real control plane ----------------------------------------------------------------------

/** Software emulation on a shared machine: one boot (U-Boot, kernel, init, agent) within this, generously. */
export const BOARD_BOOT_MS = 900_000;
export const BOARD_MODEL = "S19";
export const BOARD_FIRMWARE = "1.0.0";
/**
 * What the board's agent measures: the slot's own firmware files (the agent binary lives on /config, outside the
 * slots, and is left out: hashing its 105 MiB under software emulation would add about a minute to every evidence).
 * The same list measures a release's slot tree on the host (`measureSlotTree`), so both sides agree by construction.
 */
export const BOARD_MEASURE_PATHS = ["/bin/busybox", "/etc/fw_env.config", "/etc/hashward-image", "/etc/init.d", "/usr/bin/bmminer", "/usr/bin/bmminer-api"];

/**
 * Reference measurements of a root-filesystem slot tree (a host directory), as a release engineer takes them before
 * publishing: the compiled agent's `measure` with the antminer platform rooted at the tree and the board's
 * measurement list. Returns the agent's measurement array (the body of `POST /api/v1/reference-values`).
 */
export async function measureSlotTree(tree: string): Promise<unknown[]> {
  const dir = tempDir("slot-measure").path;
  try {
    const config = writeAgentConfig(dir, {
      controlPlaneUrl: "https://127.0.0.1:1", // not contacted by `measure`
      stateDir: join(dir, "state"),
      model: BOARD_MODEL,
      firmwareVersion: BOARD_FIRMWARE,
      platform: { kind: "antminer", root: tree },
      measure: { paths: BOARD_MEASURE_PATHS, includeAgentBinary: false },
    });
    return (await measureWithAgent(config)) as unknown[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A root-filesystem slot made from the image build's slot tree (`rootfs.d`) with `changes` applied (path in the
 * slot -> content, mode 0755): what an update writes to the other slot. Returns the 32 MiB ext4 image's bytes and
 * the tree's reference measurements (`measureSlotTree`), which a release carries.
 */
export async function buildSlot(changes: Record<string, string>): Promise<{ image: Buffer; reference: unknown[] }> {
  const dir = tempDir("qemu-slot").path;
  try {
    const tree = join(dir, "rootfs");
    execFileSync("cp", ["-a", join(BOARD_IMAGE_DIR, "rootfs.d"), tree]);
    for (const [path, content] of Object.entries(changes)) {
      // Remove first: applet links point at /bin/busybox, and writing through one would write the HOST's.
      rmSync(join(tree, path), { force: true });
      writeFileSync(join(tree, path), content, { mode: 0o755 });
    }
    const reference = await measureSlotTree(tree);
    execFileSync("mke2fs", ["-q", "-t", "ext4", "-L", "rootfs", "-d", tree, join(dir, "slot.ext4"), "32M"]);
    return { image: readFileSync(join(dir, "slot.ext4")), reference };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `GET /api/v1/devices/{id}` (the fields the board tests read; the rest as the API sends it). */
export type DeviceView = { deviceId: string; firmwareVersion: string; appraisal: string; containment: string; connected: boolean; lastSeenAt: string | null; lastAppraisal: { referenceId?: string } | null } & Record<string, unknown>;

/** The emulated board running against a real control plane on the host (`startBoardOnPlane`). */
export interface PlaneBoard {
  plane: ControlPlane;
  admin: ApiClient;
  /** Signs releases offline and uploads them to the plane (test/support/release.ts); the board trusts its root v1. */
  releaser: Releaser;
  board: QemuBoard;
  /** Date.now() when qemu was started: the board's power-on. */
  poweredOnAt: number;
  /** The board's device id, once the plane has its enrollment (waits up to a boot). */
  deviceId(): Promise<string>;
  device(): Promise<DeviceView>;
  /** Polls the board's device view until `accept` returns true; returns that view. */
  waitDevice(what: string, accept: (d: DeviceView) => boolean, timeoutMs?: number): Promise<DeviceView>;
  /**
   * An operator quarantine or release through the API (`POST /api/v1/devices/{id}/quarantine|release`): resolves
   * when the plane has the board's signed ack (containment `quarantined` / `none`), with the elapsed ms and the
   * command as the plane recorded it (`GET .../commands`).
   */
  contain(action: "quarantine" | "release"): Promise<{ ms: number; command: Record<string, unknown> }>;
  /**
   * Publishes a slot built by `buildSlot(changes)` as a signed release `name` at `version` for the board's model,
   * with its measured reference values, through the release CLI into the plane's TUF repository.
   */
  publishSlot(name: string, version: string, changes: Record<string, string>): Promise<void>;
  /**
   * Rolls `targetName` out to this board alone (`POST /api/v1/rollouts`) and waits until the plane has the board's
   * final word (rollout device status succeeded or failed; `finalPhase`, when given, must also be among the board's
   * signed update-progress events for that target, and the update command acked). Returns the elapsed ms (to the
   * rollout's verdict), the rollout's entry for the board, the board's update-progress events for the target
   * (newest first) and, with `finalPhase`, the update command as the plane recorded the board's ack.
   */
  rollout(
    targetName: string,
    timeoutMs: number,
    finalPhase?: "committed" | "rolled-back",
  ): Promise<{ ms: number; device: Record<string, unknown>; progress: Array<Record<string, unknown>>; command?: Record<string, unknown> }>;
  stop(): Promise<void>;
}

/**
 * Starts the real control plane on the host (under Bun, TLS with its own CA, as `npm start`), publishes root v1 of
 * a release repository, registers the reference values of the image's slot, makes an enrollment token, and powers
 * on a fresh copy of the board with the arm64 agent provisioned the way README's walk-through does it: the plane's
 * addresses and CA pin from `GET /api/v1/bootstrap`, the token, and the trusted TUF root. Returns at once after
 * power-on (nothing booted yet). Throws when the plane does not start (its log tail in the message).
 *
 * The guest reaches the host's loopback at 10.0.2.2 (qemu user-mode NAT), so the plane listens on 127.0.0.1 and is
 * told its public URLs (HASHWARD_PUBLIC_URL, HASHWARD_PUBLIC_MQTT_URL): its server certificate then names 10.0.2.2,
 * and the enrollment answer names the broker the board can reach. The public URLs carry the ports, known only
 * after the first start binds port 0, so the plane is started once to learn them and again on the same data
 * folder and ports with its public URLs (the CA stays; the server certificate is issued at every start).
 */
export async function startBoardOnPlane(): Promise<PlaneBoard> {
  const env = {
    // The plane's production defaults, except a faster rollout step (a test waits on it).
    HASHWARD_COMMAND_RETRY_MS: "5000",
    HASHWARD_ROLLOUT_TICK_MS: "500",
  };
  const first = await startControlPlane({ env });
  await first.proc.kill();
  const plane = await startControlPlane({
    dataDir: first.dataDir,
    httpPort: first.httpPort,
    mqttPort: first.mqttPort,
    env: { ...env, HASHWARD_PUBLIC_URL: `https://${HOST_FROM_GUEST}:${first.httpPort}`, HASHWARD_PUBLIC_MQTT_URL: `mqtts://${HOST_FROM_GUEST}:${first.mqttPort}` },
  });
  let board: QemuBoard | undefined;
  const work = tempDir("board-plane").path;
  const stop = async () => {
    await board?.stop();
    await plane.proc.kill("SIGKILL");
    for (const dir of [work, plane.dataDir]) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const admin = new ApiClient(plane.httpUrl, plane.adminToken);
    const releaser = await createReleaser(join(work, "releaser"), admin);
    await admin.post("/api/v1/reference-values", { model: BOARD_MODEL, firmwareVersion: BOARD_FIRMWARE, measurements: await measureSlotTree(join(BOARD_IMAGE_DIR, "rootfs.d")) });
    const token = await admin.post("/api/v1/enrollment-tokens", { ttlMs: 3_600_000, maxUses: 1, label: "emulated arm64 board" });
    const bootstrap = await admin.get("/api/v1/bootstrap");
    const poweredOnAt = Date.now();
    board = startQemuBoard(
      {
        controlPlaneUrl: bootstrap.controlPlaneUrl,
        mqttUrl: bootstrap.mqttUrl,
        caCertHash: token.caCertHash,
        enrollmentToken: token.token,
        stateDir: "/config/hashward/state",
        model: BOARD_MODEL,
        firmwareVersion: BOARD_FIRMWARE,
        platform: {
          kind: "antminer",
          // HW-BOARD-2 on this board: block slots on the virtio disk, the environment on partition 4.
          slots: { a: { kind: "block", path: "/dev/vda2" }, b: { kind: "block", path: "/dev/vda3" }, bootlimit: 2, rebootCommand: ["reboot"], healthCommand: ["/etc/init.d/bmminer.sh", "status"] },
        },
        measure: { paths: BOARD_MEASURE_PATHS, includeAgentBinary: false },
        // The farm's pool (the stand-in miner reports it as its active pool): without it the connections guard
        // would judge the test's pool probes from the board as connections to an unapproved host.
        guards: { allowedHosts: [`${POOL.host}:${POOL.port}`] },
        update: { trustedRootFile: "/config/hashward/tuf-root.json" },
        heartbeatIntervalMs: 5000,
        attestIntervalMs: 3_600_000,
        enrollPollMs: 1000,
        reconnectMinMs: 500,
        reconnectMaxMs: 5000,
      },
      { "hashward/tuf-root.json": readFileSync(releaser.rootFile) },
    );
    const started = board;

    let id: string | undefined;
    const deviceId = async () =>
      (id ??= await waitFor("the board's enrollment at the plane", async () => (await admin.get("/api/v1/devices")).devices[0]?.deviceId as string | undefined, { timeoutMs: BOARD_BOOT_MS, intervalMs: 250 }));
    const device = async () => (await admin.get(`/api/v1/devices/${await deviceId()}`)) as DeviceView;
    const waitDevice = async (what: string, accept: (d: DeviceView) => boolean, timeoutMs = BOARD_BOOT_MS) => {
      const found = await waitFor(what, async () => {
        const d = await device();
        return accept(d) ? d : undefined;
      }, { timeoutMs, intervalMs: 250 });
      return found;
    };
    return {
      plane,
      admin,
      releaser,
      board: started,
      poweredOnAt,
      deviceId,
      device,
      waitDevice,
      async contain(action) {
        const target = action === "quarantine" ? "quarantined" : "none";
        const at = Date.now();
        await admin.post(`/api/v1/devices/${await deviceId()}/${action}`, { reason: `emulated board: ${action}` });
        await waitDevice(`the plane to see the board's ${action} ack`, (d) => d.containment === target, 300_000);
        const ms = Date.now() - at;
        const { commands } = await admin.get(`/api/v1/devices/${await deviceId()}/commands?limit=1`);
        return { ms, command: commands[0] };
      },
      async publishSlot(name, version, changes) {
        const { image, reference } = await buildSlot(changes);
        await releaser.publish({ name, model: BOARD_MODEL, version, image, reference });
      },
      async rollout(targetName, timeoutMs, finalPhase) {
        const deviceIdValue = await deviceId();
        const at = Date.now();
        const created = await admin.post("/api/v1/rollouts", { targetName, selector: { deviceIds: [deviceIdValue] }, groups: [{ size: 1 }], successThreshold: 100, errorThreshold: 100 });
        const entry = await waitFor(`the plane's verdict on ${targetName} from the board`, async () => {
          const rollout = await admin.get(`/api/v1/rollouts/${created.id}`);
          const mine = rollout.devices.find((d: { deviceId: string }) => d.deviceId === deviceIdValue);
          return mine && (mine.status === "succeeded" || mine.status === "failed") ? (mine as Record<string, unknown>) : undefined;
        }, { timeoutMs, intervalMs: 250 });
        const ms = Date.now() - at;
        const progressEvents = async () =>
          ((await admin.get(`/api/v1/devices/${deviceIdValue}/events?limit=100`)).events as Array<{ kind: string; detail: Record<string, unknown> }>)
            .filter((e) => e.kind === "update-progress" && e.detail["targetName"] === targetName)
            .map((e) => e.detail);
        if (!finalPhase) return { ms, device: entry, progress: await progressEvents() };
        const progress = await waitFor(`a signed ${finalPhase} event for ${targetName}`, async () => {
          const events = await progressEvents();
          return events.some((e) => e["phase"] === finalPhase) ? events : undefined;
        }, { timeoutMs: 300_000, intervalMs: 500 });
        // The rollout may take its verdict from the final update-progress event before the ack arrives.
        const command = await waitFor(`the board's ack of update command ${String(entry["commandSeq"])}`, async () => {
          const { commands } = await admin.get(`/api/v1/devices/${deviceIdValue}/commands?limit=20`);
          const sent = (commands as Array<Record<string, unknown>>).find((c) => c["seq"] === entry["commandSeq"]);
          return sent && sent["status"] !== "pending" ? sent : undefined;
        }, { timeoutMs: 300_000, intervalMs: 500 });
        return { ms, device: entry, progress, command };
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
