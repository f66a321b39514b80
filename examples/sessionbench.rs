//! Session measurements against a running daemon (see scripts/bench-sessions.sh,
//! which starts one with `sh` and `cat` harnesses declared).
//!
//!     sessionbench --socket PATH --pid PID idle [N]        RSS per idle `cat` session
//!     sessionbench --socket PATH --pid PID flood [MB]      one session printing MB
//!     sessionbench --socket PATH --pid PID many [N] [MB]   N sessions printing MB each
//!     sessionbench --socket PATH --pid PID events [N]      a session with N input events;
//!                                                          prints the middle page's URL path
//!     sessionbench --socket PATH --pid PID latency [N]     input -> echoed output through a
//!                                                          stream, N round trips: p50, p99
//!     sessionbench --socket PATH --pid PID fanout [R] [MB] R stream readers on one session
//!                                                          printing MB: CPU per delivered event

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Client {
    socket: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn launch(&self, harness: &str, prompt: &str) -> String {
        let (status, v) = self.call(
            "POST",
            "/api/v1/sessions",
            Some(&json!({"projectRoot": "/tmp", "harness": harness, "prompt": prompt})),
        );
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    fn status(&self, id: &str) -> String {
        let (_, v) = self.call("GET", &format!("/api/v1/sessions/{id}"), None);
        v["status"].as_str().unwrap_or("").to_owned()
    }

    fn wait_done(&self, id: &str) {
        while self.status(id) == "running" {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn proc_field(pid: u32, name: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The server's supervisor: its parent, if that is a coven daemon.
fn supervisor_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: u32 = stat[stat.rfind(')')? + 2..]
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
    let serve = cmdline.windows(6).any(|w| w == b"daemon") && cmdline.ends_with(b"serve\0");
    serve.then_some(ppid)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Opens a stream on a session and reads past the response head.
fn open_stream(socket: &str, id: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    write!(s, "GET /api/v1/sessions/{id}/stream HTTP/1.1\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "stream head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    s
}

fn printer(bytes: u64) -> String {
    format!("yes abcdefghijklmnopqrstuvwxyz0123456789 | head -c {bytes}")
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| {
        let i = args.iter().position(|a| a == flag).expect(flag);
        let v = args.remove(i + 1);
        args.remove(i);
        v
    };
    let client = Client {
        socket: take("--socket"),
    };
    let pid: u32 = take("--pid").parse().unwrap();
    let num = |i: usize, default: u64| args.get(i).map_or(default, |v| v.parse().unwrap());
    match args.first().map(String::as_str) {
        Some("idle") => {
            let n = num(1, 100);
            // Ten first, so that what any first session faults in (code,
            // the heap's first arenas) is not charged to the others.
            let mut ids: Vec<String> = (0..10).map(|_| client.launch("cat", "x")).collect();
            // Both readings are taken idle: past the daemon's quiet release
            // (5 s without events), which trims the heap.
            std::thread::sleep(Duration::from_millis(6000));
            // The supervisor (the server's parent, which holds a copy of
            // each session's terminal) is read too.
            let sup = supervisor_of(pid);
            let sup_rss = || sup.map_or(0, |s| proc_field(s, "VmRSS:"));
            let before = proc_field(pid, "VmRSS:");
            let anon_before = proc_field(pid, "RssAnon:");
            let sup_before = sup_rss();
            ids.extend((0..n).map(|_| client.launch("cat", "x")));
            std::thread::sleep(Duration::from_millis(6000));
            let after = proc_field(pid, "VmRSS:");
            let anon_after = proc_field(pid, "RssAnon:");
            let sup_after = sup_rss();
            if sup.is_some() {
                println!(
                    "{n} idle cat sessions: the supervisor's VmRSS {sup_before} -> {sup_after} KiB = {:.2} KiB per session",
                    (sup_after as f64 - sup_before as f64) / n as f64
                );
            }
            // RssAnon is the heap and stacks alone: the code pages a reading
            // happens to find resident do not move it.
            println!(
                "{n} idle cat sessions: VmRSS {before} -> {after} KiB = {:.2} KiB per session; RssAnon {anon_before} -> {anon_after} KiB = {:.2} KiB per session; threads {}",
                (after - before) as f64 / n as f64,
                (anon_after - anon_before) as f64 / n as f64,
                proc_field(pid, "Threads:")
            );
            for id in ids {
                client.call(
                    "POST",
                    &format!("/api/v1/sessions/{id}/kill"),
                    Some(&json!({"signal": "KILL"})),
                );
            }
        }
        Some("flood") => {
            let mb = num(1, 20);
            let cpu0 = cpu_secs(pid);
            let start = Instant::now();
            let id = client.launch("sh", &printer(mb * 1_000_000));
            client.wait_done(&id);
            let wall = start.elapsed().as_secs_f64();
            println!(
                "one session printing {mb} MB: {wall:.3} s to its exit, daemon cpu {:.2} s, VmHWM {} KiB",
                cpu_secs(pid) - cpu0,
                proc_field(pid, "VmHWM:")
            );
        }
        Some("many") => {
            let n = num(1, 100);
            let mb = num(2, 2);
            let cpu0 = cpu_secs(pid);
            let start = Instant::now();
            let ids: Vec<String> = (0..n)
                .map(|_| client.launch("sh", &printer(mb * 1_000_000)))
                .collect();
            for id in &ids {
                client.wait_done(id);
            }
            let wall = start.elapsed().as_secs_f64();
            println!(
                "{n} sessions x {mb} MB: {wall:.3} s, {:.0} MB/s, daemon cpu {:.2} s, VmHWM {} KiB",
                (n * mb) as f64 / wall,
                cpu_secs(pid) - cpu0,
                proc_field(pid, "VmHWM:")
            );
        }
        Some("events") => {
            let n = num(1, 10_000);
            let id = client.launch("sh", "stty -echo; cat > /dev/null");
            for i in 0..n {
                let (status, _) = client.call(
                    "POST",
                    &format!("/api/v1/sessions/{id}/input"),
                    Some(&json!({"data": format!("line {i}\n")})),
                );
                assert_eq!(status, 202);
            }
            let (_, page) = client.call(
                "GET",
                &format!("/api/v1/events?sessionId={id}&limit=10000"),
                None,
            );
            let events = page["events"].as_array().unwrap();
            let middle = events[events.len() / 2]["seq"].as_u64().unwrap();
            println!("/api/v1/events?sessionId={id}&afterSeq={middle}&limit=100");
        }
        Some("latency") => {
            let n = num(1, 1000) as usize;
            let id = client.launch("cat", "x");
            let mut stream = open_stream(&client.socket, &id);
            let mut post = UnixStream::connect(&client.socket).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = String::new();
            let mut rtts = Vec::with_capacity(n);
            for i in 0..n {
                let token = format!("ping{i:06}");
                let body = json!({"data": format!("{token}\n")}).to_string();
                let start = Instant::now();
                write!(
                    post,
                    "POST /api/v1/sessions/{id}/input HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                // Wait for the echo in an output frame.
                // Only output carries the PTY's CRLF (escaped twice in a frame).
                let needle = format!("{token}\\\\r\\\\n");
                loop {
                    if let Some(at) = pending.find(&needle) {
                        pending.drain(..at + needle.len());
                        break;
                    }
                    let got = stream.read(&mut buf).unwrap();
                    assert!(got > 0, "stream ended");
                    pending.push_str(&String::from_utf8_lossy(&buf[..got]));
                }
                rtts.push(start.elapsed());
                // Drain the 202 answer.
                let mut resp = [0u8; 512];
                let _ = post.read(&mut resp).unwrap();
            }
            rtts.sort();
            let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
            println!(
                "input -> echo through a stream, {n} round trips: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                pct(0.50).as_secs_f64() * 1e3,
                pct(0.99).as_secs_f64() * 1e3,
                rtts.last().unwrap().as_secs_f64() * 1e3
            );
        }
        Some("fanout") => {
            let readers = num(1, 1000) as usize;
            let mb = num(2, 1);
            let id = client.launch(
                "sh",
                &format!(
                    "echo go; read x; {}; echo; echo end",
                    printer(mb * 1_000_000)
                ),
            );
            let streams: Vec<UnixStream> = (0..readers)
                .map(|_| open_stream(&client.socket, &id))
                .collect();
            let cpu0 = cpu_secs(pid);
            let start = Instant::now();
            client.call(
                "POST",
                &format!("/api/v1/sessions/{id}/input"),
                Some(&json!({"data": "x\n"})),
            );
            let threads: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut frames = 0usize;
                        let mut tail = 0u8;
                        loop {
                            let n = s.read(&mut buf).unwrap();
                            if n == 0 {
                                return frames;
                            }
                            for &b in &buf[..n] {
                                if tail == b'\n' && b == b'\n' {
                                    frames += 1;
                                }
                                tail = b;
                            }
                        }
                    })
                })
                .collect();
            let frames: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            let wall = start.elapsed().as_secs_f64();
            let cpu = cpu_secs(pid) - cpu0;
            println!(
                "{readers} streams on one session printing {mb} MB: {frames} events delivered in {wall:.2} s, \
                 daemon cpu {cpu:.2} s = {:.2} us/event, VmHWM {} KiB",
                cpu * 1e6 / frames as f64,
                proc_field(pid, "VmHWM:")
            );
        }
        _ => panic!(
            "usage: sessionbench --socket PATH --pid PID idle|flood|many|events|latency|fanout"
        ),
    }
}
