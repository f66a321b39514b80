# Shared by the measurement scripts (sourced).
#
# `coven daemon serve` is two processes: the supervisor (the pid a script
# starts, which a script stops) and the serving process, its child, which
# does the work a measurement is about (health's `daemon.pid`, which
# daemon.json names).

# server_pid HOME: the serving process's pid, once the daemon serves.
server_pid() {
  local home=$1 _
  for _ in $(seq 1 1000); do
    if [ -S "$home/coven.sock" ] && [ -f "$home/daemon.json" ]; then
      python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$home/daemon.json"
      return 0
    fi
    sleep 0.02
  done
  echo "no daemon serves in $home" >&2
  return 1
}
