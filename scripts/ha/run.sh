#!/usr/bin/env bash
# Runs a command against a throwaway high-availability PostgreSQL cluster: one etcd and three
# PostgreSQL 15 nodes under Patroni, synchronous mode on, everything on 127.0.0.1 on free ports,
# all data in a temporary directory. The cluster is torn down when the command ends, also when
# it or the set-up fails (the EXIT trap), and the command's status is the script's.
#
#   scripts/ha/run.sh cargo test -p secrets-api --test ha -- --test-threads=1
#
# The command finds the cluster in these variables:
#   HA_DIR          the cluster's directory (each node's patroni.yml, logs and data)
#   HA_NODES        "name:pg_port:rest_port" of each node, space-separated
#   HA_NODE_SCRIPT  scripts/ha/node.sh, which kills, starts and switches nodes over
#   TEST_DATABASE_URL  the three nodes with target_session_attrs=read-write: the leader
#
# It installs Patroni and etcd with apt-get when they are missing (Debian bookworm: Patroni
# 3.0.2, etcd 3.4.23). The machine's own PostgreSQL (5432) is never touched.
#
# On failure the last lines of every node's and etcd's log are printed; HA_KEEP_DIR=1 keeps the
# whole directory for a look afterwards (the processes are stopped all the same).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

(($# > 0)) || die "usage: $0 COMMAND [ARG...]"

install_missing() {
  local missing=()
  [[ -x /usr/bin/patroni ]] || missing+=(patroni)
  /usr/bin/python3 -c 'import etcd' 2>/dev/null || missing+=(python3-etcd)
  command -v etcd >/dev/null || missing+=(etcd-server)
  [[ -x "$PG_BIN/postgres" ]] || missing+=(postgresql-15)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]} == 0)) && return
  if [[ "$(id -u)" != "0" ]]; then
    die "missing ${missing[*]}: install them (apt-get install ${missing[*]}), or run this as root"
  fi
  log "installing ${missing[*]}"
  # A package's post-install script must not start a system-wide etcd or PostgreSQL.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n "$created_policy" ]] && rm -f "$policy"
  return 0
}

# Free TCP ports on 127.0.0.1, all bound at once so that they are distinct.
free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
}

write_node_config() {
  local name="$1" pg_port="$2" rest_port="$3" dir="$HA_DIR/$1"
  mkdir -p "$dir"
  cat >"$dir/patroni.yml" <<YAML
scope: secrets-ha
name: $name
restapi:
  listen: 127.0.0.1:$rest_port
  connect_address: 127.0.0.1:$rest_port
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    # A lost leader's key expires after ttl seconds; then the synchronous standby takes over.
    # Patroni requires loop_wait + 2 * retry_timeout <= ttl.
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    # Only the synchronous standby may be promoted, so an acknowledged commit is never lost.
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        max_connections: 200
        wal_keep_size: 256MB
        hot_standby: "on"
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $dir/data
  bin_dir: $PG_BIN
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: postgres
      password: ha
    replication:
      username: replicator
      password: ha
    rewind:
      username: postgres
      password: ha
  parameters:
    unix_socket_directories: $dir
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
YAML
  echo "$name $pg_port $rest_port" >>"$HA_DIR/nodes"
}

# The cluster is whole: one leader, a synchronous standby, and every node running.
cluster_ready() {
  local leaders=0 sync=0 name rest
  while read -r name _ rest; do
    [[ "$(http_status "http://127.0.0.1:$rest/health")" == 200 ]] || return 1
    [[ "$(http_status "http://127.0.0.1:$rest/primary")" == 200 ]] && leaders=$((leaders + 1))
    [[ "$(http_status "http://127.0.0.1:$rest/sync")" == 200 ]] && sync=$((sync + 1))
  done <"$HA_DIR/nodes"
  ((leaders == 1 && sync >= 1))
}

answers_200() {
  [[ "$(http_status "$1")" == 200 ]]
}

etcd_healthy() {
  curl -fsS -m 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

teardown() {
  local status=$?
  set +e
  if [[ -n "${HA_DIR:-}" && -d "$HA_DIR" ]]; then
    if ((status != 0)); then
      for log in "$HA_DIR"/*/patroni.log "$HA_DIR"/etcd.log; do
        [[ -f "$log" ]] || continue
        echo "---- last lines of $log" >&2
        tail -n 15 "$log" >&2
      done
    fi
    if [[ -f "$HA_DIR/nodes" ]]; then
      while read -r name _; do
        node_kill "$name" >/dev/null 2>&1
      done <"$HA_DIR/nodes"
    fi
    if [[ -f "$HA_DIR/etcd.pid" ]]; then
      kill -KILL "$(cat "$HA_DIR/etcd.pid")" 2>/dev/null
    fi
    [[ -n "${HA_KEEP_DIR:-}" ]] || rm -rf "$HA_DIR"
  fi
  exit "$status"
}

install_missing

HA_DIR="$(mktemp -d /tmp/secrets-ha.XXXXXX)"
export HA_DIR
trap teardown EXIT
trap 'exit 130' INT TERM
chmod 755 "$HA_DIR"

read -r ETCD_PORT ETCD_PEER_PORT P1 R1 P2 R2 P3 R3 <<<"$(free_ports 8)"
log "etcd on 127.0.0.1:$ETCD_PORT; PostgreSQL on $P1, $P2, $P3; Patroni's REST API on $R1, $R2, $R3; in $HA_DIR"

setsid etcd --name ha --data-dir "$HA_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "ha=http://127.0.0.1:$ETCD_PEER_PORT" \
  >"$HA_DIR/etcd.log" 2>&1 </dev/null &
echo $! >"$HA_DIR/etcd.pid"
disown
wait_until 30 "etcd to report healthy on 127.0.0.1:$ETCD_PORT (see $HA_DIR/etcd.log)" etcd_healthy

: >"$HA_DIR/nodes"
write_node_config pg1 "$P1" "$R1"
write_node_config pg2 "$P2" "$R2"
write_node_config pg3 "$P3" "$R3"
[[ "$(id -u)" == "0" ]] && chown -R postgres "$HA_DIR"/pg1 "$HA_DIR"/pg2 "$HA_DIR"/pg3

# The first node bootstraps the cluster; the others then copy it with pg_basebackup.
node_start pg1
wait_until 90 "pg1 to bootstrap and lead (GET /primary on $R1)" answers_200 "http://127.0.0.1:$R1/primary"
node_start pg2
node_start pg3
wait_until 120 "a leader, a synchronous standby and three running nodes" cluster_ready
log "cluster ready"
"${PATRONICTL[@]}" -c "$HA_DIR/pg1/patroni.yml" list >&2 || true

HA_NODES="pg1:$P1:$R1 pg2:$P2:$R2 pg3:$P3:$R3"
HA_NODE_SCRIPT="$HERE/node.sh"
# Where tests create their databases (crates/adapters/src/testing.rs): whichever node leads.
TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3/postgres?target_session_attrs=read-write"
export HA_NODES HA_NODE_SCRIPT TEST_DATABASE_URL
"$@"
