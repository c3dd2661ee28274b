#!/usr/bin/env bash
# make deploy-check: runs every `sh` block of docs/deploy.md, in order, in one shell, against a
# real PostgreSQL with TLS, inside a throwaway copy of this machine, then checks the result.
#
# - Certificates are made here with openssl: one CA that signs the database's certificate
#   (db.internal), the service's (secrets.internal, and a renewed one for section 11) and a
#   caller's client certificate. The guide finds them in the current directory, as it says.
# - A private mount namespace over an overlay of / (writes go to memory; the machine is left as
#   it was; target/ is the repository's own, so builds are reused) and a private network
#   namespace (only loopback; db.internal and secrets.internal are 127.0.0.1 there), where
#   PostgreSQL runs with TLS on port 5432 and refuses every connection that is not TLS.
# - systemctl is a stand-in (no systemd as PID 1 here): daemon-reload runs
#   `systemd-analyze verify` on the unit, start/restart/stop run ExecStart as User= with
#   EnvironmentFile= and stop it with KillSignal=, reload sends SIGHUP. docs/deploy.md says so.
#
# Needs root, util-linux (unshare, setpriv, runuser), openssl, curl, psql, PostgreSQL's initdb
# and pg_ctl, systemd-analyze, and the Rust toolchain. It says what to install when one is
# missing.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"

if [[ "${1:-}" != "--inside" ]]; then
  [[ "$(id -u)" == 0 ]] || { echo "deploy-check: run as root (it uses namespaces and a throwaway copy of /)" >&2; exit 1; }
  missing=()
  for tool in unshare setpriv runuser chroot openssl curl psql systemd-analyze useradd cargo python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "deploy-check: missing ${missing[*]}; on Debian: apt-get install util-linux openssl curl postgresql-client systemd passwd python3 (and rustup for cargo)" >&2
    exit 1
  fi
  pg_bin() {
    command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
  }
  INITDB="$(pg_bin initdb)"; PG_CTL="$(pg_bin pg_ctl)"
  if [[ -z "$INITDB" || -z "$PG_CTL" ]]; then
    echo "deploy-check: initdb and pg_ctl are missing; on Debian: apt-get install postgresql" >&2
    exit 1
  fi
  id postgres >/dev/null 2>&1 || { echo "deploy-check: a 'postgres' user is needed to run the throwaway server (apt-get install postgresql)" >&2; exit 1; }

  WORK="$(mktemp -d /tmp/secrets-deploy-check.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
  GIVEN="$WORK/given"
  mkdir -p "$GIVEN/renewed"
  cd "$GIVEN"
  # The files "from your certificate authority".
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.crt -subj "/CN=deploy-check CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  issue() { # file common-name subjectAltName extendedKeyUsage
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' "$4" "${3:+subjectAltName=$3}" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  issue db "db.internal" "DNS:db.internal" serverAuth
  issue server "secrets.internal" "DNS:secrets.internal" serverAuth
  issue renewed/server "secrets.internal" "DNS:secrets.internal" serverAuth
  issue client "main-server" "" clientAuth
  cp ca.crt db-ca.crt; cp ca.crt clients-ca.crt; cp ca.crt service-ca.crt
  echo "deploy-check: certificates made; entering a throwaway copy of this machine" >&2
  # Not exec: the trap above removes the work directory once the namespaces are gone.
  status=0
  unshare --mount --net --pid --fork --propagation private \
    env INITDB="$INITDB" PG_CTL="$PG_CTL" WORK="$WORK" "$REPO/scripts/deploy-check.sh" --inside || status=$?
  exit "$status"
fi

# ---- Inside the namespaces --------------------------------------------------------------------
ip link set lo up
ROOT="$WORK/root"
mkdir -p "$WORK/layer" "$ROOT"
mount -t tmpfs -o size=8g tmpfs "$WORK/layer"
mkdir -p "$WORK/layer/upper" "$WORK/layer/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$WORK/layer/upper,workdir=$WORK/layer/work" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
mount --rbind /sys "$ROOT/sys"
# Builds go to the repository's own target/ (so a second run builds nothing).
mkdir -p "$REPO/target"
mount --bind "$REPO/target" "$ROOT$REPO/target"
cp -a "$WORK/given/." "$ROOT$REPO/"
printf '127.0.0.1 db.internal secrets.internal\n' >> "$ROOT/etc/hosts"

# The guide's blocks, with the stand-ins and the checks around them, as one script.
python3 - "$REPO/docs/deploy.md" > "$ROOT/run-the-guide.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = None
hooks = {
    # Section 11 renews the certificate: the "new" files from the CA are put in place first.
    "11.": "cp renewed/server.crt renewed/server.key .",
}
for line_no, block in ((m.start(), m.group(1)) for m in re.finditer(r"^```sh\n(.*?)^```$", text, re.S | re.M)):
    heading = [h for h in re.findall(r"^## (.*)$", text[:line_no], re.M)][-1]
    for prefix, hook in hooks.items():
        if heading.startswith(prefix) and hook:
            print(f"# harness: {hook}\n{hook}")
            hooks[prefix] = None
    print(f"echo '==== docs/deploy.md: {heading}' >&2")
    print("set -x")
    print(block, end="")
    print("{ set +x; } 2>/dev/null")
PY

cat > "$ROOT/deploy-check-inside.sh" <<'INSIDE'
#!/usr/bin/env bash
set -euo pipefail
cd "$REPO"

# ---- PostgreSQL with TLS on db.internal:5432, refusing plaintext ----
PGDATA=/var/lib/deploy-check-pg
install -d -o postgres -m 0700 "$PGDATA"
runuser -u postgres -- "$INITDB" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
install -o postgres -m 0600 db.crt db.key ca.crt "$PGDATA/"
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 5432
unix_socket_directories = '$PGDATA'
ssl = on
ssl_cert_file = 'db.crt'
ssl_key_file = 'db.key'
fsync = off
CONF
cat > "$PGDATA/pg_hba.conf" <<HBA
local all postgres trust
hostssl all postgres 127.0.0.1/32 trust
hostssl secrets secrets 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 reject
HBA
runuser -u postgres -- "$PG_CTL" -D "$PGDATA" -l "$PGDATA/server.log" -w start >/dev/null
echo "deploy-check: PostgreSQL with TLS on db.internal:5432" >&2

# ---- systemctl, as far as the unit says (no systemd as PID 1 here) ----
UNIT=/etc/systemd/system/secrets-service.service
SERVICE_LOG=/var/log/secrets-service.log
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }
service_start() {
  local user env exec
  user="$(unit_value User)"; env="$(unit_value EnvironmentFile)"; exec="$(unit_value ExecStart)"
  # shellcheck disable=SC2086 # ExecStart is a command line
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    setpriv --reuid="$user" --regid="$(unit_value Group)" --init-groups \
    sh -c 'set -a; . "$1"; set +a; shift; exec "$@"' sh "$env" $exec >>"$SERVICE_LOG" 2>&1 &
  echo $! > /run/secrets-service.pid
}
service_stop() {
  local pid; pid="$(cat /run/secrets-service.pid)"
  kill "-$(unit_value KillSignal | sed 's/^SIG//')" "$pid"
  for _ in $(seq 450); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "deploy-check: the service did not stop within TimeoutStopSec" >&2; return 1
}
systemctl() {
  case "$*" in
    daemon-reload)
      local said; said="$(systemd-analyze verify "$UNIT" 2>&1)" || { echo "$said" >&2; return 1; }
      [[ -z "$said" ]] || { echo "systemd-analyze verify: $said" >&2; return 1; } ;;
    "enable --now secrets-service"|"start secrets-service") service_start ;;
    "restart secrets-service") service_stop; service_start ;;
    "stop secrets-service") service_stop ;;
    "reload secrets-service") kill -HUP "$(cat /run/secrets-service.pid)" ;;
    *) echo "deploy-check: systemctl $* is not emulated" >&2; return 1 ;;
  esac
}

# ---- The guide ----
set +e
( set -euo pipefail; . /run-the-guide.sh )
status=$?
set -e
if ((status)); then
  echo "deploy-check: the guide failed (exit $status); the service printed:" >&2
  cat "$SERVICE_LOG" >&2 2>/dev/null || true
  exit 1
fi

# ---- What the guide must have left ----
fail() { echo "deploy-check: $*" >&2; cat "$SERVICE_LOG" >&2 2>/dev/null || true; exit 1; }
pid="$(cat /run/secrets-service.pid)"
[[ "$(ps -o user= -p "$pid" | tr -d ' ')" == secrets-service ]] || fail "the service does not run as secrets-service"
[[ "$(readlink "/proc/$pid/exe")" == /usr/local/bin/secrets-service ]] || fail "the service is not /usr/local/bin/secrets-service"
tls="$(psql -X -At -h "$PGDATA" -U postgres -d postgres -c \
  "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'secrets'")"
[[ "$tls" =~ ^([1-9][0-9]*)\|\1$ ]] || fail "the service's connections to PostgreSQL are not all TLS: $tls (encrypted|all)"
served="$(openssl s_client -connect 127.0.0.1:8443 -servername secrets.internal -cert client.crt -key client.key \
  </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256)"
renewed="$(openssl x509 -in renewed/server.crt -noout -fingerprint -sha256)"
[[ "$served" == "$renewed" ]] || fail "the listener does not serve the renewed certificate after the reload"
grep -q "reloaded the TLS certificate" "$SERVICE_LOG" || fail "no reload in the log"
if grep -E '"level":"(WARN|ERROR)"' "$SERVICE_LOG"; then fail "the service logged warnings or errors (above)"; fi
code="$(curl -s -o /dev/null -w '%{http_code}' --cacert service-ca.crt https://secrets.internal:8443/healthz || true)"
[[ "$code" == 000 ]] || fail "a caller without a client certificate was answered $code"
systemctl stop secrets-service
trail=/var/log/secrets-service/audit.log
[[ "$(stat -c '%U %a' "$trail")" == "secrets-service 600" ]] || fail "the audit trail is not the service's own, mode 0600: $(stat -c '%U %a' "$trail")"
grep -q '"type":"request"' "$trail" || fail "the audit trail holds no request"
verified="$(runuser -u secrets-service -- sh -c 'set -a; . /etc/secrets-service/env; set +a; exec secrets-service audit verify "$1"' sh "$trail")" \
  || fail "audit verify found the trail edited: $verified"
echo "deploy-check: $verified" >&2
echo "deploy-check: passed: every command of docs/deploy.md ran; the service runs as secrets-service, on TLS both ways, took the renewed certificate, and its audit trail verifies" >&2
INSIDE
chmod +x "$ROOT/deploy-check-inside.sh"
exec chroot "$ROOT" env -i PATH="$PATH" HOME=/root TERM=dumb REPO="$REPO" INITDB="$INITDB" PG_CTL="$PG_CTL" \
  CARGO_HOME="${CARGO_HOME:-/root/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-/root/.rustup}" /deploy-check-inside.sh
