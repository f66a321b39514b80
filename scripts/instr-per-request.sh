#!/usr/bin/env bash
# Instructions (valgrind callgrind, both daemon threads) and system calls
# (strace -c) per request over a new connection each, for health and for a
# 100-event page: a measure that a noisy machine does not move. Each figure
# is (a run with N requests − a run with none) / N.
#
#   scripts/instr-per-request.sh [binary=target/release/coven] [seconds=4]
#
# Needs: valgrind, strace. Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release --quiet --bin coven --example loadgen --example sessionbench
bin=${1:-target/release/coven}
secs=${2:-4}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# Makes a home with a session of 1000 events; prints the page's path.
prepare() {
  rm -rf "$work/home"; mkdir -m 700 "$work/home"
  echo '{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}' > "$work/home/config.json"
  COVEN_HOME=$work/home COVEN_LOG=warn "$bin" daemon serve & local sup=$!
  local pid; pid=$(server_pid "$work/home")
  target/release/examples/sessionbench --socket "$work/home/coven.sock" --pid $pid events 1000
  # The session must be finished for the next daemons to serve the same page.
  kill $sup; wait $sup 2>/dev/null || true
}

# measure tool path secs -> "requests total"
measure() {
  local tool=$1 path=$2 n=0 out=$work/out
  rm -f "$work/home/coven.sock" "$out".*
  case $tool in
    # Both processes (the supervisor and the server it starts), one file each.
    callgrind) COVEN_HOME=$work/home COVEN_LOG=warn valgrind -q --tool=callgrind --trace-children=yes \
                 --callgrind-out-file="$out.%p" "$bin" daemon serve & ;;
    strace) COVEN_HOME=$work/home COVEN_LOG=warn strace -f -c -o "$out" "$bin" daemon serve & ;;
  esac
  local pid=$!
  until [ -S "$work/home/coven.sock" ]; do sleep 0.05; done
  curl -s -o /dev/null --unix-socket "$work/home/coven.sock" http://c/api/v1/health
  if [ "$3" != 0 ]; then
    n=$(target/release/examples/loadgen --socket "$work/home/coven.sock" --conns 1 --secs "$3" --path "$path" --new-conn \
        | awk '/^requests/ {print $2}')
  fi
  # Under strace the daemon is strace's child.
  if [ "$tool" = strace ]; then kill -TERM "$(pgrep -P $pid)"; else kill -TERM $pid; fi
  wait $pid 2>/dev/null || true
  case $tool in
    callgrind) total=$(awk '/^(summary|totals):/ {t += $2; nextfile} END {print t}' "$out".*) ;;
    strace) total=$(awk '$NF == "total" {print $4}' "$out") ;;
  esac
  echo "$n $total"
}

page=$(prepare)
for tool in ${TOOLS:-callgrind strace}; do
  for what in health page; do
    path=/api/v1/health
    [ $what = page ] && path=$page
    read -r _ base < <(measure $tool "$path" 0)
    read -r n total < <(measure $tool "$path" "$secs")
    unit=instructions; [ $tool = strace ] && unit=syscalls
    awk -v w=$what -v n="$n" -v t="$total" -v b="$base" -v u=$unit \
      'BEGIN {printf "%-6s %6d requests  %9.1f %s/request\n", w, n, (t - b) / n, u}'
  done
done
