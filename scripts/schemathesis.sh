#!/usr/bin/env bash
# Runs schemathesis (pinned, from PyPI, in a venv under target/tools) against
# a live bridge: the demo's three sites on a free loopback port, memory store,
# a known API key. Every answer must conform to /api/openapi.json: no 5xx, and
# status, content type, headers and body as documented.
#
# Needs python3 with venv (scripts/test.sh installs python3-venv when missing).
# Hooks (scripts/schemathesis_hooks.py) name real sites in generated bodies.
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 50), SCHEMATHESIS_MAX_TIME (seconds,
# default 75; the fuzzing and stateful phases use what is left of it),
# SCHEMATHESIS_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=target/tools/schemathesis-$version
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --locked --quiet --bin session-bridge

work=$(mktemp -d)
bridge_pid=""
cleanup() {
  if [ -n "$bridge_pid" ]; then
    kill "$bridge_pid" 2>/dev/null || true
    wait "$bridge_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
site() {
  local id=$1 partners=$2
  cat <<EOF
[[sites]]
id = "$id"
origins = ["http://$id.localhost:$port"]
partners = [$partners]
return_paths = ["/"]
on_missing_session = "anonymous"

EOF
}
{
  cat <<EOF
[server]
listen = "127.0.0.1:$port"

[store]
kind = "memory"

[tokens]
keys_dir = "$work/keys"

[audit]
file = "$work/audit.log"

[api]
keys = ["env:SESSION_BRIDGE_API_KEY"]

[admin]
tokens = ["env:SESSION_BRIDGE_ADMIN_TOKEN"]

# Room for the fuzzer's junk tokens, so most exchanges reach the token
# checks; the rest meet the documented 429.
[limits]
token_rejections_per_minute = 120
token_rejections_burst = 20

EOF
  site account '"shop", "checkout"'
  site shop '"account", "checkout"'
  site checkout '"account", "shop"'
} >"$work/config.toml"

api_key="schemathesis-api-key-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SESSION_BRIDGE_API_KEY=$api_key \
  SESSION_BRIDGE_ADMIN_TOKEN="schemathesis-admin-$api_key" \
  RUST_LOG=warn \
  target/debug/session-bridge serve --config "$work/config.toml" >"$work/bridge.log" 2>&1 &
bridge_pid=$!

host="account.localhost:$port"
up=""
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null -H "Host: $host" "http://127.0.0.1:$port/healthz" 2>/dev/null; then
    up=1
    break
  fi
  if ! kill -0 "$bridge_pid" 2>/dev/null; then
    echo "the bridge did not start:" >&2
    cat "$work/bridge.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "the bridge did not answer /healthz within 10s" >&2
  exit 1
fi

echo "== schemathesis $version against http://127.0.0.1:$port (Host: $host)"
status=0
# From the temporary directory: schemathesis and hypothesis keep their
# caches in the working directory.
root=$PWD
(cd "$work" && SCHEMATHESIS_HOOKS="$root/scripts/schemathesis_hooks.py" \
  "$root/$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --header "Host: $host" \
  --header "Authorization: Bearer $api_key" \
  --header "Accept: application/json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
  --max-time "${SCHEMATHESIS_MAX_TIME:-75}" \
  --request-timeout 10 \
  --workers 1 \
  --report har --report-har-path "$work/run.har" \
  --generation-database none \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  --no-color) || status=$?

if [ -f "$work/run.har" ]; then
  echo "== answers by operation and status (405s to undocumented methods left out)"
  "$venv/bin/python" - "$work/run.har" <<'PY'
import collections, json, sys, urllib.parse
counts = collections.Counter()
for entry in json.load(open(sys.argv[1]))["log"]["entries"]:
    path = urllib.parse.urlsplit(entry["request"]["url"]).path
    if path.startswith("/api/v1/sessions/"):
        path = "/api/v1/sessions/{id}"
    counts[(path, entry["request"]["method"], entry["response"]["status"])] += 1
for (path, method, status), n in sorted(counts.items()):
    if status != 405:
        print(f"  {method:6} {path:24} {status}  {n}")
PY
fi

# The bridge's own errors (a 5xx it made, a failure it logged). actix-http's
# lines about requests too malformed to reach the app are not the bridge's.
if grep '"level":"ERROR"' "$work/bridge.log" | grep -v '"target":"actix_http::' >"$work/errors.log"; then
  echo "the bridge logged errors:" >&2
  head -20 "$work/errors.log" >&2
  status=1
fi
exit "$status"
