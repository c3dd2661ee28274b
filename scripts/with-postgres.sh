#!/usr/bin/env bash
# Runs a command with TEST_DATABASE_URL pointing at a PostgreSQL server the tests may create
# databases on.
#
# - TEST_DATABASE_URL already set: used as it is.
# - A server answers on 127.0.0.1:5432 (user postgres, trust auth): that one.
# - Otherwise, when initdb is installed: a throwaway server in a temporary directory on a free
#   port, stopped and removed when the command ends.
# - Otherwise: fail, saying what to install.
set -euo pipefail

if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
  exec "$@"
fi

if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 \
   && psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  exec "$@"
fi

find_pg_bin() {
  local tool="$1"
  if command -v "$tool" >/dev/null; then command -v "$tool"; return; fi
  ls /usr/lib/postgresql/*/bin/"$tool" 2>/dev/null | sort -V | tail -n 1
}
INITDB="$(find_pg_bin initdb)"
PG_CTL="$(find_pg_bin pg_ctl)"
if [[ -z "$INITDB" || -z "$PG_CTL" ]]; then
  echo "No PostgreSQL answers on 127.0.0.1:5432 and initdb is not installed." >&2
  echo "Install PostgreSQL (Debian: apt-get install postgresql) or set TEST_DATABASE_URL." >&2
  exit 1
fi

PGTMP="$(mktemp -d /tmp/secrets-test-pg.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)"
RUN_AS=()
if [[ "$(id -u)" == "0" ]]; then
  # initdb refuses to run as root; the cluster belongs to the postgres user when there is one.
  id postgres >/dev/null 2>&1 || { echo "running as root needs a 'postgres' user for initdb" >&2; exit 1; }
  chown postgres "$PGTMP"
  RUN_AS=(runuser -u postgres --)
fi
cleanup() {
  "${RUN_AS[@]}" "$PG_CTL" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGTMP"
}
trap cleanup EXIT
echo "starting a throwaway PostgreSQL on 127.0.0.1:$PORT" >&2
"${RUN_AS[@]}" "$INITDB" -D "$PGTMP/data" -U postgres -A trust --no-sync >/dev/null
"${RUN_AS[@]}" "$PG_CTL" -D "$PGTMP/data" -l "$PGTMP/log" -w \
  -o "-p $PORT -k $PGTMP -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
"$@"
