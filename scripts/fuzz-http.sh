#!/usr/bin/env bash
# HTTP fuzzing of the whole API from its OpenAPI document, with schemathesis.
#
# Starts the service on a throwaway embedded store with a fixed KEK and token, on a free port of
# 127.0.0.1, and lets schemathesis send it requests generated from docs/openapi.json (or from
# GET /openapi.json when the file is missing): valid ones and invalid ones, in every phase
# (schema examples, boundary coverage, random fuzzing, stateful sequences). It fails when:
# - any answer is a 5xx (nothing here tampers with stored data, so not even integrity_error is
#   expected), or does not match the document (status, content type, headers, body schema);
# - a request gets no answer within 10 s (a hang), or a connection drops (a panic);
# - the server logged a panic, or is no longer running at the end.
#
# schemathesis is installed, pinned, into a virtualenv outside the work tree on first use, so
# this runs on a fresh machine with only python3. The run is bounded: FUZZ_MAX_EXAMPLES cases
# per operation and phase, and FUZZ_TIME_LIMIT seconds in all.
#
# Settings (environment):
#   FUZZ_MAX_EXAMPLES  cases per operation (default 100)
#   FUZZ_TIME_LIMIT    seconds before the run is stopped as a failure (default 900)
#   FUZZ_PROFILE       debug (default: overflow checks and debug assertions on) or release
#   FUZZ_SEED          schemathesis seed, to replay a run (default: random)
#   FUZZ_CHECKS        schemathesis checks (default: the server-error and conformance ones)
#   FUZZ_VENV          where the virtualenv lives (default /tmp/secrets-fuzz-venv)
#   FUZZ_KEEP          1 to keep the temporary directory (store, logs, reports) afterwards
set -euo pipefail

SCHEMATHESIS_VERSION="4.32.5"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-100}"
TIME_LIMIT="${FUZZ_TIME_LIMIT:-900}"
PROFILE="${FUZZ_PROFILE:-debug}"
VENV="${FUZZ_VENV:-/tmp/secrets-fuzz-venv}"
CARGO="${CARGO:-cargo}"
CHECKS="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}"
# Fixed, public test keys: this store is thrown away after the run.
KEK="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
TOKEN="fuzz-service-token-0123456789"

log() { echo "fuzz-http: $*" >&2; }

# --- schemathesis, pinned, in its own virtualenv ----------------------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# --- the service ------------------------------------------------------------------------------
case "$PROFILE" in
  debug) "$CARGO" build --locked --bin secrets-service --manifest-path "$ROOT/Cargo.toml" ;;
  release) "$CARGO" build --locked --release --bin secrets-service --manifest-path "$ROOT/Cargo.toml" ;;
  *) log "FUZZ_PROFILE must be debug or release"; exit 2 ;;
esac
BIN="$ROOT/target/$PROFILE/secrets-service"

WORK="$(mktemp -d /tmp/secrets-fuzz.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "${FUZZ_KEEP:-0}" == "1" ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
log "starting $BIN on $URL (store and logs in $WORK)"
env DATABASE_URL="sqlite://$WORK/secrets.db" \
  KEY_ENCRYPTION_KEY="$KEK" \
  SERVICE_AUTH_TOKENS="$TOKEN" \
  SECRETS__MODE=production \
  SECRETS__SERVER__BIND="127.0.0.1:$PORT" \
  SECRETS__SERVER__WORKERS=2 \
  SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS=5 \
  SECRETS__LOG__FORMAT=json \
  RUST_BACKTRACE=1 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# Ready when /healthz answers; bounded, and stops early if the process died.
python3 - "$URL" "$SERVER_PID" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the service exited during start-up")
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the service did not answer /healthz within 60 s")
EOF

SCHEMA="$ROOT/docs/openapi.json"
if [[ ! -f "$SCHEMA" ]]; then
  log "docs/openapi.json is missing; using the document the service serves"
  SCHEMA="$URL/openapi.json"
fi

# --- hooks: real namespaces for the {accessKey} routes ----------------------------------------
# Access keys are 256-bit random values, so a generated one never names a namespace, and every
# route under /namespaces/{accessKey} would stop at 404. Before three calls in four, the hook
# creates a fresh namespace holding a secret, also one named like the generated {key}, and
# substitutes its access key, so that the handlers behind the lookup are fuzzed as well. A fresh
# namespace per call keeps one call's DELETE or access-key rotation from starving the others.
cat >"$WORK/hooks.py" <<'EOF'
import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request

import schemathesis

BASE = os.environ["FUZZ_BASE_URL"]
TOKEN = os.environ["FUZZ_TOKEN"]
CHOICE = random.Random(os.environ.get("FUZZ_SEED") or None)


def call(method, path, body=None):
    request = urllib.request.Request(
        BASE + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if not params or "accessKey" not in params or CHOICE.random() < 0.25:
        return
    status, body = call("POST", "/namespaces")
    if status != 201:
        raise RuntimeError(f"set-up: POST /namespaces answered {status}: {body[:200]!r}")
    key = json.loads(body)["accessKey"]
    path = "/namespaces/" + key
    status, body = call("POST", path, {"key": "SEEDED", "value": "a seeded value"})
    if status != 201:
        raise RuntimeError(f"set-up: putting a secret answered {status}: {body[:200]!r}")
    name = params.get("key")
    if isinstance(name, str):
        # May be refused (an invalid name); the call under test then meets a missing secret.
        call("POST", path, {"key": name, "value": "a value for the generated name"})
    params["accessKey"] = key
EOF

# --- the run ----------------------------------------------------------------------------------
SEED_ARGS=()
if [[ -n "${FUZZ_SEED:-}" ]]; then SEED_ARGS=(--seed "$FUZZ_SEED"); fi
log "schemathesis $SCHEMATHESIS_VERSION: $MAX_EXAMPLES examples per operation, at most ${TIME_LIMIT}s"
status=0
(
  # Run where schemathesis may leave its example database and reports: the temporary directory.
  cd "$WORK"
  FUZZ_BASE_URL="$URL" FUZZ_TOKEN="$TOKEN" SCHEMATHESIS_HOOKS="$WORK/hooks.py" \
    timeout --signal=INT --kill-after=30 "$TIME_LIMIT" \
    "$VENV/bin/schemathesis" run "$SCHEMA" \
      --url "$URL" \
      --header "Authorization: Bearer $TOKEN" \
      --checks "$CHECKS" \
      --max-examples "$MAX_EXAMPLES" \
      --request-timeout 10 \
      --workers 2 \
      --suppress-health-check all \
      --report junit --report-dir "$WORK/report" \
      "${SEED_ARGS[@]}"
) || status=$?
if [[ "$status" == "124" ]]; then
  log "the run did not finish within ${TIME_LIMIT}s"
fi

# --- what the server says about itself --------------------------------------------------------
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  log "the service is no longer running; its log ends with:"
  tail -n 40 "$WORK/server.log" >&2
  status=1
elif grep -q "panicked" "$WORK/server.log"; then
  log "the service panicked:"
  grep -A 20 "panicked" "$WORK/server.log" | head -n 60 >&2
  status=1
fi
answered="$(grep -c '"status"' "$WORK/server.log" || true)"
log "the service logged $answered requests"

if [[ "$status" != "0" ]]; then
  log "FAILED (exit $status)"
  exit "$status"
fi
log "passed"
