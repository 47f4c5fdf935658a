#!/usr/bin/env bash
# HTTP benchmark of the bridge against reference apps, side by side in one
# run on one Redis, so ratios hold on a noisy machine:
#
#   flow-a, 64 virtual browsers      vs the floor (benches/floor.rs), per algorithm
#   flow-a/1conn, 64 browsers        vs the floor with one Redis connection opened
#                                    at start and shared by its workers
#                                    (--shared-connection), per algorithm
#   flow-a, 1 virtual browser (p50)  vs the floor, EdDSA
#   flow-a paced at RATE/s (p99)     vs the floor, EdDSA
#   session-read, 64 browsers        vs actix-session on Redis (benches/peer_session.rs)
#   floor-flow-a, 64 browsers        vs the floor, per algorithm: the floor app
#                                    with flow A's `start` step at its barest, so
#                                    what a third request costs on its own (in
#                                    this row the "product" column is that app)
#
# Product and reference rounds alternate (ABBA) to average out drift. The
# table gives each figure averaged over the rounds and the ratio
# product ÷ reference.
#
# Redis is emptied before every measurement (FLUSHALL SYNC: Redis 6.2 or
# later; Debian's is 7). Token records live 45 s; left
# in place, the hundreds of thousands a loaded run writes all expire during
# whichever measurement runs 45 s later, and Redis's expiry cycle then
# blocks for up to 25 ms at a time (`expired_time_cap_reached_count`): a
# tail that belongs to the earlier run, landing on product or reference by
# the luck of the order. The paced measurement runs for PACED_DURATION, past
# 45 s, so it does include the expiry of its own records at its own rate:
# the steady state of a bridge serving that rate.
#
# Usage: scripts/bench-http.sh [--quick]
#   DURATION=10s   each measurement's length (--quick: 1s)
#   ROUNDS=3       rounds per measurement (--quick: 1)
#   CONCURRENCY=64 virtual browsers of the loaded measurements
#   RATE=5000      iterations per second of the paced measurement
#   PACED_DURATION=60s  the paced measurement's length (--quick: 1s)
#   BENCH_THREADS=1  load generator threads
#   KEEP_TMP=1     keep the temporary directory (configs, logs, JSON reports)
# Needs redis-server and python3. Exits non-zero if any run saw an error.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown option: $arg (see --help)" >&2
      exit 2
      ;;
  esac
done
if [ "$quick" -eq 1 ]; then
  DURATION=1s
  ROUNDS=1
  PACED_DURATION=1s
fi
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-5000}
PACED_DURATION=${PACED_DURATION:-60s}
BENCH_THREADS=${BENCH_THREADS:-1}

for tool in redis-server python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-http: $tool is needed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "bench-http: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one process this script started.
stop() {
  local pid=$1 kept=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  pids=("${kept[@]}")
}

echo "== building (release)" >&2
# One release build for the bridge and the two bench apps (shared
# dependencies built once); the executables' paths come from cargo itself,
# wherever the target dir is.
artifacts="$tmp/artifacts.json"
cargo build --release --bin session-bridge --bench floor --bench peer_session \
  --message-format=json >"$artifacts"
read -r bridge_bin floor_bin peer_bin < <(python3 - "$artifacts" <<'EOF'
import json, sys
found = {}
for line in open(sys.argv[1]):
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        found[message["target"]["name"]] = message["executable"]
names = ["session-bridge", "floor", "peer_session"]
missing = [n for n in names if n not in found]
if missing:
    sys.exit("bench-http: cargo built no executable for " + ", ".join(missing))
print(" ".join(found[n] for n in names))
EOF
)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until `redis-server` on port $1 answers PING.
wait_redis() {
  python3 - "$1" <<'EOF'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# Empties Redis on port $1 (FLUSHALL SYNC): see the note at the top.
flush_redis() {
  python3 - "$1" <<'EOF'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as s:
    s.sendall(b"FLUSHALL SYNC\r\n")
    if not s.recv(16).startswith(b"+OK"):
        sys.exit("bench-http: FLUSHALL failed")
EOF
}

# Waits for "listening on ADDR" in log $1 of process $2; prints ADDR.
wait_listening() {
  local log=$1 pid=$2 i addr
  for i in $(seq 1 300); do
    addr=$(sed -n 's/^listening on //p' "$log" | head -n1)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-http: no 'listening on' from $log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# Waits until the bridge on $1 answers /readyz.
wait_ready() {
  python3 - "$1" <<'EOF'
import sys, time, urllib.request
deadline = time.time() + 30
while time.time() < deadline:
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}/readyz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

echo "== redis" >&2
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
wait_redis "$redis_port" || { echo "bench-http: redis-server did not start" >&2; exit 1; }
redis_url="redis://127.0.0.1:$redis_port/"

SESSION_BRIDGE_API_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
export SESSION_BRIDGE_API_KEY
from_origin="http://account.localhost:8080"
to_origin="http://shop.localhost:8080"

# Starts the bridge with algorithm $1; sets bridge_pid and bridge_addr.
start_bridge() {
  local algorithm=$1 port config log
  port=$(free_port)
  config="$tmp/bridge-$algorithm.toml"
  log="$tmp/bridge-$algorithm.log"
  cat >"$config" <<EOF
[server]
listen = "127.0.0.1:$port"

[store]
kind = "redis"
url = "$redis_url"

[tokens]
algorithm = "$algorithm"
keys_dir = "$tmp/keys-$algorithm"

[audit]
file = "$tmp/audit-$algorithm.log"

[api]
keys = ["env:SESSION_BRIDGE_API_KEY"]

# Every virtual browser comes from 127.0.0.1: the per-IP rate limits would
# measure themselves, not the bridge.
[limits]
bridge_per_second = 0
api_per_second = 0
token_rejections_per_minute = 0

[[sites]]
id = "account"
origins = ["$from_origin"]
partners = ["shop"]
allow_iframe = true

[[sites]]
id = "shop"
origins = ["$to_origin"]
partners = ["account"]
EOF
  "$bridge_bin" serve --config "$config" --listen "127.0.0.1:$port" >"$log" 2>&1 &
  bridge_pid=$!
  pids+=("$bridge_pid")
  bridge_addr="127.0.0.1:$port"
  if ! wait_ready "$bridge_addr"; then
    echo "bench-http: the bridge did not become ready:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

# Starts a reference app ($1: floor|peer_session, then its flags); sets ref_pid, ref_addr.
start_reference() {
  local name=$1 bin log
  shift
  case "$name" in
    floor) bin=$floor_bin ;;
    peer_session) bin=$peer_bin ;;
  esac
  log="$tmp/$name-$*.log"
  log=${log// /_}
  "$bin" --serve 127.0.0.1:0 --redis "$redis_url" "$@" >"$log" 2>&1 &
  ref_pid=$!
  pids+=("$ref_pid")
  ref_addr=$(wait_listening "$log" "$ref_pid") || exit 1
}

results="$tmp/results.jsonl"
: >"$results"
failures=0

# One bench run: $1 measure, $2 side (product|reference), $3 address, then bench flags.
measure() {
  local name=$1 side=$2 addr=$3 out status=0
  shift 3
  out="$tmp/run.json"
  echo "-- $name: $side ($*)" >&2
  flush_redis "$redis_port"
  "$bridge_bin" bench --json --connect "$addr" --from "$from_origin" --to "$to_origin" \
    --api-key "$SESSION_BRIDGE_API_KEY" --threads "$BENCH_THREADS" "$@" >"$out" || status=$?
  if [ "$status" -ne 0 ]; then
    failures=$((failures + 1))
    echo "bench-http: $name ($side) exited $status" >&2
  fi
  python3 - "$name" "$side" "$out" "$status" >>"$results" <<'EOF'
import json, sys
name, side, path, status = sys.argv[1:5]
try:
    report = json.load(open(path))
except ValueError:
    report = None
print(json.dumps({"measure": name, "side": side, "status": int(status), "report": report}))
EOF
}

# Product and reference of one measurement, in the order of this round.
pair() {
  local round=$1 name=$2 product_addr=$3 product_args=$4 ref_addr=$5 ref_args=$6
  # shellcheck disable=SC2086 # the flag strings are split on purpose
  if [ $((round % 2)) -eq 1 ]; then
    measure "$name" product "$product_addr" $product_args
    measure "$name" reference "$ref_addr" $ref_args
  else
    measure "$name" reference "$ref_addr" $ref_args
    measure "$name" product "$product_addr" $product_args
  fi
}

loaded="--duration $DURATION --concurrency $CONCURRENCY"
paced="--duration $PACED_DURATION --concurrency $CONCURRENCY --rate $RATE"
echo "== peer app (actix-session)" >&2
start_reference peer_session
peer_addr=$ref_addr

for algorithm in EdDSA HS256; do
  echo "== $algorithm" >&2
  start_bridge "$algorithm"
  start_reference floor --algorithm "$algorithm"
  floor_addr=$ref_addr
  floor_pid=$ref_pid
  start_reference floor --algorithm "$algorithm" --shared-connection
  shared_floor_addr=$ref_addr
  shared_floor_pid=$ref_pid
  for round in $(seq 1 "$ROUNDS"); do
    pair "$round" "flow-a c=$CONCURRENCY $algorithm" \
      "$bridge_addr" "--scenario flow-a $loaded" "$floor_addr" "--scenario floor $loaded"
    pair "$round" "flow-a/1conn c=$CONCURRENCY $algorithm" \
      "$bridge_addr" "--scenario flow-a $loaded" "$shared_floor_addr" "--scenario floor $loaded"
    pair "$round" "floor-flow-a c=$CONCURRENCY $algorithm" \
      "$floor_addr" "--scenario floor-flow-a $loaded" "$floor_addr" "--scenario floor $loaded"
    if [ "$algorithm" = EdDSA ]; then
      pair "$round" "flow-a c=1 $algorithm" \
        "$bridge_addr" "--scenario flow-a --duration $DURATION --concurrency 1" \
        "$floor_addr" "--scenario floor --duration $DURATION --concurrency 1"
      pair "$round" "flow-a rate=$RATE $algorithm" \
        "$bridge_addr" "--scenario flow-a $paced" \
        "$floor_addr" "--scenario floor $paced"
      pair "$round" "session-read c=$CONCURRENCY" \
        "$bridge_addr" "--scenario session-read $loaded" \
        "$peer_addr" "--scenario peer-read $loaded"
    fi
  done
  stop "$floor_pid"
  stop "$shared_floor_pid"
  stop "$bridge_pid"
done

echo >&2
python3 - "$results" "$ROUNDS" "$DURATION" "$PACED_DURATION" <<'EOF'
import json, sys
from statistics import mean
path, rounds, duration, paced_duration = sys.argv[1:5]
runs = [json.loads(line) for line in open(path)]
by = {}
for run in runs:
    by.setdefault((run["measure"], run["side"]), []).append(run)

def figure(measure, side, pick):
    values = [pick(r["report"]) for r in by.get((measure, side), []) if r["report"]]
    return mean(values) if values else None

rows = []
def row(measure, label, pick):
    product = figure(measure, "product", pick)
    reference = figure(measure, "reference", pick)
    ratio = product / reference if product is not None and reference else None
    rows.append((measure, label, product, reference, ratio))

throughput = lambda r: r["per_second"]
p50 = lambda r: r["total"]["p50_ms"]
p99 = lambda r: r["total"]["p99_ms"]
measures = []
for run in runs:
    if run["measure"] not in measures:
        measures.append(run["measure"])
for measure in measures:
    if " c=1 " in measure + " ":
        row(measure, "p50 (ms)", p50)
    elif "rate=" in measure:
        row(measure, "p99 (ms)", p99)
        row(measure, "done per s", throughput)
    else:
        row(measure, "per second", throughput)
        row(measure, "p99 (ms)", p99)

references = {
    "flow-a": "floor",
    "flow-a/1conn": "floor, one connection",
    "floor-flow-a": "floor",
    "session-read": "peer-read (actix-session)",
}
print(f"HTTP benchmark: {rounds} round(s) of {duration} each (paced: {paced_duration});"
      " ratio = product / reference")
header = f"{'measurement':<28} {'against':<26} {'figure':<11} {'product':>11} {'reference':>11} {'ratio':>7}"
print(header)
print("-" * len(header))
def number(v):
    return "-" if v is None else (f"{v:11.0f}" if v >= 100 else f"{v:11.3f}")
for measure, label, product, reference, ratio in rows:
    name = measure.split(" ")[0]
    ref = references.get(name, "")
    print(f"{measure:<28} {ref:<26} {label:<11} {number(product):>11} "
          f"{number(reference):>11} {'-' if ratio is None else f'{ratio:7.2f}':>7}")
errors = {}
for run in runs:
    report = run["report"] or {}
    for code, count in (report.get("errors") or {}).items():
        key = (run["measure"], run["side"], code)
        errors[key] = errors.get(key, 0) + count
    if run["report"] is None:
        errors[(run["measure"], run["side"], f"exit_{run['status']}")] = 1
    for note in report.get("notes") or []:
        print(f"note ({run['measure']}, {run['side']}): {note}")
if errors:
    print("errors:")
    for (measure, side, code), count in sorted(errors.items()):
        print(f"  {measure} ({side}): {code} x{count}")
else:
    print("errors: none")
EOF

if [ "$failures" -gt 0 ]; then
  echo "bench-http: $failures run(s) failed" >&2
  exit 1
fi
