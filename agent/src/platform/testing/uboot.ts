/**
 * A U-Boot board without the hardware, for tests of UBootSlots (HW-BOARD-2): a redundant U-Boot environment in
 * two files (made with `mkenvimage -r`, read and written by the real libubootenv `fw_printenv`/`fw_setenv`),
 * slot files standing in for the two root partitions, and a "boot" that runs the REAL boot script
 * `scripts/board/hashward-boot.cmd` under `busybox ash` with U-Boot's commands (setenv, saveenv, setexpr, run,
 * source, load, booti) as small shell functions. The kernel command line it "boots" is written to a file that
 * UBootSlots reads as /proc/cmdline.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SlotName } from "../types.js";

export const BOOT_SCRIPT = fileURLToPath(new URL("../../../../scripts/board/hashward-boot.cmd", import.meta.url));
const TOOLS = ["/usr/bin/fw_printenv", "/usr/bin/fw_setenv", "/usr/bin/mkenvimage", "/bin/busybox"];

/** Why the U-Boot emulation cannot run here (Debian: libubootenv-tool, u-boot-tools, busybox-static), or null. */
export function ubootEmulatorSkipReason(): string | null {
  const missing = TOOLS.filter((tool) => !existsSync(tool));
  return missing.length > 0 ? `missing ${missing.join(", ")} (apt-get install libubootenv-tool u-boot-tools busybox-static; .ci/run does it)` : null;
}

const ENV_BYTES = 0x4000;

/** U-Boot's hush commands that hashward-boot.cmd uses, as ash functions over the libubootenv environment. */
const HUSH_SHIM = `
CFG=$1; SCRIPT=$2; CMDLINE=$3
NAMES=""
while IFS= read -r line; do
  [ -n "$line" ] || continue
  name=\${line%%=*}; val=\${line#*=}
  eval "$name=\\$val"; NAMES="$NAMES $name"
done <<EOF
$(fw_printenv -c "$CFG")
EOF
setenv() { _n=$1; shift; eval "$_n=\\"\\$*\\""; case " $NAMES " in *" $_n "*) ;; *) NAMES="$NAMES $_n" ;; esac; }
saveenv() {
  _f=$(mktemp); for _n in $NAMES; do eval "printf '%s=%s\\n' \\"\\$_n\\" \\"\\$$_n\\""; done >"$_f"
  fw_setenv -c "$CFG" -s "$_f"; _s=$?; rm -f "$_f"; return $_s
}
setexpr() { eval "$1=\\$(( $2 $3 $4 ))"; }
# "source" is an ash builtin: U-Boot's (run a script image at an address) is renamed on its way through run.
run() { for _v in "$@"; do eval "_c=\\$$_v"; _c=\${_c//source /uboot_source }; eval "$_c"; done; }
uboot_source() { . "$SCRIPT"; }
load() { :; }
booti() { printf '%s\\n' "$bootargs" >"$CMDLINE"; exit 0; }
. "$SCRIPT"
exit 1
`;

export class UBootEmulator {
  readonly fwEnvConfig: string;
  readonly cmdlineFile: string;
  readonly slotFiles: Record<SlotName, string>;
  boots = 0;

  /**
   * A board whose slot a holds `initialImage` (slot files are `slotBytes` long), booted once into slot a.
   * `env` adds or overrides variables of the provisioned environment (docs/board.md).
   */
  constructor(
    readonly dir: string,
    initialImage: Buffer,
    opts: { slotBytes?: number; env?: Record<string, string>; cmdlineFile?: string } = {},
  ) {
    const slotBytes = opts.slotBytes ?? 1024 * 1024;
    this.slotFiles = { a: join(dir, "slot-a.img"), b: join(dir, "slot-b.img") };
    const blank = Buffer.alloc(slotBytes);
    writeFileSync(this.slotFiles.a, Buffer.concat([initialImage, blank.subarray(initialImage.length)]));
    writeFileSync(this.slotFiles.b, blank);
    const env: Record<string, string> = {
      bootcmd: "load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}",
      altbootcmd: "setenv hashward_failed ${hashward_slot}; setenv hashward_slot ${hashward_fallback}; setenv upgrade_available 0; setenv bootcount 0; saveenv; run bootcmd",
      hashward_slot: "a",
      hashward_part_a: "/dev/mmcblk0p2",
      hashward_part_b: "/dev/mmcblk0p3",
      hashward_load_a: "load mmc 0:2 ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdt_addr_r}",
      hashward_load_b: "load mmc 0:3 ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdt_addr_r}",
      hashward_bootargs: "console=ttyS0,115200",
      bootlimit: "3",
      ...opts.env,
    };
    const text = join(dir, "u-boot-initial-env");
    writeFileSync(text, Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(""));
    const envFiles = [join(dir, "uboot-env-1.bin"), join(dir, "uboot-env-2.bin")];
    for (const file of envFiles) execFileSync("mkenvimage", ["-r", "-s", String(ENV_BYTES), "-o", file, text]);
    this.fwEnvConfig = join(dir, "fw_env.config");
    writeFileSync(this.fwEnvConfig, envFiles.map((f) => `${f} 0x0 0x${ENV_BYTES.toString(16)}\n`).join(""));
    this.cmdlineFile = opts.cmdlineFile ?? join(dir, "cmdline");
    this.boot();
  }

  /** The command line that runs U-Boot's boot of this board (argv; the boot script under busybox ash). */
  bootCommand(): string[] {
    return ["/bin/busybox", "ash", "-c", HUSH_SHIM, "hush", this.fwEnvConfig, BOOT_SCRIPT, this.cmdlineFile];
  }

  /**
   * A `reboot` for a compiled agent (its `rebootCommand`): U-Boot boots the board, then the running agent (the
   * script's parent) is killed, as a real reboot ends every process. The test then starts the agent again.
   */
  writeRebootScript(path: string): string {
    const argv = this.bootCommand().map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
    writeFileSync(path, `#!/bin/busybox ash\nPATH=/usr/bin:/bin:/usr/sbin:/sbin ${argv} >/dev/null 2>&1\nkill -KILL $PPID\n`);
    chmodSync(path, 0o755);
    return path;
  }

  /**
   * A health check for the booted slot (UBootSlots' `healthCommand`): healthy unless the slot's image says
   * `selftest=fail`. Written to `path`; returns it.
   */
  writeHealthScript(path: string): string {
    writeFileSync(path, `#!/bin/busybox ash\nslot=$(sed -n 's/.*hashward\\.slot=\\([ab]\\).*/\\1/p' ${this.cmdlineFile})\n! grep -q 'selftest=fail' ${this.dir}/slot-$slot.img\n`);
    chmodSync(path, 0o755);
    return path;
  }

  /** Power on: U-Boot runs bootcmd (the boot script); returns the slot the kernel was started from. */
  boot(): SlotName {
    this.boots++;
    const [command, ...args] = this.bootCommand();
    execFileSync(command!, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PATH: `/usr/bin:/bin:/usr/sbin:/sbin` } });
    return this.bootedSlot();
  }

  bootedSlot(): SlotName {
    const slot = /hashward\.slot=([ab])/.exec(readFileSync(this.cmdlineFile, "utf8"))?.[1];
    if (slot !== "a" && slot !== "b") throw new Error(`boot script left no slot on the command line`);
    return slot;
  }

  env(): Record<string, string> {
    const out = execFileSync("fw_printenv", ["-c", this.fwEnvConfig], { encoding: "utf8" });
    return Object.fromEntries(out.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  }

  /** The first `bytes` bytes of a slot. */
  slotBytes(slot: SlotName, bytes: number): Buffer {
    return readFileSync(this.slotFiles[slot]).subarray(0, bytes);
  }
}
