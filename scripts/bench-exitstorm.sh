#!/usr/bin/env bash
# Health p50/p99/max while N sessions (default 500) end at once; then,
# under strace -f, the fsync/fdatasync calls the loop thread and the other
# threads make while M sessions (default 50) launch and end. COVEN_BIN=path measures another build (before/after in one
# run). Linux only; needs strace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=${1:-500}
# strace -f stops the daemon at every system call: the traced run is smaller.
traced_n=${2:-50}
cargo build --release --quiet --bin coven --example exitstorm
bin=${COVEN_BIN:-target/release/coven}
work=$(mktemp -d /tmp/coven-storm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/root"
cat > "$work/home/config.json" <<JSON
{ "harnesses": [ { "id": "waiter", "command": "/bin/sh", "args": ["-c", "{prompt}"] } ],
  "limits": { "maxLiveSessions": $((n + 10)) } }
JSON
run() {  # traced: 0 (latency) or 1 (system calls, under strace -f, which slows everything)
  rm -rf "$work/home/sessions" "$work/home/sessions.idx"
  COVEN_HOME=$work/home COVEN_LOG=error "$bin" daemon serve & sup=$!
  pid=$(server_pid "$work/home")
  sleep 0.3
  if [ "$1" = 1 ]; then
    strace -f -qq -e trace=fsync,fdatasync -e signal=none -o "$work/strace" -p "$pid" &
    spid=$!
    sleep 0.5
    target/release/examples/exitstorm "$work/home/coven.sock" "$traced_n" "$work/root" >/dev/null
    sleep 0.5
    kill "$spid"; wait "$spid" 2>/dev/null || true
    loop=$(grep -cE "^$pid (fsync|fdatasync)\(" "$work/strace" || true)
    other=$(grep -E "^[0-9]+ (fsync|fdatasync)\(" "$work/strace" | grep -vc "^$pid " || true)
    echo "fsync/fdatasync while $traced_n sessions launch and end (strace -f): loop thread $loop," \
      "other threads $other ($(awk -v a="$loop" -v n="$traced_n" 'BEGIN{printf "%.1f", a/n}') per session on the loop)"
  else
    target/release/examples/exitstorm "$work/home/coven.sock" "$n" "$work/root"
  fi
  kill "$sup"
  while kill -0 "$sup" 2>/dev/null; do sleep 0.05; done
}
run 0
run 1
