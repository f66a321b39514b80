#!/usr/bin/env bash
# One connection per request, the way Coven's clients call, in one run:
# this build, given COVEN_BEFORE=path another build of the daemon, nginx
# (one worker, on a Unix socket, answering the same health body) and the
# floor (examples/floor.rs: accept, read, write, close and nothing else),
# alternating. Each client kind at 1, 16 and 128 concurrent clients:
#   close       sends `Connection: close` (the TypeScript client, oha
#               --disable-keepalive); also a 100-event page of the daemons
#   half-close  shuts its write side after the request (the Rust client)
#   keep-alive  sends neither, reads the answer and closes (curl); no floor
#               (it would serialize the clients)
# Prints requests/s and server CPU µs per request for each.
#
#   scripts/bench-newconn.sh [seconds=5] [rounds=2]
#   MODES="close half-close keep-alive" CONNS="1 16 128"
#
# Needs: nginx (apt-get install nginx-light). Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
secs=${1:-5}
rounds=${2:-2}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet --bin coven --example loadgen --example sessionbench --example floor
load=target/release/examples/loadgen
bench=target/release/examples/sessionbench

start() { # name binary -> sets pid_<name>, page_<name>
  mkdir -m 700 -p "$work/$1"
  cat > "$work/$1/config.json" <<CONF
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}
CONF
  COVEN_HOME=$work/$1 COVEN_LOG=warn "$2" daemon serve &
  local pid; pid=$(server_pid "$work/$1")
  eval "pid_$1=$pid"
  eval "page_$1='$("$bench" --socket "$work/$1/coven.sock" --pid "$pid" events 1000)'"
}
servers=(coven)
start coven target/release/coven
if [ -n "${COVEN_BEFORE:-}" ]; then
  servers+=(before)
  start before "$COVEN_BEFORE"
fi
body=$(curl -s --unix-socket "$work/coven/coven.sock" http://c/api/v1/health)
printf '%s' "$body" > "$work/body.json"
mkdir -p "$work/floor"
target/release/examples/floor --socket "$work/floor/coven.sock" --body "$work/body.json" &
pid_floor=$!
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
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
servers+=(nginx)
pid_nginx=$(pgrep -P "$(cat "$work/nginx.pid")")
until [ -S "$work/floor/coven.sock" ]; do sleep 0.05; done

run() { # server path conns label mode
  local sock=$work/$1/coven.sock pid_var=pid_$1 flag
  [ "$1" = nginx ] && sock=$work/nginx.sock
  case $5 in close) flag=--close ;; half-close) flag=--half-close ;; *) flag=--new-conn ;; esac
  "$load" --socket "$sock" --conns "$3" --secs "$secs" --path "$2" --pid "${!pid_var}" $flag \
    | awk -v s="$1" -v c="$3" -v p="$4" -v m="$5" '
        /^requests/ {rps = $(NF - 1)} /^server cpu/ {us = $(NF - 1)}
        END {printf "%-10s %-7s %-6s c=%-4s %8d req/s %7.1f us/req\n", m, s, p, c, rps, us}'
}
echo "new connection per request, ${secs}s per run, $rounds rounds"
for round in $(seq "$rounds"); do
  for c in ${CONNS:-1 16 128}; do
    for mode in ${MODES:-close half-close keep-alive}; do
      for s in "${servers[@]}" floor; do
        [ "$s" = floor ] && [ "$mode" = keep-alive ] && continue
        run "$s" /api/v1/health "$c" health "$mode"
      done
      [ "$mode" = close ] || continue
      for s in "${servers[@]}"; do
        [ "$s" = nginx ] && continue
        page_var=page_$s
        run "$s" "${!page_var}" "$c" page "$mode"
      done
    done
  done
done
