#!/usr/bin/env bash
# The slowest health answer while the daemon deletes 1,000 finished
# sessions (one client, one DELETE at a time) and retention by age removes
# 5,000 more, on a home of 20,000 sessions (examples/gensessions). The
# previous build beside this one, same run: COVEN_BEFORE=path/to/coven.
#
#     scripts/bench-retention.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds=${1:-3}
cargo build --release --locked --examples -q
ex=target/release/examples
bins="target/release/coven ${COVEN_BEFORE:-}"
for r in $(seq 1 "$rounds"); do
  for bin in $bins; do
    dir=$(mktemp -d)
    home=$dir/home
    mkdir -p "$home"
    "$ex/gensessions" "$home" 20000 5000 >/dev/null
    # First start: builds the index; nothing is removed (retention off).
    echo '{"retentionDays": 0}' >"$home/config.json"
    COVEN_HOME=$home "$bin" daemon serve 2>"$dir/log0" &
    pid=$!
    server_pid "$home" >/dev/null
    kill -TERM $pid; wait $pid || true
    # 2026-01-01 + 100 days is past, 2026-11-01 + 100 days is not.
    echo '{"retentionDays": 100}' >"$home/config.json"
    COVEN_HOME=$home "$bin" daemon serve 2>"$dir/log" &
    pid=$!
    server_pid "$home" >/dev/null
    printf '%-40s round %s: ' "$bin" "$r"
    "$ex/busyhealth" "$home/coven.sock" 10000 1000 14000
    kill -TERM $pid; wait $pid || true
    rm -rf "$dir"
  done
done
