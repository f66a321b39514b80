//! Hostile clients that try to make the daemon hold memory, and the daemon's
//! VmHWM/VmRSS afterwards.
//!
//!     cargo run --release --example memhog -- --socket PATH --pid PID --mode bodies [--conns 500]
//!     cargo run --release --example memhog -- --socket PATH --pid PID --mode pages --session ID
//!
//! `bodies`: each connection sends a head announcing a 1 MiB body and all of
//! it but the last byte, then waits. `pages`: each connection asks for the
//! biggest events page of a session (one with lots of output) and never
//! reads the answer. Prints how each connection was answered (status codes
//! seen, or "held" for none) and the daemon's memory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let (mut socket, mut pid, mut n) = (String::new(), 0u32, 500usize);
    let (mut mode, mut session) = (String::from("bodies"), String::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("value");
        match a.as_str() {
            "--socket" => socket = v,
            "--pid" => pid = v.parse().unwrap(),
            "--conns" => n = v.parse().unwrap(),
            "--mode" => mode = v,
            "--session" => session = v,
            _ => panic!("unknown argument {a}"),
        }
    }
    let before = status_kib(pid, "VmRSS:");
    let body = vec![b'x'; 1024 * 1024 - 1];
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        match mode.as_str() {
            "bodies" => {
                let head = format!(
                    "POST /api/v1/sessions HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    body.len() + 1
                );
                s.write_all(head.as_bytes()).unwrap();
                // The daemon may answer (and stop reading) part way.
                let _ = s.write_all(&body);
            }
            "pages" => {
                let req = format!(
                    "GET /api/v1/sessions/{session}/events?afterSeq=0&limit=10000 HTTP/1.1\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
            }
            _ => panic!("unknown mode {mode}"),
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    // Peek at each answer's status line without draining the rest.
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut head = [0u8; 12];
        let status = match s.read(&mut head) {
            Ok(n) if n >= 12 => String::from_utf8_lossy(&head[9..12]).into_owned(),
            _ => "held".to_owned(),
        };
        *answers.entry(status).or_default() += 1;
    }
    println!(
        "{mode}: {n} connections; VmRSS {before} -> {after} KiB, VmHWM {hwm} KiB; answers {answers:?}"
    );
}
