#!/usr/bin/env bash
# GET /api/v1/health over keep-alive at N connections against the daemon, and
# against nginx returning a JSON body of the same size on a Unix socket, in
# the same run. Reports requests/s and server CPU µs per request.
#
#   scripts/bench-health.sh [connections=16] [seconds=10]
#
# Needs: oha (cargo install oha), nginx (apt-get install nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-16}
secs=${2:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet
dir=target/release
[ -d "$dir" ] || dir=target/release
bin=$dir/coven
export COVEN_HOME=$work/home
COVEN_LOG=warn "$bin" daemon serve &
daemon=$!
until [ -S "$COVEN_HOME/coven.sock" ]; do sleep 0.05; done
body=$(curl -s --unix-socket "$COVEN_HOME/coven.sock" http://coven/api/v1/health)

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen unix:$work/nginx.sock;
    location / { default_type application/json; return 200 '$body'; }
  }
}
CONF
nginx -c "$work/nginx.conf"
until [ -S "$work/nginx.sock" ]; do sleep 0.05; done
worker=$(pgrep -P "$(cat "$work/nginx.pid")")

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # name socket pid
  local before after rps
  before=$(ticks "$3")
  rps=$(oha --no-tui --output-format json -c "$conns" -z "${secs}s" --unix-socket "$2" http://coven/api/v1/health \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["summary"]["requestsPerSec"]))')
  after=$(ticks "$3")
  python3 - "$1" "$rps" "$before" "$after" "$hz" "$secs" <<'PY'
import sys
name, rps, b, a, hz, secs = sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:])
cpu = (a - b) / hz
print(f"{name:8} {rps:>10.0f} req/s  server cpu {cpu:5.2f} s  {cpu * 1e6 / (rps * secs):5.2f} us/req")
PY
}
echo "body: ${#body} bytes, $conns connections, ${secs}s each"
run coven "$COVEN_HOME/coven.sock" "$daemon"
run nginx "$work/nginx.sock" "$worker"
run coven "$COVEN_HOME/coven.sock" "$daemon"
run nginx "$work/nginx.sock" "$worker"
