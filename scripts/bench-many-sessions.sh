#!/usr/bin/env bash
# A daemon that has run N sessions (default 100000) against a fresh one, in
# one run: time from start to the first health answer, VmRSS and PSS
# (KiB) idle before and after a few requests, and a page of 100 sessions
# beside the old unpaged array. Starts: the fresh home; the generated home's
# first start (which builds the session index); then a restart (which reads
# it). Linux only (/proc). Needs curl. COVEN_BIN=path measures another
# build of the daemon (an older commit's, for a before/after in one run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=${1:-100000}
cargo build --release --quiet --bin coven --example gensessions
bin=${COVEN_BIN:-target/release/coven}
work=$(mktemp -d /tmp/coven-many.XXXXXX)
trap 'rm -rf "$work"' EXIT
target/release/examples/gensessions "$work/full" "$n" >/dev/null
mkdir -p "$work/fresh"
kib() { awk -v k="$2" '$1 == k":" {print $2}' "$1"; }
ms() { date +%s%N | cut -c1-13; }
run() {  # label home
  local label=$1 home=$2 t0 t1 pid sock=$2/coven.sock
  t0=$(ms)
  COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve & sup=$!
  until curl -sf --unix-socket "$sock" http://c/api/v1/health >/dev/null 2>&1; do sleep 0.002; done
  t1=$(ms)
  pid=$(server_pid "$home")
  sleep 1
  local r0 p0
  r0=$(kib /proc/$pid/status VmRSS); p0=$(kib /proc/$pid/smaps_rollup Pss)
  local page_t arr_t arr_b
  page_t=$(curl -s -o /dev/null -w '%{time_total}' --unix-socket "$sock" "http://c/api/v1/sessions?limit=100")
  arr_t=$(curl -s -o "$work/arr" -w '%{time_total}' --unix-socket "$sock" "http://c/api/v1/sessions")
  arr_b=$(stat -c %s "$work/arr")
  for _ in 1 2 3; do curl -s -o /dev/null --unix-socket "$sock" "http://c/api/v1/sessions?limit=100"; done
  sleep 1
  echo "$label: first answer after $((t1 - t0)) ms; idle rss=$r0 pss=$p0 KiB;" \
    "after pages rss=$(kib /proc/$pid/status VmRSS) pss=$(kib /proc/$pid/smaps_rollup Pss) KiB;" \
    "page of 100: ${page_t}s; unpaged array: ${arr_t}s, $arr_b bytes"
  kill "$sup"; wait "$sup" 2>/dev/null || true
}
run "fresh home" "$work/fresh"
run "$n sessions, first start" "$work/full"
run "$n sessions, restart" "$work/full"
