#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from the committed seeds.
# Needs the nightly toolchain and cargo-fuzz. Prints executions per target.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
targets=$(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | grep -v '^coven-fuzz$')
cargo +nightly fuzz build -O >/dev/null
total=0
for t in $targets; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t FAILED (artifacts in fuzz/artifacts/$t)"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  total=$((total + ${runs:-0}))
  echo "fuzz $t: ${runs:-?} executions in ${secs}s, no crash"
  rm -f "$log"
done
echo "fuzz total: $total executions"
