#!/bin/sh
# Puts the Hashward agent on an Antminer-class board over ssh/scp.
# usage: scripts/board/install.sh [-a AGENT_BINARY] [-c AGENT_CONFIG] [-u USER] HOST
#   AGENT_BINARY  default dist/agent/hashward-agent-linux-arm64 (32-bit ARM boards: dist/agent/hashward-agent-node.mjs
#                 plus a Node runtime on the board; Bun does not target 32-bit ARM)
#   AGENT_CONFIG  an agent.json with "platform": {"kind": "antminer"} and "stateDir": "/config/hashward/state"
# The board keeps /config across reboots (a separate flash partition); the init script goes to /etc/init.d,
# which on boards with a read-only or ramdisk root must be re-installed after a firmware update.
set -eu
AGENT=dist/agent/hashward-agent-linux-arm64
CONFIG=""
USER_NAME=root
while getopts a:c:u: opt; do
  case "$opt" in
    a) AGENT=$OPTARG ;;
    c) CONFIG=$OPTARG ;;
    u) USER_NAME=$OPTARG ;;
    *) echo "usage: $0 [-a AGENT_BINARY] [-c AGENT_CONFIG] [-u USER] HOST" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: $0 [-a AGENT_BINARY] [-c AGENT_CONFIG] [-u USER] HOST" >&2; exit 2; }
HOST=$1
[ -f "$AGENT" ] || { echo "agent binary $AGENT missing: run npm run build:agent" >&2; exit 1; }
[ -n "$CONFIG" ] && [ ! -f "$CONFIG" ] && { echo "config $CONFIG missing" >&2; exit 1; }
DIR=$(dirname "$0")
TARGET="$USER_NAME@$HOST"

ssh "$TARGET" 'mkdir -p /config/hashward/state && chmod 0700 /config/hashward /config/hashward/state'
scp "$AGENT" "$TARGET:/config/hashward/hashward-agent.new"
[ -n "$CONFIG" ] && scp "$CONFIG" "$TARGET:/config/hashward/agent.json"
scp "$DIR/S99hashward" "$TARGET:/etc/init.d/S99hashward"
# Replace the binary atomically, keep state (device key, pinned plane key, sequences) untouched.
ssh "$TARGET" 'chmod 0700 /config/hashward/hashward-agent.new && mv /config/hashward/hashward-agent.new /config/hashward/hashward-agent &&
  chmod 0600 /config/hashward/agent.json 2>/dev/null; chmod 0755 /etc/init.d/S99hashward &&
  /config/hashward/hashward-agent version && /etc/init.d/S99hashward restart'
echo "installed on $HOST; logs: ssh $TARGET tail -f /var/log/hashward-agent.log"
