#!/usr/bin/env bash
# Idle footprint of the daemon started with README's own command
# (`cargo run --release -- daemon serve`) in a fresh COVEN_HOME: VmRSS and
# PSS (KiB) of both its processes (the serving process and the supervisor,
# and their sum) before the first request, after one health request, and
# after 50 more. Run from a checkout; RUNS (default 3) starts, one line
# each. Linux only: it reads /proc/PID/status and /proc/PID/smaps_rollup.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
runs=${1:-3}
cargo build --release --quiet
kib() { awk -v k="$2" '$1 == k":" {print $2}' "$1"; }
for _ in $(seq "$runs"); do
  home=$(mktemp -d /tmp/coven-foot.XXXXXX)
  COVEN_HOME=$home COVEN_LOG=error cargo run --release --quiet -- daemon serve &
  cargo_pid=$!
  pid=$(server_pid "$home")
  sup=$(ps -o ppid= -p "$pid" | tr -d ' ')
  sleep 0.5
  line="server $pid, supervisor $sup:"
  for label in before after1 after51; do
    case $label in
      after1) curl -s --unix-socket "$home/coven.sock" http://coven/api/v1/health >/dev/null ;;
      after51) for _ in $(seq 50); do
                 curl -s --unix-socket "$home/coven.sock" http://coven/api/v1/health >/dev/null
               done ;;
    esac
    sleep 0.5
    r=$(kib /proc/$pid/status VmRSS); p=$(kib /proc/$pid/smaps_rollup Pss)
    rs=$(kib /proc/$sup/status VmRSS); ps_=$(kib /proc/$sup/smaps_rollup Pss)
    line="$line  $label rss=$r+$rs=$((r + rs)) pss=$p+$ps_=$((p + ps_))"
  done
  echo "$line KiB"
  kill "$sup"; wait "$cargo_pid" 2>/dev/null || true
  rm -rf "$home"
done
