#!/bin/sh
# stand-in for Bitmain's /etc/init.d/bmminer.sh (start-stop-daemon, pidfile)
PIDFILE=/var/run/bmminer.pid
case "$1" in
  start) start-stop-daemon -S -q -b -m -p "$PIDFILE" -x /usr/bin/bmminer -o ;;
  stop)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do usleep 50000; done
    rm -f "$PIDFILE" ;;
  status) [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null ;;
  *) echo "usage: $0 {start|stop|status}"; exit 1 ;;
esac
