//! Many-session throughput: N sessions each printing M bytes, K clients
//! following each session's stream. Reports events/s, MB/s, delivery
//! latency (PTY write to client receipt) p50/p99, daemon CPU and peak RSS,
//! as a table and as JSON. Run through `scripts/throughput.sh`.
//!
//!     throughput [--sessions 1,10,100,500] [--bytes 1000000] [--clients 1] [--json FILE]
//!
//! The harness is this same binary (`throughput print BYTES`): it waits for
//! a line on its terminal, then writes 4 KiB chunks, each starting with the
//! CLOCK_MONOTONIC time it was written at.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHUNK: usize = 4096;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn print(bytes: usize) {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let mut out = std::io::stdout().lock();
    let mut sent = 0;
    while sent < bytes {
        let n = CHUNK.min(bytes - sent);
        let mut chunk = format!("T{:019}|", monotonic_ns()).into_bytes();
        chunk.resize(n.max(chunk.len() + 1) - 1, b'x');
        chunk.push(b'\n');
        out.write_all(&chunk).unwrap();
        out.flush().unwrap();
        sent += chunk.len();
    }
}

fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap_or(Value::Null)
}

fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(me: &Path) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = json!({
        "harnesses": [{"id": "printer", "command": me, "args": ["print", "{prompt}"]}],
        "limits": {"maxLiveSessions": 2000, "maxConnections": 8192}
    });
    std::fs::write(home.join("config.json"), config.to_string()).unwrap();
    let coven = me.parent().unwrap().parent().unwrap().join("coven");
    let child = Command::new(&coven)
        .args(["daemon", "serve"])
        .env("COVEN_HOME", &home)
        .env("COVEN_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it: cargo build --release --bin coven)",
                coven.display()
            )
        });
    let socket = home.join("coven.sock");
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(5));
    }
    Daemon {
        child,
        socket,
        _dir: dir,
    }
}

/// What one stream reader saw.
#[derive(Default)]
struct Seen {
    events: u64,
    latencies_ns: Vec<u64>,
}

fn follow(socket: PathBuf, id: String) -> Seen {
    let mut s = UnixStream::connect(&socket).unwrap();
    write!(s, "GET /api/v1/sessions/{id}/stream HTTP/1.1\r\n\r\n").unwrap();
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return seen;
        }
        let now = monotonic_ns();
        pending.extend_from_slice(&buf[..n]);
        // Complete frames end with a blank line.
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&pending[start..], b"\n\n") {
            let frame = &pending[start..start + end];
            start += end + 2;
            if !frame.starts_with(b"id: ") {
                continue;
            }
            seen.events += 1;
            for at in memchr::memmem::find_iter(frame, b"T") {
                let digits = &frame[at + 1..(at + 20).min(frame.len())];
                if digits.len() == 19
                    && frame.get(at + 20) == Some(&b'|')
                    && digits.iter().all(u8::is_ascii_digit)
                {
                    let stamp: u64 = std::str::from_utf8(digits).unwrap().parse().unwrap();
                    seen.latencies_ns.push(now.saturating_sub(stamp));
                }
            }
        }
        pending.drain(..start);
    }
}

fn run(me: &Path, sessions: usize, bytes: usize, clients: usize) -> Value {
    let d = start_daemon(me);
    let ids: Vec<String> = (0..sessions)
        .map(|_| {
            let s = call(&d.socket, "POST", "/api/v1/sessions", Some(&json!({"projectRoot": "/tmp", "harness": "printer", "prompt": bytes.to_string()})));
            s["id"].as_str().expect("launched").to_owned()
        })
        .collect();
    let readers: Vec<_> = ids
        .iter()
        .flat_map(|id| (0..clients).map(move |_| id.clone()))
        .map(|id| {
            let socket = d.socket.clone();
            std::thread::spawn(move || follow(socket, id))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // The serving process (the started one is its supervisor, which
    // does none of this work).
    let health = call(&d.socket, "GET", "/api/v1/health", None);
    let pid = health["daemon"]["pid"]
        .as_u64()
        .expect("health names the server") as u32;
    let cpu0 = cpu_secs(pid);
    let start = Instant::now();
    for id in &ids {
        call(
            &d.socket,
            "POST",
            &format!("/api/v1/sessions/{id}/input"),
            Some(&json!({"data": "go\n"})),
        );
    }
    let mut events = 0u64;
    let mut lat = Vec::new();
    for r in readers {
        let seen = r.join().unwrap();
        events += seen.events;
        lat.extend(seen.latencies_ns);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1e6
    };
    json!({
        "sessions": sessions,
        "bytesPerSession": bytes,
        "clientsPerSession": clients,
        "seconds": wall,
        "eventsDelivered": events,
        "eventsPerSecond": events as f64 / wall,
        "megabytesPerSecond": (sessions * bytes) as f64 / 1e6 / wall,
        "latencyP50Ms": pct(0.50),
        "latencyP99Ms": pct(0.99),
        "daemonCpuSeconds": cpu,
        "daemonPeakRssKiB": status_field(pid, "VmHWM:"),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("print") {
        return print(args[2].parse().unwrap());
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let sessions: Vec<usize> = flag("--sessions")
        .unwrap_or_else(|| "1,10,100,500".into())
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let bytes: usize = flag("--bytes").map_or(1_000_000, |b| b.parse().unwrap());
    let clients: usize = flag("--clients").map_or(1, |c| c.parse().unwrap());
    let me = std::env::current_exe().unwrap();
    let rows: Vec<Value> = sessions
        .iter()
        .map(|&n| run(&me, n, bytes, clients))
        .collect();
    println!(
        "{:>8} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "sessions",
        "MB each",
        "clients",
        "events/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "cpu s",
        "peak KiB"
    );
    for r in &rows {
        println!(
            "{:>8} {:>10.1} {:>8} {:>12.0} {:>9.1} {:>9.3} {:>9.3} {:>9.2} {:>10}",
            r["sessions"],
            r["bytesPerSession"].as_f64().unwrap() / 1e6,
            r["clientsPerSession"],
            r["eventsPerSecond"].as_f64().unwrap(),
            r["megabytesPerSecond"].as_f64().unwrap(),
            r["latencyP50Ms"].as_f64().unwrap(),
            r["latencyP99Ms"].as_f64().unwrap(),
            r["daemonCpuSeconds"].as_f64().unwrap(),
            r["daemonPeakRssKiB"]
        );
    }
    let report = json!({ "runs": rows });
    match flag("--json") {
        Some(path) => std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap(),
        None => println!("{}", serde_json::to_string(&report).unwrap()),
    }
}
