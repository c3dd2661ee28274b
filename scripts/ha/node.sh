#!/usr/bin/env bash
# What the HA tests do to a node of the cluster scripts/ha/run.sh started (HA_DIR):
#   node.sh kill NAME        SIGKILL to its Patroni and its PostgreSQL at once (the node is lost)
#   node.sh kill-postgres NAME   SIGKILL to its PostgreSQL alone (its Patroni lives on)
#   node.sh start NAME       starts its Patroni again; it rejoins as a replica
#   node.sh switchover FROM TO   a planned switchover with patronictl
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ -n "${HA_DIR:-}" && -f "$HA_DIR/nodes" ]] || die "HA_DIR does not name a cluster of scripts/ha/run.sh"
(($# >= 2)) || die "usage: $0 kill NAME | kill-postgres NAME | start NAME | switchover FROM TO"

case "$1" in
  kill) node_kill "$2" ;;
  kill-postgres) node_kill_postgres "$2" ;;
  start) node_start "$2" ;;
  switchover)
    (($# == 3)) || die "usage: $0 switchover FROM TO"
    "${PATRONICTL[@]}" -c "$HA_DIR/$2/patroni.yml" switchover --leader "$2" --candidate "$3" --force
    ;;
  *) die "unknown action $1" ;;
esac
