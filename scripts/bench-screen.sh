#!/usr/bin/env bash
# Screen snapshots of a session with a long history: the latency and daemon
# CPU of the first request (cold: the history replayed), of later ones
# (warm: nothing new to replay), and of the first after the grid was dropped
# (from its checkpoint); the daemon's anonymous resident memory (RssAnon)
# before, during and after. The session prints MB megabytes of coloured
# lines, then ends.
#
#   scripts/bench-screen.sh [megabytes=100] [seconds=3]
#
# Needs: curl, python3. Linux only (/proc). Warm requests run for SECONDS
# each (examples/loadgen: requests/s, daemon CPU per request).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
mb=${1:-100}
warm=${2:-3}
cargo build --release --quiet --bin coven --example loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
anon() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
home=$work/home; mkdir -m 700 "$home"
cat > "$home/config.json" <<JSON
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}],
 "limits": {"journalBytesPerSession": 4294967296, "journalBytesTotal": 8589934592}}
JSON
COVEN_HOME=$home COVEN_LOG=warn target/release/coven daemon serve & sup=$!
pid=$(server_pid "$home")
c() { curl -s --unix-socket "$home/coven.sock" "$@"; }
id=$(c -H 'Content-Type: application/json' \
  -d "{\"projectRoot\":\"$home\",\"harness\":\"sh\",\"cols\":120,\"rows\":40,\"prompt\":\"yes \\\"\$(printf '\\\\033[32mok\\\\033[0m the quick brown fox jumps over the lazy dog \\\\033[1m%s\\\\033[0m' 0123456789)\\\" | head -c ${mb}000000\"}" \
  http://c/api/v1/sessions | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
c -o /dev/null "http://c/api/v1/sessions/$id/wait?for=exit&afterSeq=0"
sleep 6   # quiet: what serving touched is given back
before=$(anon $pid)
screen=http://c/api/v1/sessions/$id/screen
t0=$(ticks $pid)
cold=$(c -o "$work/cold.json" -w '%{time_total}' "$screen")
t1=$(ticks $pid)
during=$(anon $pid)
for fmt in "" "?format=ansi"; do
  for conns in 1 16; do
    echo "warm, $conns keep-alive connection(s), screen$fmt:"
    target/release/examples/loadgen --socket "$home/coven.sock" --conns "$conns" --secs "$warm" \
      --path "/api/v1/sessions/$id/screen$fmt" --pid $pid | sed 's/^/  /'
  done
done
sleep 6   # quiet: the grid is dropped (and its checkpoint written)
after=$(anon $pid)
t4=$(ticks $pid)
again=$(c -o "$work/again.json" -w '%{time_total}' "$screen")
t5=$(ticks $pid)
cmp -s "$work/cold.json" "$work/again.json" && same=yes || same=NO
journal=$(du -sk "$home/sessions/$id" | cut -f1)
awk -v mb="$mb" -v j="$journal" -v cold="$cold" -v ct=$((t1 - t0)) -v again="$again" -v at=$((t5 - t4)) -v hz="$hz" \
    -v b="$before" -v d="$during" -v a="$after" -v same="$same" 'BEGIN {
  printf "history: %d MB of output, journal %.1f MiB on disk\n", mb, j / 1024
  printf "cold (first request, no checkpoint): %.1f ms, daemon cpu %.0f ms\n", cold * 1e3, ct / hz * 1e3
  printf "after the grid was dropped (from its checkpoint): %.1f ms, daemon cpu %.0f ms; same answer: %s\n", again * 1e3, at / hz * 1e3, same
  printf "daemon RssAnon: before %d KiB, with the grid %d KiB (+%d), after it was dropped %d KiB\n", b, d, d - b, a
}'
kill $sup; wait $sup 2>/dev/null || true
