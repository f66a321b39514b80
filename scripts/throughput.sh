#!/usr/bin/env bash
# The many-session throughput benchmark: builds what it needs, then runs
# examples/throughput.rs. Arguments pass through, e.g.
#   scripts/throughput.sh --sessions 1,10,100,500 --bytes 1000000 --clients 1 --json out.json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin coven --example throughput
dir=target/release
[ -d "$dir" ] || dir=target/release
exec "$dir/examples/throughput" "$@"
