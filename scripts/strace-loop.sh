#!/usr/bin/env bash
# Which thread does the file system work: a daemon on a home of 20,000
# finished sessions (examples/gensessions) serves launches, screens,
# lists and deletes while retention by age removes 5,000 sessions, under
# `strace -f`. Prints the file system calls of each thread: the serving
# process's loop should show none of fsync, fdatasync, unlink, rmdir,
# readlink, nor an openat of a screen checkpoint. BIN defaults to this
# build.
#
#     scripts/strace-loop.sh [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release --locked --examples -q
bin=${1:-target/release/coven}
dir=$(mktemp -d)
home=$dir/home
mkdir -p "$home" "$dir/p"
target/release/examples/gensessions "$home" 20000 5000 >/dev/null
# A screen checkpoint in 20 of the sessions the workload asks screens of.
for i in $(seq 15000 15019); do
  id=$(printf '%013d-%08x' $((1790000000000 + i)) "$i")
  printf '{"seq":2,"cols":80,"rows":24,"sizeMs":0}\n\033[Hfrom a checkpoint' >"$home/sessions/$id/screen.ckpt"
done
echo '{"retentionDays": 0}' >"$home/config.json"
COVEN_HOME=$home "$bin" daemon serve 2>/dev/null &
pid=$!
server_pid "$home" >/dev/null
kill -TERM $pid; wait $pid || true
cat >"$home/config.json" <<JSON
{"retentionDays": 100,
 "harnesses": [{"id": "sh", "label": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}]}
JSON
calls=fsync,fdatasync,unlink,unlinkat,rmdir,openat,readlink,readlinkat,rename,renameat,renameat2,mkdir,mkdirat,ftruncate,epoll_wait,epoll_pwait
COVEN_HOME=$home strace -f -qq -e trace=$calls -o "$dir/trace" "$bin" daemon serve 2>/dev/null &
pid=$!
spid=$(server_pid "$home")
sock=$home/coven.sock
req() { curl -s -o /dev/null -w '%{http_code}\n' --unix-socket "$sock" -X "$1" "http://coven$2" ${3:+-d "$3"}; }
for i in $(seq 1 20); do
  req POST /api/v1/sessions "{\"projectRoot\":\"$dir/p\",\"harness\":\"sh\",\"prompt\":\"echo hi $i\",\"cwd\":\".\"}" >/dev/null
  req GET "/api/v1/sessions?limit=50" >/dev/null
done
for i in $(seq 15000 15019); do
  id=$(printf '%013d-%08x' $((1790000000000 + i)) "$i")
  req GET "/api/v1/sessions/$id/screen" >/dev/null
done
for i in $(seq 10000 10199); do
  id=$(printf '%013d-%08x' $((1790000000000 + i)) "$i")
  req DELETE "/api/v1/sessions/$id" >/dev/null
done
# Until retention is done: 20,000 - 5,000 - 200 + 20.
for _ in $(seq 1 600); do
  n=$(curl -s --unix-socket "$sock" http://coven/api/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["sessions"])')
  [ "$n" -le 14820 ] && break
  sleep 0.1
done
sleep 1
writer=$(for t in /proc/"$spid"/task/*; do [ "$(cat "$t/comm")" = coven-writer ] && basename "$t"; done)
# Stop the daemon (its supervisor, the serving process's parent); strace
# ends with it.
kill -TERM "$(ps -o ppid= -p "$spid" | tr -d ' ')"; wait $pid || true
python3 - "$dir/trace" "$spid" "${writer:-0}" <<'PY'
import collections, re, sys
path, loop, writer = sys.argv[1], sys.argv[2], sys.argv[3]
counts = collections.defaultdict(collections.Counter)
lines = [m.groups() for m in (re.match(r'(\d+)\s+(\w+)\((.*)', l) for l in open(path)) if m]
# The loop runs from the main thread's first epoll_wait to its last:
# before is start-up (which may wait on the disk), after is the stop.
waits = [i for i, (tid, call, _) in enumerate(lines) if tid == loop and call.startswith('epoll')]
first, last = (waits[0], waits[-1]) if waits else (0, len(lines))
for i, (tid, call, rest) in enumerate(lines):
    if call.startswith('epoll'):
        continue
    role = {loop: 'loop (server main thread)', writer: 'writer thread'}.get(tid, 'other (supervisor, harnesses)')
    if tid == loop and not first < i < last:
        role = 'server main thread, before or after the loop'
    elif tid == loop:
        role = 'server main thread, in the loop' 
    name = call
    if call == 'openat':
        m = re.search(r'"([^"]*)"', rest)
        target = m.group(1) if m else ''
        kind = next((k for k in ('screen.ckpt', 'meta.json', '.log', 'sizes', 'exit', '.idx', '.tmp')
                     if target.endswith(k)), 'directory' if 'O_DIRECTORY' in rest else 'other')
        name = f'openat({kind})'
    counts[role][name] += 1
for role in sorted(counts):
    print(f'{role}: ' + ', '.join(f'{k} {v}' for k, v in sorted(counts[role].items())))
PY
rm -rf "$dir"
