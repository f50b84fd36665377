# Emulated arm64 board (scripts/board/build-image.sh): the U-Boot environment lives on partition 4 of the
# virtio disk (start sector @ENV_START@, 256 KiB, libubootenv format), where Linux's fw_setenv writes it. Read it
# first; hashward_saveenv (in that environment) writes it back. Then the real hashward-boot.cmd follows.
virtio read 0x50000000 @ENV_START@ 0x200
env import -c 0x50000000 0x40000
