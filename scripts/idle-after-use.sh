#!/usr/bin/env bash
# Idle after use: VmRSS/PSS (KiB) of a release build before any request,
# right after a burst (200 health requests and a page of sessions), ten
# seconds later, and the wake-ups (voluntary context switches) in the ten
# idle seconds after that. COVEN_BIN=path measures another build (for a
# before/after in one run). Linux only (/proc). Needs curl.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin coven
bin=${COVEN_BIN:-target/release/coven}
home=$(mktemp -d /tmp/coven-idle.XXXXXX)
trap 'rm -rf "$home"' EXIT
kib() { awk -v k="$2" '$1 == k":" {print $2}' "$1"; }
COVEN_HOME=$home COVEN_LOG=error "$bin" daemon serve & pid=$!
until [ -S "$home/coven.sock" ]; do sleep 0.05; done
sleep 0.5
r0=$(kib /proc/$pid/status VmRSS)
for _ in $(seq 200); do curl -s --unix-socket "$home/coven.sock" http://c/api/v1/health >/dev/null; done
curl -s -o /dev/null --unix-socket "$home/coven.sock" "http://c/api/v1/sessions?limit=100"
r1=$(kib /proc/$pid/status VmRSS)
sleep 10
r2=$(kib /proc/$pid/status VmRSS); p2=$(kib /proc/$pid/smaps_rollup Pss)
c0=$(kib /proc/$pid/status voluntary_ctxt_switches)
sleep 10
c1=$(kib /proc/$pid/status voluntary_ctxt_switches)
echo "before rss=$r0 | after the burst rss=$r1 | 10 s later rss=$r2 pss=$p2 KiB |" \
  "wake-ups in the next 10 idle seconds: $((c1 - c0))"
kill "$pid"; wait "$pid" 2>/dev/null || true
