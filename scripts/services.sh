#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on localhost, starting the machine's own services if they
# are installed but stopped. With --optional a missing service is only reported (the product then
# falls back to SQLite and a filesystem broker); without it, a missing service is an error (tests).
set -uo pipefail
optional=0; [ "${1:-}" = "--optional" ] && optional=1

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
  for _ in $(seq 20); do port_open 5432 && break; sleep 0.5; done
fi
if ! port_open 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2 || true
  for _ in $(seq 20); do port_open 6379 && break; sleep 0.5; done
fi
missing=()
port_open 5432 || missing+=("PostgreSQL on 127.0.0.1:5432")
port_open 6379 || missing+=("Redis on 127.0.0.1:6379")
if [ ${#missing[@]} -gt 0 ]; then
  echo "Not reachable: ${missing[*]}" >&2
  [ $optional = 1 ] || exit 1
fi
exit 0
