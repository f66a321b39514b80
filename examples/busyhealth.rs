//! The slowest health answer while the daemon removes sessions: one client
//! asks for health over and over (a new connection each time), another
//! deletes finished sessions one by one, until the daemon counts `target`
//! sessions (what is left once the deletes and retention are done). Prints
//! the slowest and the 99th-percentile health answer, how many there were,
//! and how long it all took. Session ids are those `gensessions` writes.
//!
//!     busyhealth <socket> <first to delete> <how many> <target sessions>

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn request(socket: &str, method: &str, path: &str) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: coven\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn sessions_counted(health: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(health);
    let stats = text.find("\"stats\":")?;
    let at = stats + text[stats..].find("\"sessions\":")? + "\"sessions\":".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, first, count, target] = &args[..] else {
        eprintln!("usage: busyhealth <socket> <first to delete> <how many> <target sessions>");
        std::process::exit(2);
    };
    let (first, count, target): (u64, u64, u64) = (
        first.parse().unwrap(),
        count.parse().unwrap(),
        target.parse().unwrap(),
    );
    let start = Instant::now();
    let deleter = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let base_ms: u64 = 1_790_000_000_000;
            for i in first..first + count {
                let id = format!("{:013}-{:08x}", base_ms + i, i as u32);
                let r = request(&socket, "DELETE", &format!("/api/v1/sessions/{id}"));
                assert!(
                    r.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&r)
                );
            }
            start.elapsed()
        })
    };
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        let r = request(socket, "GET", "/api/v1/health");
        times.push(t.elapsed());
        if deleter.is_finished() && sessions_counted(&r).is_some_and(|n| n <= target) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "never reached {target}"
        );
    }
    let deletes = deleter.join().unwrap();
    let total = start.elapsed();
    times.sort();
    let p99 = times[times.len() * 99 / 100];
    println!(
        "health: slowest {:.2} ms, p99 {:.2} ms, median {:.3} ms, {} answers; {count} deletes in {:.2} s; all done in {:.2} s",
        times.last().unwrap().as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times.len(),
        deletes.as_secs_f64(),
        total.as_secs_f64()
    );
}
