//! Session measurements against a running daemon (see scripts/bench-sessions.sh,
//! which starts one with `sh` and `cat` harnesses declared).
//!
//!     sessionbench --socket PATH --pid PID idle [N]        RSS per idle `cat` session
//!     sessionbench --socket PATH --pid PID flood [MB]      one session printing MB
//!     sessionbench --socket PATH --pid PID many [N] [MB]   N sessions printing MB each
//!     sessionbench --socket PATH --pid PID events [N]      a session with N input events;
//!                                                          prints the middle page's URL path

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

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
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
            let before = proc_field(pid, "VmRSS:");
            let ids: Vec<String> = (0..n).map(|_| client.launch("cat", "x")).collect();
            std::thread::sleep(Duration::from_millis(300));
            let after = proc_field(pid, "VmRSS:");
            println!(
                "{n} idle cat sessions: VmRSS {before} -> {after} KiB = {:.2} KiB per session; threads {}",
                (after - before) as f64 / n as f64,
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
        _ => panic!("usage: sessionbench --socket PATH --pid PID idle|flood|many|events"),
    }
}
