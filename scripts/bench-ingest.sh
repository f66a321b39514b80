#!/usr/bin/env bash
# Many sessions' output: the daemon beside a bare epoll reader over as many
# PTYs (examples/ingestbench.rs), in the same run, alternating, ROUNDS
# times (default 3), for each N in NS (default "1 100 500") sessions of
# BYTES each (default 1000000): wall time from the first launch to every
# session finished, their ratio, and the daemon's CPU per MB; then each
# figure's median and range over the rounds. Linux only.
#   scripts/bench-ingest.sh [ROUNDS] ["NS"] [BYTES]
# COVEN_BIN=path measures another build of the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds=${1:-3}
ns=${2:-"1 100 500"}
bytes=${3:-1000000}
cargo build --release --quiet --bin coven --example ingestbench
bin=${COVEN_BIN:-target/release/coven}
bench=target/release/examples/ingestbench
home=$(mktemp -d /tmp/coven-ingest.XXXXXX)
log=$(mktemp)
trap 'kill "$sup" 2>/dev/null; rm -rf "$home" "$log"' EXIT
for n in $ns; do
  for r in $(seq "$rounds"); do
    b=$("$bench" bare "$n" "$bytes")
    rm -rf "$home"; mkdir -p "$home"
    echo '{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}], "limits": {"maxLiveSessions": 1000}}' > "$home/config.json"
    COVEN_HOME=$home COVEN_LOG=warn "$bin" daemon serve 2>/dev/null & sup=$!
    pid=$(server_pid "$home")
    d=$("$bench" daemon --socket "$home/coven.sock" --pid "$pid" "$n" "$bytes")
    kill "$sup"; wait "$sup" 2>/dev/null || true
    bw=$(echo "$b" | sed 's/.*B: \([0-9.]*\) s.*/\1/')
    dw=$(echo "$d" | sed 's/.*B: \([0-9.]*\) s.*/\1/')
    echo "N=$n round $r: $d | $b | ratio $(python3 -c "print(f'{$dw / $bw:.2f}')")x" | tee -a "$log"
  done
done
# Each figure's median and range over the rounds (this machine is shared:
# one round's ratio says little).
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    n = int(re.match(r"N=(\d+)", line).group(1))
    mb = float(re.search(r"daemon: \d+ x (\d+) B", line).group(1)) * n / 1e6
    d = float(re.search(r"daemon: .*? B: ([0-9.]+) s", line).group(1))
    b = float(re.search(r"bare: .*? B: ([0-9.]+) s", line).group(1))
    dc = float(re.search(r"server cpu [0-9.]+ s \(([0-9.]+) ms/MB", line).group(1)) * mb / 1000
    bc = float(re.search(r"reader cpu ([0-9.]+) s", line).group(1))
    runs.setdefault(n, []).append((d, b, d / b, dc * 1000 / mb, bc * 1000 / mb))
for n, rows in runs.items():
    print(f"N={n}, {len(rows)} rounds: median (min-max)")
    for i, name in enumerate(["daemon wall s", "bare wall s", "ratio", "daemon CPU ms/MB", "bare CPU ms/MB"]):
        v = [r[i] for r in rows]
        print(f"  {name:17} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})")
PY
