#!/usr/bin/env bash
# Builds the emulated arm64 miner board (docs/board.md "Emulated arm64 board") from Debian
# arm64 packages only, into a git-ignored cache folder. Idempotent: every step is skipped when its output exists.
#
# usage: scripts/board/build-image.sh [OUT_DIR]     (default .cache/board-image)
# needs: root for `dpkg --add-architecture arm64` once (apt-get download itself needs no root), and the host
#        tools e2fsprogs (mke2fs -d), fdisk (sfdisk), kmod (depmod, modprobe --show-depends), cpio, u-boot-tools
#        (mkimage, mkenvimage), u-boot-qemu (the qemu_arm64 U-Boot), busybox-static (applet list).
#
# Output (OUT_DIR):
#   u-boot.bin        the qemu_arm64 U-Boot of Debian's u-boot-qemu (booted with qemu -bios)
#   disk.img          GPT disk: 1 boot (ext4: Image, initrd, boot.scr), 2 rootfs slot a, 3 rootfs slot b,
#                     4 U-Boot environment (raw, 256 KiB, libubootenv format), 5 /config (written per run)
#   slot.ext4         the rootfs slot image (what an update writes to the other slot)
#   layout.json       partition start sectors and sizes (the test writes /config with dd at that offset)
#   rootfs.d          the slot's file tree (tests build update slots and measure reference values from it)
#   inputs.sha256     hash of the scripts/board files the image was built from (a change rebuilds it)
#
# Why the environment is on the disk and not in the emulated NOR flash (pflash): Debian's arm64 kernel is built
# without CONFIG_MTD_CFI/CONFIG_MTD_PHYSMAP, so Linux cannot see qemu's CFI flash and fw_setenv could not reach
# it. Boards that keep the environment on eMMC (Amlogic S19-class controllers) look exactly like this disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-.cache/board-image}
SCRIPTS=scripts/board
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEBS=$OUT/debs
SYSROOT=$OUT/sysroot
log() { printf 'build-image: %s\n' "$*" >&2; }

# 0. What is built from this repository's files (initramfs, slot, boot partition, environment, disk) is built
#    again when one of them changed since the last build; the downloaded packages and the sysroot are kept.
INPUTS=$(cat "$SCRIPTS/build-image.sh" "$SCRIPTS/S99hashward" "$SCRIPTS/hashward-boot.cmd" "$SCRIPTS"/qemu/* | sha256sum | cut -d' ' -f1)
if [ "$(cat "$OUT/inputs.sha256" 2>/dev/null)" != "$INPUTS" ]; then
  [ -e "$OUT/disk.img" ] && log "scripts/board changed since the last build: rebuilding the image (downloads kept)"
  rm -rf "$OUT/initrd" "$OUT/initrd.d" "$OUT/rootfs.d" "$OUT/slot.ext4" "$OUT/boot.d" "$OUT/boot.ext4" "$OUT/env.img" "$OUT/disk.img" "$OUT/inputs.sha256"
fi

KERNEL_META=linux-image-arm64
PACKAGES="busybox-static libc6 libgcc-s1 iptables libip4tc2 libip6tc2 libxtables12 libmnl0 libnetfilter-conntrack3 libnfnetlink0 libnftnl11 libubootenv-tool libubootenv0.1 zlib1g"

# 1. Debian arm64 packages (download only; nothing arm64 is installed on the host).
if [ ! -f "$DEBS/.done" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding the arm64 architecture to dpkg (apt-get download needs its package lists)"
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  if ! apt-cache show "$KERNEL_META:arm64" >/dev/null 2>&1; then apt-get update -qq; fi
  KERNEL_PKG=$(apt-cache depends "$KERNEL_META:arm64" | sed -n 's/^ *Depends: \(linux-image-[^:]*\).*/\1/p' | head -1)
  [ -n "$KERNEL_PKG" ] || { log "cannot resolve $KERNEL_META:arm64"; exit 1; }
  rm -rf "$DEBS" && mkdir -p "$DEBS"
  log "downloading $KERNEL_PKG $PACKAGES (arm64)"
  # shellcheck disable=SC2086
  (cd "$DEBS" && apt-get download -q "$KERNEL_PKG:arm64" $(for p in $PACKAGES; do echo "$p:arm64"; done) >/dev/null 2>&1)
  touch "$DEBS/.done"
fi

# 2. Everything unpacked into one sysroot.
if [ ! -f "$SYSROOT/.done" ]; then
  rm -rf "$SYSROOT" && mkdir -p "$SYSROOT"
  for deb in "$DEBS"/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
  touch "$SYSROOT/.done"
fi
KVER=$(basename "$(ls -d "$SYSROOT"/lib/modules/*-arm64 | head -1)")

# 3. Initramfs: busybox, the modules the board needs (disk, ext4, network, netfilter for iptables), /init that
#    loads them and switches to the root= slot. The slots then need no modules of their own.
MODULES="virtio_mmio virtio_blk virtio_net ext4 nf_tables nft_compat nf_conntrack xt_state xt_tcpudp ip_tables iptable_filter ip6_tables ip6table_filter"
if [ ! -f "$OUT/initrd" ]; then
  log "initramfs (kernel $KVER)"
  depmod -b "$SYSROOT" "$KVER"
  INITRD=$OUT/initrd.d
  rm -rf "$INITRD" && mkdir -p "$INITRD"/{bin,dev,proc,sys,newroot,modules}
  cp "$SYSROOT/bin/busybox" "$INITRD/bin/busybox"
  : >"$INITRD/modules/order"
  # shellcheck disable=SC2086
  for m in $MODULES; do modprobe -d "$SYSROOT" -S "$KVER" --show-depends "$m"; done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' |
    while read -r ko; do
      cp "$ko" "$INITRD/modules/"
      basename "$ko" >>"$INITRD/modules/order"
    done
  cp "$SCRIPTS/qemu/init" "$INITRD/init"
  chmod 0755 "$INITRD/init"
  (cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -9) >"$OUT/initrd.tmp"
  mv "$OUT/initrd.tmp" "$OUT/initrd"
fi

# 4. The rootfs slot: busybox init, libc, iptables (nft backend, as Debian's default), fw_printenv/fw_setenv,
#    the stand-in miner and its init script, S99hashward. The agent and its config live on /config.
if [ ! -f "$OUT/slot.ext4" ]; then
  log "rootfs slot image"
  ROOT=$OUT/rootfs.d
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  for dir in bin sbin usr/bin usr/sbin lib usr/lib etc/init.d dev proc sys tmp run var/run var/log config root www/pages/cgi-bin; do mkdir -p "$ROOT/$dir"; done
  cp -a "$SYSROOT"/lib/aarch64-linux-gnu "$ROOT/lib/"
  cp -a "$SYSROOT"/lib/ld-linux-aarch64.so.1 "$ROOT/lib/"
  cp -a "$SYSROOT"/usr/lib/aarch64-linux-gnu "$ROOT/usr/lib/"
  rm -rf "$ROOT/usr/lib/aarch64-linux-gnu/gconv"
  cp -a "$SYSROOT"/usr/sbin/xtables-nft-multi "$SYSROOT"/usr/sbin/xtables-legacy-multi "$ROOT/usr/sbin/"
  for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$ROOT/usr/sbin/$tool"
  done
  cp -a "$SYSROOT"/usr/bin/fw_printenv "$ROOT/usr/bin/"
  ln -sf fw_printenv "$ROOT/usr/bin/fw_setenv"
  [ -e "$SYSROOT/usr/bin/fw_setenv" ] && cp -a "$SYSROOT/usr/bin/fw_setenv" "$ROOT/usr/bin/"
  cp "$SYSROOT/bin/busybox" "$ROOT/bin/busybox"
  # The applet links, from the host's busybox-static of the same Debian release (same applet list).
  for applet in $(/bin/busybox --list-full); do
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
  done
  mkdir -p "$ROOT/etc/xtables"
  cp "$SCRIPTS/qemu/inittab" "$ROOT/etc/inittab"
  cp "$SCRIPTS/qemu/rcS" "$ROOT/etc/init.d/rcS"
  cp "$SCRIPTS/qemu/bmminer.sh" "$ROOT/etc/init.d/bmminer.sh"
  cp "$SCRIPTS/qemu/bmminer" "$ROOT/usr/bin/bmminer"
  cp "$SCRIPTS/qemu/bmminer-api" "$ROOT/usr/bin/bmminer-api"
  cp "$SCRIPTS/S99hashward" "$ROOT/etc/init.d/S99hashward"
  printf '#!/bin/sh\necho upgrade accepted\n' >"$ROOT/www/pages/cgi-bin/upgrade.cgi"
  chmod 0755 "$ROOT/etc/init.d/"* "$ROOT/usr/bin/bmminer" "$ROOT/usr/bin/bmminer-api" "$ROOT/www/pages/cgi-bin/upgrade.cgi"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
  printf 'root:x:0:\n' >"$ROOT/etc/group"
  printf 'nameserver 10.0.2.3\n' >"$ROOT/etc/resolv.conf"
  printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n' >"$ROOT/etc/hosts"
  # libubootenv: the environment partition (offset, size, erase-block size): U-Boot's env export -c format.
  printf '/dev/vda4 0x0 0x40000 0x40000\n' >"$ROOT/etc/fw_env.config"
  printf 'hashward-board 1\n' >"$ROOT/etc/hashward-image"
  mke2fs -q -t ext4 -L rootfs -d "$ROOT" "$OUT/slot.ext4.tmp" 64M
  mv "$OUT/slot.ext4.tmp" "$OUT/slot.ext4"
fi

# 5. Boot partition: the kernel, the initramfs, boot.scr = this board's prologue (read the environment from
#    partition 4) followed by the real scripts/board/hashward-boot.cmd.
LAYOUT_BOOT=2048 LAYOUT_SLOT=$((2048 + 64 * 2048)) LAYOUT_SLOT_SECTORS=$((64 * 2048))
ENV_START=$((LAYOUT_SLOT + 2 * LAYOUT_SLOT_SECTORS)) ENV_SECTORS=2048
CONFIG_START=$((ENV_START + ENV_SECTORS)) CONFIG_SECTORS=$((384 * 2048))
if [ ! -f "$OUT/boot.ext4" ]; then
  log "boot partition"
  BOOT=$OUT/boot.d
  rm -rf "$BOOT" && mkdir -p "$BOOT"
  cp "$SYSROOT/boot/vmlinuz-$KVER" "$BOOT/Image"
  if gzip -t "$BOOT/Image" 2>/dev/null; then gzip -dc "$SYSROOT/boot/vmlinuz-$KVER" >"$BOOT/Image"; fi
  cp "$OUT/initrd" "$BOOT/initrd"
  sed -e "s/@ENV_START@/$(printf '0x%x' "$ENV_START")/g" "$SCRIPTS/qemu/board-prologue.cmd" >"$OUT/boot.cmd"
  cat "$SCRIPTS/hashward-boot.cmd" >>"$OUT/boot.cmd"
  mkimage -q -A arm64 -O linux -T script -C none -d "$OUT/boot.cmd" "$BOOT/boot.scr" >/dev/null
  mke2fs -q -t ext2 -L boot -d "$BOOT" "$OUT/boot.ext4.tmp" 64M
  mv "$OUT/boot.ext4.tmp" "$OUT/boot.ext4"
fi

# 6. The U-Boot environment as provisioned (docs/board.md), in U-Boot's own format (mkenvimage, no redundancy).
if [ ! -f "$OUT/env.img" ]; then
  sed -e "s/@ENV_START@/$(printf '0x%x' "$ENV_START")/g" "$SCRIPTS/qemu/env.txt" | mkenvimage -s 0x40000 -o "$OUT/env.img" -
fi

# 7. The disk: GPT with the five partitions, slot b starting as a copy of slot a.
if [ ! -f "$OUT/disk.img" ]; then
  log "disk image"
  TOTAL=$((CONFIG_START + CONFIG_SECTORS + 2048))
  truncate -s $((TOTAL * 512)) "$OUT/disk.tmp"
  sfdisk -q "$OUT/disk.tmp" <<EOF
label: gpt
start=$LAYOUT_BOOT, size=$((64 * 2048)), name=boot
start=$LAYOUT_SLOT, size=$LAYOUT_SLOT_SECTORS, name=rootfs_a
start=$((LAYOUT_SLOT + LAYOUT_SLOT_SECTORS)), size=$LAYOUT_SLOT_SECTORS, name=rootfs_b
start=$ENV_START, size=$ENV_SECTORS, name=ubootenv
start=$CONFIG_START, size=$CONFIG_SECTORS, name=config
EOF
  put() { dd if="$1" of="$OUT/disk.tmp" bs=512 seek="$2" conv=notrunc,sparse status=none; }
  put "$OUT/boot.ext4" "$LAYOUT_BOOT"
  put "$OUT/slot.ext4" "$LAYOUT_SLOT"
  put "$OUT/slot.ext4" $((LAYOUT_SLOT + LAYOUT_SLOT_SECTORS))
  put "$OUT/env.img" "$ENV_START"
  mv "$OUT/disk.tmp" "$OUT/disk.img"
fi

cp /usr/lib/u-boot/qemu_arm64/u-boot.bin "$OUT/u-boot.bin"
cat >"$OUT/layout.json" <<EOF
{"kernel": "$KVER", "sectorBytes": 512, "slotA": {"start": $LAYOUT_SLOT, "sectors": $LAYOUT_SLOT_SECTORS}, "slotB": {"start": $((LAYOUT_SLOT + LAYOUT_SLOT_SECTORS)), "sectors": $LAYOUT_SLOT_SECTORS}, "env": {"start": $ENV_START, "sectors": $ENV_SECTORS}, "config": {"start": $CONFIG_START, "sectors": $CONFIG_SECTORS}}
EOF
printf '%s\n' "$INPUTS" >"$OUT/inputs.sha256"
log "done: $OUT"
