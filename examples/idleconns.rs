//! Opens N keep-alive connections, sends one request on each, reads the
//! answers, then holds them idle and reports the server's VmRSS growth per
//! connection.
//!
//!     cargo run --release --example idleconns -- --socket PATH --pid PID [--conns 10000]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let mut socket = String::new();
    let mut pid = 0u32;
    let mut n = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("value");
        match a.as_str() {
            "--socket" => socket = v,
            "--pid" => pid = v.parse().unwrap(),
            "--conns" => n = v.parse().unwrap(),
            _ => panic!("unknown argument {a}"),
        }
    }
    let before = rss_kib(pid);
    let mut conns = Vec::with_capacity(n);
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\n\r\n").unwrap();
        let got = s.read(&mut buf).unwrap();
        assert!(buf[..got].starts_with(b"HTTP/1.1 200"));
        conns.push(s);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = rss_kib(pid);
    println!(
        "{n} idle connections: VmRSS {before} KiB -> {after} KiB, {:.0} bytes per connection",
        (after - before) as f64 * 1024.0 / n as f64
    );
}
