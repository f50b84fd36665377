# Hashward A/B boot for U-Boot (HW-BOARD-2; docs/board.md). Boot-count convention of RAUC and Mender:
# `upgrade_available` is 1 while a new slot is on trial; every boot on trial increments `bootcount`; above
# `bootlimit` U-Boot runs `altbootcmd`, which falls back to the previous slot. The agent (UBootSlots,
# agent/src/platform/uboot.ts) sets the switch in ONE fw_setenv write and clears the trial when the new slot
# passed its health check (commit).
#
# Compile:  mkimage -A arm64 -O linux -T script -C none -d hashward-boot.cmd boot.scr   (-A arm on 32-bit boards)
# Run from: bootcmd=load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}
#
# Environment (provisioned once, docs/board.md):
#   hashward_slot          a | b: the slot to boot
#   hashward_fallback      the slot to return to while on trial (set by the agent with the switch)
#   hashward_part_a/_b     each slot's root device as the kernel names it (root=...)
#   hashward_load_a/_b     load that slot's kernel (and dtb) and boot it with ${bootargs}
#   hashward_bootargs      the board's other kernel arguments (console=...)
#   upgrade_available      1 while on trial; bootcount, bootlimit (1..9: setexpr counts in hex)
#   altbootcmd             setenv hashward_failed ${hashward_slot}; setenv hashward_slot ${hashward_fallback};
#                          setenv upgrade_available 0; setenv bootcount 0; saveenv; run bootcmd
#                          (a U-Boot built with CONFIG_BOOTCOUNT_LIMIT runs it by itself instead of bootcmd;
#                          then leave the counting below to U-Boot: set hashward_count_in_script=0)
if test -z "${hashward_slot}"; then setenv hashward_slot a; fi
if test -z "${bootlimit}"; then setenv bootlimit 3; fi
if test -z "${bootcount}"; then setenv bootcount 0; fi
if test "${upgrade_available}" = "1"; then
  if test "${hashward_count_in_script}" != "0"; then
    setexpr bootcount ${bootcount} + 1
    saveenv
  fi
  if test ${bootcount} -gt ${bootlimit}; then
    echo "hashward: slot ${hashward_slot} was not committed after ${bootlimit} boots; falling back"
    run altbootcmd
  fi
fi
if test "${hashward_slot}" = "b"; then
  setenv bootargs "${hashward_bootargs} root=${hashward_part_b} hashward.slot=b"
  run hashward_load_b
else
  setenv bootargs "${hashward_bootargs} root=${hashward_part_a} hashward.slot=a"
  run hashward_load_a
fi
echo "hashward: booting slot ${hashward_slot} failed"
