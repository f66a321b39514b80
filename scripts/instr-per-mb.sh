#!/usr/bin/env bash
# Instructions (valgrind callgrind) and system calls (strace -c, by name)
# of the serving process per MB its sessions print: N sessions each
# printing BYTES (`head -c BYTES /dev/zero | tr '\0' x`, as
# examples/ingestbench.rs launches them), less a run whose N sessions print
# nothing, divided by the megabytes. Instructions are a count a noisy
# machine does not move, unlike CPU time, but user space only (the
# kernel's share, most of ingest's CPU, is what the system calls stand
# for). System calls move with speed: a reader woken less often finds more
# bytes per wake-up, and strace slows the daemon, so compare them only
# between builds measured the same way.
#
#   scripts/instr-per-mb.sh [binary=target/release/coven] [BYTES=20000000] [N=1]
#
# Needs: valgrind, strace. Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release --quiet --bin coven --example ingestbench
bin=${1:-target/release/coven}
bytes=${2:-20000000}
n=${3:-1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# run TOOL BYTES -> the serving process's total (instructions or syscalls),
# and for strace also its per-call counts in $work/calls.<BYTES>
run() {
  local tool=$1 b=$2 out=$work/out
  rm -rf "$work/home" "$out".*; mkdir -m 700 "$work/home"
  echo '{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}], "limits": {"maxLiveSessions": 1000}}' \
    > "$work/home/config.json"
  case $tool in
    # The supervisor and the serving process it starts (the same binary);
    # not the harnesses.
    callgrind) COVEN_HOME=$work/home COVEN_LOG=warn valgrind -q --tool=callgrind --trace-children=yes \
                 --trace-children-skip='/bin/*,/usr/*' --callgrind-out-file="$out.%p" "$bin" daemon serve 2>/dev/null & ;;
    strace) COVEN_HOME=$work/home COVEN_LOG=warn "$bin" daemon serve 2>/dev/null & ;;
  esac
  local sup=$! pid st=
  pid=$(server_pid "$work/home")
  if [ "$tool" = strace ]; then
    strace -c -f -p "$pid" -o "$out" 2>/dev/null & st=$!
    sleep 0.5 # attached to both threads
  fi
  target/release/examples/ingestbench daemon --socket "$work/home/coven.sock" --pid "$pid" "$n" "$b" >/dev/null
  if [ -n "$st" ]; then kill -INT "$st"; wait "$st" 2>/dev/null || true; fi
  kill -TERM "$sup"; wait "$sup" 2>/dev/null || true
  case $tool in
    callgrind)
      for f in "$out".*; do
        grep -q '^cmd:.*_server' "$f" && awk '/^(summary|totals):/ {print $2; exit}' "$f"
      done ;;
    strace)
      awk '$1 ~ /^[0-9.]+$/ && NF >= 5 {print $NF, $4}' "$out" | sort > "$work/calls.$b"
      awk '$NF == "total" {print $4}' "$out" ;;
  esac
}

mb=$(python3 -c "print($n * $bytes / 1e6)")
echo "$n session(s) x $bytes bytes = $mb MB, less $n printing nothing"
base=$(run callgrind 0)
full=$(run callgrind "$bytes")
python3 -c "print(f'instructions per MB: {($full - $base) / $mb:,.0f}')"
base=$(run strace 0)
full=$(run strace "$bytes")
python3 -c "print(f'system calls per MB: {($full - $base) / $mb:.1f}')"
join -a 2 -e 0 -o 0,1.2,2.2 "$work/calls.0" "$work/calls.$bytes" | while read -r name b f; do
  [ "$name" = total ] && continue
  python3 -c "
d = ($f - $b) / $mb
if abs(d) >= 0.05: print(f'  {\"$name\":<14} {d:8.1f}')"
done
