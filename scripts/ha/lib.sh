# Shared by scripts/ha/run.sh and scripts/ha/node.sh: where a node's files are, how Patroni is
# started and stopped, and bounded waits. Sourced, never run.

die() {
  echo "ha: $*" >&2
  exit 1
}

log() {
  echo "ha: $*" >&2
}

PG_BIN="${HA_PG_BIN:-/usr/lib/postgresql/15/bin}"
# Patroni is a Debian package of Python; it must run under the system interpreter that has its
# modules, whatever `python3` a developer's PATH finds first.
PATRONI=(/usr/bin/python3 /usr/bin/patroni)
PATRONICTL=(/usr/bin/python3 /usr/bin/patronictl)
# PostgreSQL refuses to run as root: the cluster belongs to the postgres user then.
# `setpriv` execs (where `runuser` forks and waits), so the pid a node's start records is
# Patroni's own.
RUN_AS=()
if [[ "$(id -u)" == "0" ]]; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
  RUN_AS=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it succeeds; fails naming
# WHAT when SECONDS pass first.
wait_until() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "ha: timed out after ${seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# The HTTP status of a GET, or 000 when nothing answers.
http_status() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true
}

# node_start NAME: starts the node's Patroni in the background, detached (its own session, so
# that a test that asked for it does not own it), writing its pid and its log in the node's
# directory.
node_start() {
  local name="$1"
  local dir="$HA_DIR/$name"
  [[ -f "$dir/patroni.yml" ]] || die "no node named $name in $HA_DIR"
  HOME="$dir" setsid "${RUN_AS[@]}" "${PATRONI[@]}" "$dir/patroni.yml" \
    >>"$dir/patroni.log" 2>&1 </dev/null &
  echo $! >"$dir/patroni.pid"
  disown
}

# node_pids NAME: the pids of the node's Patroni and of its postmaster, those that are running.
node_pids() {
  local dir="$HA_DIR/$1" pid
  for file in "$dir/patroni.pid" "$dir/data/postmaster.pid"; do
    [[ -f "$file" ]] || continue
    pid="$(head -n 1 "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  done
  return 0
}

# node_kill NAME: SIGKILL to the node's Patroni and its postmaster at once: the machine is lost,
# nothing restarts PostgreSQL in place. (The postmaster's children exit on their own when they
# see it die.) Waits, bounded, until no process of the node is left.
node_kill() {
  local name="$1"
  local pids
  read -r -a pids <<<"$(node_pids "$name" | tr '\n' ' ')"
  ((${#pids[@]} > 0)) && kill -KILL "${pids[@]}" 2>/dev/null
  wait_until 30 "the processes of $name to exit" gone "${pids[@]}"
  # The backends outlive the postmaster for a moment; the port is free when they are gone.
  wait_until 30 "PostgreSQL of $name to stop listening" \
    bash -c "! '$PG_BIN/pg_isready' -q -h 127.0.0.1 -p $(node_field "$name" pg_port)"
}

# node_kill_postgres NAME: SIGKILL to the node's postmaster alone; its Patroni lives on, and
# restarts PostgreSQL (or lets another node lead). Waits, bounded, until the old postmaster is
# gone.
node_kill_postgres() {
  local name="$1" file="$HA_DIR/$1/data/postmaster.pid" pid
  [[ -f "$file" ]] || die "$name has no postmaster"
  pid="$(head -n 1 "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || die "$name's postmaster.pid holds no pid"
  kill -KILL "$pid"
  wait_until 30 "the postmaster of $name to exit" gone "$pid"
}

# node_field NAME FIELD: a field of the node's line in $HA_DIR/nodes (name pg_port rest_port).
node_field() {
  local name="$1" field="$2"
  awk -v n="$name" -v f="$field" '
    $1 == n { if (f == "pg_port") print $2; else if (f == "rest_port") print $3 }' "$HA_DIR/nodes"
}

# gone PID...: whether none of these processes is running.
gone() {
  local pid
  for pid in "$@"; do
    kill -0 "$pid" 2>/dev/null && return 1
  done
  return 0
}
