#!/usr/bin/env bash
# The web view's costs, with a release build (Linux: /proc):
#  - the serving process's VmRSS idle with the view off, then on with no
#    browser (10 s after each);
#  - its CPU per second while N sessions (default 50) each print a line
#    every 100 ms: with no page open, with one page open (a laptop's
#    viewport: the tiles on view are streamed), and with one page tall
#    enough to show every tile;
#  - the time from a session printing a line to its tile showing it
#    (p50, p99), measured in the page, with the N sessions printing.
# Needs chromium and `npm ci --prefix tests/web`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=${1:-50}
secs=${SECS:-10}
cargo build --release --quiet --bin coven
bin=$PWD/target/release/coven
home=$(mktemp -d /tmp/coven-web.XXXXXX)
trap 'kill "$started" 2>/dev/null; rm -rf "$home"' EXIT
cat > "$home/config.json" <<'JSON'
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}
JSON
COVEN_HOME=$home COVEN_LOG=error "$bin" daemon serve & started=$!
pid=$(server_pid "$home")
c() { COVEN_HOME=$home "$bin" "$@"; }
rss() { awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
cpu_per_s() { # seconds -> ms of CPU per second
  local t0 t1; t0=$(ticks); sleep "$1"; t1=$(ticks)
  echo $(( (t1 - t0) * 1000 / hz / $1 ))
}
sleep 10; off=$(rss)
c web --port 0 >/dev/null; sleep 10; on=$(rss)
echo "idle VmRSS: web view off ${off} KiB, on (no browser) ${on} KiB"
for i in $(seq "$n"); do
  c run -d sh -- 'while :; do echo "line $(date +%s%N) of a busy agent"; sleep 0.1; done' >/dev/null
done
probe=$(c run -d sh -- 'while :; do echo "T $(date +%s%3N)"; sleep 0.25; done')
sleep 2
echo "CPU with $n sessions printing 10 lines/s each: no page $(cpu_per_s "$secs") ms/s"
login() { c web --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["loginUrl"])'; }
page() { # width height -> the bench's JSON, and the CPU in its middle
  local out=$home/bench.out cpu
  (cd tests/web && node bench.mjs "$(login)" "$1" "$2" "$((secs + 10))" "$probe") > "$out" &
  local node=$!
  sleep 8   # the browser starts and the page loads
  cpu=$(cpu_per_s "$secs")
  wait "$node"
  echo "$(cat "$out"); daemon CPU with the page open: $cpu ms/s"
}
echo "one page, 1440x900: $(page 1440 900)"
echo "one page, every tile on view (1440x12000): $(page 1440 12000)"
kill "$started"; wait "$started" 2>/dev/null || true
