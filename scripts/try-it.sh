#!/usr/bin/env bash
# The README's "Try it": every call of the API in turn, each printed with what it answered.
# Stops at the first call that fails, showing the service's error (a wrong token is a 401).
#
#   scripts/try-it.sh <service token> [base URL]      (default http://localhost:8080)
#
# Extra curl options (a CA file, a client certificate) can be passed in CURL_OPTIONS, e.g.
#   CURL_OPTIONS="--cacert ca.crt --cert client.crt --key client.key" scripts/try-it.sh "$TOKEN" https://secrets.internal:8443
set -euo pipefail

TOKEN="${1:?usage: scripts/try-it.sh <service token> [base URL]}"
BASE="${2:-http://localhost:8080}"
read -r -a EXTRA <<<"${CURL_OPTIONS:-}"
BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT

# call METHOD PATH [JSON body [content type]]: prints the call and its answer; sets ANSWER.
call() {
  local method="$1" path="$2" body="${3:-}" type="${4:-application/json}"
  local args=(-sS -o "$BODY" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $TOKEN")
  if [[ -n "$body" ]]; then
    args+=(-H "Content-Type: $type" --data "$body")
  fi
  local status
  status="$(curl "${args[@]}" "${EXTRA[@]}" "$BASE$path")"
  ANSWER="$(cat "$BODY")"
  local shown="$path"
  if [[ -n "${KEY:-}" ]]; then
    shown="${path//"$KEY"/\{accessKey\}}"
  fi
  printf '%s %s%s\n  -> %s %s\n' "$method" "$shown" "${body:+ $body}" "$status" "$ANSWER"
  if (( status >= 400 )); then
    echo "stopped: $method $path was answered $status" >&2
    exit 1
  fi
}

access_key() { sed -n 's/.*"accessKey":"\([^"]*\)".*/\1/p' <<<"$ANSWER"; }

# Create a namespace; keep its access key: it is shown only once.
call POST /namespaces
KEY="$(access_key)"

# Add a secret, update it, read the namespace.
call POST "/namespaces/$KEY" '{"key": "SECRET_API_KEY", "value": "foobar"}'
call POST "/namespaces/$KEY" '{"key": "SECRET_API_KEY", "value": "bazqux"}'
call GET "/namespaces/$KEY"

# One secret with its timestamps; names and digests without values; a merge patch.
call GET "/namespaces/$KEY/secrets/SECRET_API_KEY"
call GET "/namespaces/$KEY/keys"
call PATCH "/namespaces/$KEY" '{"OTHER": "x", "SECRET_API_KEY": null}' application/merge-patch+json

# Rotate the access key (the old one stops working), then delete the namespace.
call POST "/namespaces/$KEY/access-key"
KEY="$(access_key)"
call DELETE "/namespaces/$KEY"
