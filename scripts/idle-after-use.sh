#!/usr/bin/env bash
# Idle after use: VmRSS/PSS (KiB) of a release build's two processes (the
# serving process + the supervisor = their sum) before any request, right
# after a burst (200 health requests and a page of sessions), ten seconds
# later, and the wake-ups (voluntary context switches, both processes) in
# the ten idle seconds after that. COVEN_BIN=path measures another build
# (for a before/after in one run; a build without a supervisor shows 0 for
# it). Linux only (/proc). Needs curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release --quiet --bin coven
bin=${COVEN_BIN:-target/release/coven}
home=$(mktemp -d /tmp/coven-idle.XXXXXX)
trap 'rm -rf "$home"' EXIT
kib() { [ -n "$1" ] && [ -e "/proc/$1" ] && awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/$3" || echo 0; }
COVEN_HOME=$home COVEN_LOG=error "$bin" daemon serve & started=$!
pid=$(server_pid "$home")
sup=""; [ "$pid" != "$started" ] && sup=$started
sleep 0.5
both() { # key file -> "server+supervisor=sum"
  local a b; a=$(kib "$pid" "$1" "$2"); b=$(kib "$sup" "$1" "$2"); echo "$a+$b=$((a + b))"
}
r0=$(both VmRSS status)
for _ in $(seq 200); do curl -s --unix-socket "$home/coven.sock" http://c/api/v1/health >/dev/null; done
curl -s -o /dev/null --unix-socket "$home/coven.sock" "http://c/api/v1/sessions?limit=100"
r1=$(both VmRSS status)
sleep 10
r2=$(both VmRSS status); p2=$(both Pss smaps_rollup)
c0=$(both voluntary_ctxt_switches status)
sleep 10
c1=$(both voluntary_ctxt_switches status)
echo "before rss=$r0 | after the burst rss=$r1 | 10 s later rss=$r2 pss=$p2 KiB |" \
  "wake-ups in the next 10 idle seconds: $((${c1##*=} - ${c0##*=}))"
kill "$started"; wait "$started" 2>/dev/null || true
