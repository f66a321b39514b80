//! Health latency while N sessions end at once: the cost of what a
//! session's end does on the loop (its exit and metadata records).
//!
//! Launches N sessions of the `waiter` harness (`/bin/sh -c {prompt}`,
//! declared in the daemon's config by scripts/bench-exitstorm.sh), each
//! waiting for a flag file; then, with one client asking for health over
//! a keep-alive connection as fast as it can, creates the flag so that all
//! of them end within about 50 ms, and reports the health latencies seen
//! from then until the last session has finished.
//!
//!     cargo run --release --example exitstorm -- <socket> <N> <root dir>

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn request(s: &mut UnixStream, method: &str, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + len].to_string());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (socket, n, root) = (&args[1], args[2].parse::<usize>().unwrap(), &args[3]);
    let flag = format!("{root}/go");
    let _ = std::fs::remove_file(&flag);
    let mut c = UnixStream::connect(socket).unwrap();
    for _ in 0..n {
        let body = format!(
            r#"{{"projectRoot":"{root}","harness":"waiter","prompt":"while [ ! -e {flag} ]; do sleep 0.05; done"}}"#
        );
        let (status, text) = request(&mut c, "POST", "/api/v1/sessions", &body);
        assert_eq!(status, 201, "{text}");
    }
    let live = |c: &mut UnixStream| -> u64 {
        let (_, text) = request(c, "GET", "/api/v1/health", "");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["stats"]["liveSessions"].as_u64().unwrap()
    };
    assert_eq!(live(&mut c), n as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = Arc::clone(&stop);
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(socket).unwrap();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = request(&mut s, "GET", "/api/v1/health", "");
                assert_eq!(status, 200);
                lat.push(t.elapsed());
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    std::fs::write(&flag, b"").unwrap();
    while live(&mut c) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let storm = start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut lat = probe.join().unwrap();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{n} sessions ended in {:.0} ms; health during it: {} requests, p50 {:?}, p99 {:?}, max {:?}",
        storm.as_secs_f64() * 1000.0,
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat.last().unwrap()
    );
    let _ = std::fs::remove_file(&flag);
}
