#!/usr/bin/env bash
# Session measurements: idle RSS per session, a 20 MB flood, 100 sessions
# printing 2 MB each, and GET /events?limit=100 throughput at 16 connections.
#
#   scripts/bench-sessions.sh
#
# Needs: oha (cargo install oha) for the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet --bin coven --example sessionbench
dir=target/release
[ -d "$dir" ] || dir=target/release
bin=$dir/coven
bench=$dir/examples/sessionbench

start() { # limits-json
  pkill -f "coven daemon serve" -U "$(id -u)" 2>/dev/null || true
  rm -rf "$work/home"; mkdir -p "$work/home"
  cat > "$work/home/config.json" <<CONF
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]},
               {"id": "cat", "command": "/bin/cat", "args": []}],
 "limits": {$1}}
CONF
  COVEN_HOME=$work/home COVEN_LOG=warn "$bin" daemon serve &
  sup=$!
  daemon=$(server_pid "$work/home")
}
sb() { "$bench" --socket "$work/home/coven.sock" --pid "$daemon" "$@"; }

start ""
sb idle 100
kill $sup; wait $sup || true
start ""
sb flood 20
sb flood 20
kill $sup; wait $sup || true
start ""
sb many 100 2
kill $sup; wait $sup || true
start ""
sb latency 1000
kill $sup; wait $sup || true
start '"maxConnections": 2048'
sb fanout 1000 1
kill $sup; wait $sup || true
start '"ringBytes": 8388608'
path=$(sb events 10000)
cpu0=$(awk '{print $14 + $15}' /proc/$daemon/stat)
oha --no-tui --output-format json -c 16 -z 10s --unix-socket "$work/home/coven.sock" "http://coven$path" > "$work/oha.json"
cpu1=$(awk '{print $14 + $15}' /proc/$daemon/stat)
python3 - "$work/oha.json" "$cpu0" "$cpu1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rps = d["summary"]["requestsPerSec"]
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / 100
print(f"GET /events?limit=100 mid-session, 16 connections: {rps:.0f} req/s, daemon cpu {cpu:.2f} s over 10 s ({cpu * 1e6 / (rps * 10):.1f} us/req)")
PY
