#!/usr/bin/env bash
# A finished session's event pages, served from its journal: a session of
# 10,000 events (sessionbench `events`) is killed, the daemon restarted (so
# nothing of it is in memory), then GET /events?afterSeq=<middle>&limit=100
# and GET /health over CONNS keep-alive connections, alternating, ROUNDS
# times (examples/loadgen). Prints requests/s and the serving process's
# CPU µs per request for each, and the page's cost in health requests.
#
#   scripts/bench-pages.sh [ROUNDS=3] [SECS=5] [CONNS=16]
# COVEN_BIN=path measures another build of the daemon. Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds=${1:-3}
secs=${2:-5}
conns=${3:-16}
cargo build --release --quiet --bin coven --example sessionbench --example loadgen
bin=${COVEN_BIN:-target/release/coven}
home=$(mktemp -d /tmp/coven-pages.XXXXXX)
trap 'kill "$sup" 2>/dev/null; rm -rf "$home"' EXIT
cat > "$home/config.json" <<CONF
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}
CONF
COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve 2>/dev/null & sup=$!
pid=$(server_pid "$home")
path=$(target/release/examples/sessionbench --socket "$home/coven.sock" --pid "$pid" events 10000)
id=$(echo "$path" | sed 's/.*sessionId=\([^&]*\).*/\1/')
curl -sf -X POST --unix-socket "$home/coven.sock" "http://c/api/v1/sessions/$id/kill" > /dev/null
until curl -sf --unix-socket "$home/coven.sock" "http://c/api/v1/sessions/$id" | grep -q '"status":"killed"'; do sleep 0.05; done
kill "$sup"; wait "$sup" 2>/dev/null || true
rm -f "$home/daemon.json"
COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve 2>/dev/null & sup=$!
pid=$(server_pid "$home")
curl -sf --unix-socket "$home/coven.sock" "http://c$path" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["events"]) == 100, d'
load() { target/release/examples/loadgen --socket "$home/coven.sock" --pid "$pid" --conns "$conns" --secs "$secs" --path "$1"; }
for r in $(seq "$rounds"); do
  h=$(load /api/v1/health | tr "\n" " ")
  p=$(load "$path" | tr "\n" " ")
  echo "round $r: health: $h"
  echo "round $r: page:   $p"
done
