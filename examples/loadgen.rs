//! A keep-alive HTTP load generator over a Unix socket: N connections, one
//! request in flight each, for a fixed time. Reports requests/s and, given a
//! server pid, the server's CPU microseconds per request (from /proc).
//!
//!     cargo run --release --example loadgen -- --socket PATH [--conns 16]
//!         [--secs 5] [--path /api/v1/health] [--pid PID] [--new-conn]
//!         [--close] [--half-close]
//!
//! `--new-conn` opens a new connection for every request, as Coven's real
//! clients do, and closes it once the answer is read (`curl`); `--close`
//! also sends `Connection: close` (the TypeScript client, `oha
//! --disable-keepalive`); `--half-close` instead shuts the write side after
//! the request, as Coven's Rust client does.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server pid");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 (utime, stime), counted from the state field (3).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Reads one response with a Content-Length body; returns false at EOF.
fn read_one(s: &mut UnixStream, buf: &mut Vec<u8>, filled: &mut usize) -> bool {
    loop {
        if let Some(end) = buf[..*filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            if *filled >= total {
                buf.copy_within(total..*filled, 0);
                *filled -= total;
                return true;
            }
        }
        if *filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match s.read(&mut buf[*filled..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => *filled += n,
        }
    }
}

fn main() {
    let mut socket = None;
    let mut conns = 16usize;
    let mut secs = 5u64;
    let mut path = "/api/v1/health".to_string();
    let mut pid = None;
    let mut new_conn = false;
    let mut half_close = false;
    let mut close_header = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().expect("missing value");
        match a.as_str() {
            "--socket" => socket = Some(v()),
            "--conns" => conns = v().parse().unwrap(),
            "--secs" => secs = v().parse().unwrap(),
            "--path" => path = v(),
            "--pid" => pid = Some(v().parse::<u32>().unwrap()),
            "--new-conn" => new_conn = true,
            "--close" => {
                new_conn = true;
                close_header = true;
            }
            "--half-close" => {
                new_conn = true;
                half_close = true;
            }
            _ => panic!("unknown argument {a}"),
        }
    }
    let socket = socket.expect("--socket PATH");
    let connection = if close_header {
        "Connection: close\r\n"
    } else {
        ""
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: coven\r\n{connection}\r\n").into_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = pid.map(cpu_ticks);
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (socket, request, stop, done) =
                (socket.clone(), request.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut filled = 0;
                let mut n = 0u64;
                if new_conn {
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = UnixStream::connect(&socket).expect("connect");
                        s.write_all(&request).unwrap();
                        if half_close {
                            s.shutdown(std::net::Shutdown::Write).unwrap();
                        }
                        filled = 0;
                        if !read_one(&mut s, &mut buf, &mut filled) {
                            break;
                        }
                        n += 1;
                    }
                } else {
                    let mut s = UnixStream::connect(&socket).expect("connect");
                    while !stop.load(Ordering::Relaxed) {
                        s.write_all(&request).unwrap();
                        if !read_one(&mut s, &mut buf, &mut filled) {
                            break;
                        }
                        n += 1;
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    println!(
        "requests: {total} in {elapsed:.2} s = {:.0} req/s",
        total as f64 / elapsed
    );
    if let (Some(pid), Some(cpu0)) = (pid, cpu0) {
        let ticks = cpu_ticks(pid) - cpu0;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as f64;
        let cpu = ticks as f64 / hz;
        println!(
            "server cpu: {cpu:.2} s = {:.2} us/request",
            cpu * 1e6 / total.max(1) as f64
        );
    }
}
