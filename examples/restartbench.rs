//! What a restart of the daemon costs its clients and sessions: a fresh
//! daemon (`BIN daemon serve` in a temporary home) with N idle `cat`
//! sessions and one session printing 2 MB in paced lines, while a client
//! asks for health on a new connection every millisecond; then a live
//! restart (over the API) or a crash of the serving process (SIGKILL).
//! Reports, per round: the time from the restart's `202` (or the kill) to
//! the first health answer asked after it, the slowest health answer around
//! it, failed or refused requests, sessions that lost their process, and
//! bytes missing from (or changed in) the flood's output.
//!
//!     restartbench --bin target/release/coven --sessions 100 --how api|crash [--rounds 3]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn ok(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, v) = call(socket, method, path, body).expect("the daemon answers");
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

/// Health on new connections every millisecond: each answer's time, and
/// what failed.
struct Prober {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, Duration, bool)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Prober {
    fn start(socket: PathBuf) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let t = Instant::now();
                let good = matches!(call(&socket, "GET", "/api/v1/health", None), Ok((200, _)));
                log.lock().unwrap().push((t, t.elapsed(), good));
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Prober { stop, seen, thread }
    }

    fn finish(self) -> Vec<(Instant, Duration, bool)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

const LINES: usize = 20_000;

fn flood_text() -> String {
    (0..LINES)
        .map(|i| format!("line {i:06} {}\n", "x".repeat(88)))
        .collect::<String>()
        + "flood done\n"
}

fn output(socket: &Path, id: &str) -> String {
    let mut out = String::new();
    let mut after = 0u64;
    loop {
        let page = ok(
            socket,
            "GET",
            &format!("/api/v1/sessions/{id}/events?afterSeq={after}&limit=10000"),
            None,
        );
        let events = page["events"].as_array().unwrap();
        for e in events {
            after = e["seq"].as_u64().unwrap();
            if e["kind"] == "output" {
                let p: Value = serde_json::from_str(e["payload_json"].as_str().unwrap()).unwrap();
                out.push_str(p["data"].as_str().unwrap());
            }
        }
        if page["hasMore"] != true {
            return out.replace("\r\n", "\n");
        }
    }
}

fn round(bin: &Path, n: usize, how: &str) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = json!({
        "harnesses": [{"id": "sh", "command": "/bin/sh", "args": ["-c", "{prompt}"]},
                      {"id": "cat", "command": "/bin/cat", "args": []}],
        "limits": {"maxLiveSessions": n + 10}
    });
    std::fs::write(home.join("config.json"), config.to_string()).unwrap();
    let socket = home.join("coven.sock");
    let mut daemon: Child = Command::new(bin)
        .args(["daemon", "serve"])
        .env("COVEN_HOME", &home)
        .env("COVEN_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    while call(&socket, "GET", "/api/v1/health", None).is_err() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let launch = |harness: &str, prompt: &str| {
        let body = json!({"projectRoot": "/tmp", "harness": harness, "prompt": prompt});
        ok(&socket, "POST", "/api/v1/sessions", Some(&body))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let cats: Vec<String> = (0..n).map(|_| launch("cat", "x")).collect();
    let flood = launch(
        "sh",
        &format!(
            "stty -echo; i=0; while [ $i -lt {LINES} ]; do printf 'line %06d {}\\n' $i; i=$((i+1)); \
             [ $((i % 200)) -eq 0 ] && sleep 0.02; done; echo flood done",
            "x".repeat(88)
        ),
    );
    let pid_of =
        |id: &str| ok(&socket, "GET", &format!("/api/v1/sessions/{id}"), None)["pid"].clone();
    let pids: Vec<Value> = cats.iter().map(|id| pid_of(id)).collect();
    // The flood is under way.
    while !output(&socket, &flood).contains("line 000300") {
        std::thread::sleep(Duration::from_millis(5));
    }
    let prober = Prober::start(socket.clone());
    std::thread::sleep(Duration::from_millis(200));
    let health = ok(&socket, "GET", "/api/v1/health", None);
    let server = health["daemon"]["pid"].as_i64().unwrap() as i32;
    let t0 = Instant::now();
    match how {
        "api" => {
            let body = json!({"apiVersion": health["apiVersion"], "daemon": health["daemon"]});
            ok(
                &socket,
                "POST",
                "/api/v1/internal/lifecycle/restart",
                Some(&body),
            );
        }
        _ => {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(server),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
    }
    let acked = t0.elapsed();
    // The first health answer from the new program: one more live
    // restart counted, or (after a crash) another pid.
    let restarts = health["stats"]["liveRestarts"].as_u64();
    let serving = loop {
        if let Ok((200, h)) = call(&socket, "GET", "/api/v1/health", None) {
            let new = match how {
                "api" => h["stats"]["liveRestarts"].as_u64() != restarts,
                _ => h["daemon"]["pid"].as_i64() != Some(i64::from(server)),
            };
            if new {
                break t0.elapsed();
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    std::thread::sleep(Duration::from_millis(300));
    let seen = prober.finish();
    // Around the restart: from 100 ms before it to 300 ms after serving.
    let window: Vec<_> = seen
        .iter()
        .filter(|(t, ..)| {
            *t + Duration::from_millis(100) >= t0 && *t <= t0 + serving + Duration::from_millis(300)
        })
        .collect();
    let slowest = window.iter().map(|(_, d, _)| *d).max().unwrap_or_default();
    let failed = seen.iter().filter(|(.., good)| !good).count();
    let lost = cats
        .iter()
        .zip(&pids)
        .filter(|(id, pid)| {
            let s = ok(&socket, "GET", &format!("/api/v1/sessions/{id}"), None);
            s["status"] != "running" || &s["pid"] != *pid
        })
        .count();
    while ok(&socket, "GET", &format!("/api/v1/sessions/{flood}"), None)["status"] == "running" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = output(&socket, &flood);
    let want = flood_text();
    let same = got == want;
    println!(
        "{how:5} {n:4} sessions: 202 after {:6.1} ms, serving again {:6.1} ms after it; slowest health around it {:6.1} ms \
         ({} in the window, {} requests, {failed} failed); sessions lost {lost}/{}; flood {} of {} bytes{}",
        acked.as_secs_f64() * 1e3,
        (serving - acked).as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3,
        window.len(),
        seen.len(),
        n,
        got.len(),
        want.len(),
        if same { ", identical" } else { ", DIFFERENT" },
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
}

fn main() {
    let mut bin = PathBuf::from("target/release/coven");
    let mut sessions = 1;
    let mut how = "api".to_owned();
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value");
        match a.as_str() {
            "--bin" => bin = PathBuf::from(v),
            "--sessions" => sessions = v.parse().unwrap(),
            "--how" => how = v,
            "--rounds" => rounds = v.parse().unwrap(),
            _ => panic!("unknown argument {a}"),
        }
    }
    for _ in 0..rounds {
        round(&bin, sessions, &how);
    }
}
