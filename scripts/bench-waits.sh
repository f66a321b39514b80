#!/usr/bin/env bash
# Daemon CPU per output event while a session floods 20 MB, with 0, 1 and
# 100 parked `wait?for=match` requests on it (a pattern that never matches,
# so every wait looks at every event). Fresh daemon and home for each.
#
#   scripts/bench-waits.sh [megabytes=20]
#
# With COVEN_BEFORE=path/to/coven, each case also runs on that build.
#
# Needs: curl. Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
mb=${1:-20}
cargo build --release --quiet --bin coven
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
builds=("$PWD/target/release/coven")
[ -n "${COVEN_BEFORE:-}" ] && builds+=("$COVEN_BEFORE")
for n in 0 1 100 0 1 100; do
 for bin in "${builds[@]}"; do
  home=$work/h$n.$RANDOM; mkdir -m 700 "$home"
  echo '{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}' > "$home/config.json"
  COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve & sup=$!
  pid=$(server_pid "$home")
  c() { curl -s --unix-socket "$home/coven.sock" "$@"; }
  id=$(c -H 'Content-Type: application/json' -d "{\"projectRoot\":\"$home\",\"harness\":\"sh\",\"prompt\":\"sleep 3; yes 'the quick brown fox jumps over the lazy dog' | head -c ${mb}000000\"}" \
       http://c/api/v1/sessions | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for _ in $(seq "$n"); do c -o /dev/null "http://c/api/v1/sessions/$id/wait?for=match&pattern=never%20matches" & done
  until [ "$(c http://c/api/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["openConnections"])')" = $((n + 1)) ]; do sleep 0.05; done
  t0=$(ticks $pid)
  seq=$(c "http://c/api/v1/sessions/$id/wait?for=exit&afterSeq=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
  t1=$(ticks $pid)
  awk -v n="$n" -v e="$seq" -v t=$((t1 - t0)) -v hz="$hz" -v mb="$mb" -v b="$bin" \
    'BEGIN {printf "%3d parked waits: %d events, daemon cpu %.2f s = %.2f us/event, %.1f ms/MB (%s)\n", n, e, t / hz, t / hz * 1e6 / e, t / hz * 1e3 / mb, b}'
  kill $sup; wait $sup 2>/dev/null || true
 done
done
