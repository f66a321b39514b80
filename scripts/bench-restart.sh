#!/usr/bin/env bash
# Restart cost: fill a COVEN_HOME with N sessions of M MB each (default
# 1000 x 1 MB = 1 GB of journals), stop the daemon, start it again and time
# the first health answer; report VmRSS after it.
#
#   scripts/bench-restart.sh [sessions=1000] [mb=1]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
mb=${2:-1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet
dir=target/release
[ -d "$dir" ] || dir=target/release
mkdir -p "$work/home"
cat > "$work/home/config.json" <<CONF
{"harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]}],
 "limits": {"maxLiveSessions": 1000, "maxConnections": 4096}}
CONF
export COVEN_HOME=$work/home
python3 - "$dir/coven" "$work/home" "$n" "$mb" <<'PY'
import json, os, socket, subprocess, sys, time

binary, home, n, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sock = os.path.join(home, "coven.sock")

def call(method, path, body=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    head, _, rest = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(rest or b"null")

def start():
    t = time.monotonic()
    p = subprocess.Popen([binary, "daemon", "serve"], env=dict(os.environ, COVEN_LOG="warn"))
    while True:
        try:
            if call("GET", "/api/v1/health")[0] == 200:
                return p, time.monotonic() - t
        except OSError:
            time.sleep(0.001)

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return line.split()[1]

p, _ = start()
batch = 50
for i in range(0, n, batch):
    ids = []
    for _ in range(min(batch, n - i)):
        status, s = call("POST", "/api/v1/sessions", {"projectRoot": "/tmp", "harness": "sh",
            "prompt": f"yes abcdefghijklmnopqrstuvwxyz0123456789 | head -c {mb * 1000000}"})
        assert status == 201, s
        ids.append(s["id"])
    for id in ids:
        while call("GET", f"/api/v1/sessions/{id}")[1]["status"] == "running":
            time.sleep(0.01)
stats = call("GET", "/api/v1/health")[1]["stats"]
print(f"filled: {stats['sessionsOnDisk']} sessions, {stats['journalBytes'] / 2**20:.0f} MiB of journals")
p.terminate(); p.wait()
subprocess.run(["sync"])
for attempt in range(3):
    p, took = start()
    stats = call("GET", "/api/v1/health")[1]["stats"]
    server = call("GET", "/api/v1/health")[1]["daemon"]["pid"]
    print(f"restart: first health answer after {took * 1000:.0f} ms; {stats['sessions']} sessions; "
          f"VmRSS {rss(server)} KiB (server) + {rss(p.pid)} KiB (supervisor)")
    p.terminate(); p.wait()
PY
