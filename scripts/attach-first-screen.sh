#!/usr/bin/env bash
# Time for `coven attach` to draw a session's current screen, on a finished
# session with MB megabytes of history: attach runs in a PTY (`script`),
# and the session is over, so attach exits once it has drawn the screen
# and found the stream ended. With COVEN_BEFORE=path/to/coven, the same for
# that build (its own daemon and home), alternating.
#
#   scripts/attach-first-screen.sh [megabytes=1000] [rounds=1]
#
# Needs: curl, python3, script (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1000}
rounds=${2:-1}
cargo build --release --quiet --bin coven
builds=("$PWD/target/release/coven")
[ -n "${COVEN_BEFORE:-}" ] && builds+=("$COVEN_BEFORE")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "${builds[@]}"; do
    home=$work/h.$RANDOM; mkdir -m 700 "$home"
    cat > "$home/config.json" <<JSON
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}],
 "limits": {"journalBytesPerSession": 4294967296, "journalBytesTotal": 8589934592}}
JSON
    COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve & pid=$!
    until [ -S "$home/coven.sock" ]; do sleep 0.05; done
    c() { curl -s --unix-socket "$home/coven.sock" "$@"; }
    id=$(c -H 'Content-Type: application/json' \
      -d "{\"projectRoot\":\"$home\",\"harness\":\"sh\",\"cols\":120,\"rows\":40,\"prompt\":\"yes \\\"\$(printf '\\\\033[32mok\\\\033[0m the quick brown fox jumps over the lazy dog \\\\033[1m%s\\\\033[0m' 0123456789)\\\" | head -c ${mb}000000\"}" \
      http://c/api/v1/sessions | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    c -o /dev/null "http://c/api/v1/sessions/$id/wait?for=exit&afterSeq=0" 2>/dev/null \
      || until c "http://c/api/v1/sessions/$id" | grep -q '"status":"completed"'; do sleep 0.5; done
    start=$(date +%s.%N)
    COVEN_HOME=$home TERM=xterm-256color script -qfc "$bin attach $id" /dev/null > "$work/out" 2>&1 || true
    end=$(date +%s.%N)
    bytes=$(stat -c %s "$work/out")
    awk -v b="$bin" -v s="$start" -v e="$end" -v n="$bytes" -v mb="$mb" \
      'BEGIN {printf "%s: %d MB history: attach drew the screen and exited in %.3f s (%d bytes to the terminal)\n", b, mb, e - s, n}'
    kill $pid; wait $pid 2>/dev/null || true
    rm -rf "$home"
  done
done
