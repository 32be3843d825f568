#!/usr/bin/env bash
# Starts (once) a throwaway PostgreSQL on 127.0.0.1 for the test suite, installing it from Debian when
# missing, and prints its URL. Idempotent: a server already answering on the port is reused.
set -euo pipefail
PORT=${GRIDPOLICY_TEST_PG_PORT:-55432}
DATA=${GRIDPOLICY_TEST_PG_DATA:-/tmp/gridpolicy-test-pg}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN=$(pg_bin)
if [ -z "$BIN" ]; then
  echo "installing PostgreSQL (apt-get)…" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  BIN=$(pg_bin)
fi

as_owner() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  rm -rf "$DATA"
  mkdir -p "$DATA"
  [ "$(id -u)" = 0 ] && chown postgres "$DATA"
  as_owner "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
