#!/usr/bin/env python3
"""Keystroke-to-screen latency through `coven attach`: a terminal (a PTY this
script opens) runs `coven attach` on a `cat` session; each round types one
character and waits until the session's echo of it reaches the terminal.

    scripts/attach-latency.py BIN COVEN_HOME SESSION_ID [rounds=1000]

The daemon must be running in COVEN_HOME. Prints p50/p99/max in ms.
"""
import os, pty, select, sys, time

bin_, home, sid = sys.argv[1:4]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
pid, fd = pty.fork()
if pid == 0:
    os.environ["COVEN_HOME"] = home
    os.execv(bin_, [bin_, "attach", sid])

def read_until(needle, timeout=10.0):
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise SystemExit(f"timed out waiting for {needle!r}; got {buf[-200:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            buf += os.read(fd, 65536)
    return buf

# After replaying earlier output, attach asks the terminal for a status
# report and drops input until the answer: be that terminal.
r, _, _ = select.select([fd], [], [], 0.5)
if r and b"\x1b[5n" in os.read(fd, 65536):
    os.write(fd, b"\x1b[0n")
os.write(fd, b"warm\r")
read_until(b"warm")
samples = []
letters = b"abcdefghijklmnopqrstuvwxyz"
for i in range(rounds):
    c = letters[i % 26:i % 26 + 1]
    t0 = time.monotonic()
    os.write(fd, c)
    read_until(c)
    samples.append((time.monotonic() - t0) * 1000)
os.write(fd, b"\x1d")
os.waitpid(pid, 0)
samples.sort()
q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]
print(f"{rounds} keystrokes: p50 {q(0.5):.3f} ms  p99 {q(0.99):.3f} ms  max {samples[-1]:.3f} ms")
