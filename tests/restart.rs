//! Sessions outlive the daemon's own restarts: a live restart (over the
//! API, by SIGUSR2, after a panic in its loop), a crash of the serving
//! process, an upgrade into another build; a restart the new binary
//! cannot take is refused and changes nothing.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::*;

/// Asks for health on a new connection every few milliseconds until
/// stopped, as a client polling a daemon would.
struct Prober {
    stop: Arc<AtomicBool>,
    /// Answers so far.
    answered: Arc<AtomicU64>,
    thread: JoinHandle<Probed>,
}

#[derive(Debug, Default)]
struct Probed {
    answered: u64,
    /// Connections refused (or the socket missing).
    refused: Vec<String>,
    /// Connections accepted but closed before an answer.
    unanswered: Vec<String>,
    /// Answers other than 200.
    failed: Vec<String>,
}

impl Prober {
    fn start(socket: PathBuf) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&answered));
        let thread = std::thread::spawn(move || {
            let mut probed = Probed::default();
            while !flag.load(Ordering::SeqCst) {
                match UnixStream::connect(&socket) {
                    Err(e) => probed.refused.push(e.to_string()),
                    Ok(mut s) => {
                        s.set_read_timeout(Some(deadline())).unwrap();
                        let sent = s
                            .write_all(b"GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\n");
                        match (sent, read_response(&mut s)) {
                            (Ok(()), Some(r)) if r.status == 200 => {
                                probed.answered += 1;
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            (Ok(()), Some(r)) => probed.failed.push(format!("{}", r.status)),
                            (sent, _) => probed.unanswered.push(format!("{sent:?}")),
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            probed
        });
        Prober {
            stop,
            answered,
            thread,
        }
    }

    /// Waits until `more` answers have come since this call.
    fn wait_answers(&self, more: u64) {
        let from = self.answered.load(Ordering::SeqCst);
        wait_for("the prober's answers", || {
            (self.answered.load(Ordering::SeqCst) >= from + more).then_some(())
        });
    }

    fn finish(self) -> Probed {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// The body that names this daemon to a lifecycle route.
fn identity(d: &Daemon) -> Vec<u8> {
    let h = d.get("/api/v1/health").json();
    json!({"apiVersion": h["apiVersion"], "daemon": h["daemon"]})
        .to_string()
        .into_bytes()
}

/// Live restarts completed so far (the new program logs this once up,
/// and counts it in health).
fn restarts(d: &Daemon) -> usize {
    d.log().matches("took over on").count()
}

fn live_restarts(d: &Daemon) -> u64 {
    d.get("/api/v1/health").json()["stats"]["liveRestarts"]
        .as_u64()
        .unwrap()
}

fn restart_over_the_api(d: &Daemon) -> Value {
    let r = d.post("/api/v1/internal/lifecycle/restart", &identity(d));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The flood: 20,000 numbered lines of 100 bytes (2 MB), paced so that it
/// runs for a couple of seconds (more where the tests' waits are scaled: a
/// slower daemon), then a last line.
fn flood() -> String {
    let pause = 0.02 * (deadline().as_secs() / 20) as f64;
    format!(
        "stty -echo; i=0; while [ $i -lt 20000 ]; do \
         printf 'line %06d {}\\n' $i; \
         i=$((i+1)); [ $((i % 200)) -eq 0 ] && sleep {pause}; done; echo flood done",
        "x".repeat(88)
    )
}

fn flood_text() -> String {
    let mut text = String::with_capacity(2_100_000);
    for i in 0..20_000 {
        text.push_str(&format!("line {i:06} {}\n", "x".repeat(88)));
    }
    text.push_str("flood done\n");
    text
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    Api,
    Usr2,
    Crash,
}

/// Sessions of every kind run through a restart of the daemon while a
/// client polls it on new connections: nothing it answers is lost or
/// changed, and every session goes on as if nothing happened.
fn sessions_survive(how: How) {
    let d = Daemon::with_sessions("");
    let flood = id_of(&d.launch("sh", &flood()));
    let reader = id_of(&d.launch("sh", "stty -echo; echo waiting; read n; exit $n"));
    let echo = id_of(&d.launch("cat", "x"));
    let stubborn = id_of(&d.launch(
        "sh",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ));
    d.wait_output(&reader, "waiting");
    d.wait_output(&stubborn, "ready");
    d.post(
        &format!("/api/v1/sessions/{echo}/input"),
        br#"{"data":"before\n"}"#,
    );
    d.wait_output(&echo, "before\nbefore\n");
    assert_eq!(live_restarts(&d), 0);
    let pids: Vec<Value> = [&flood, &reader, &echo]
        .iter()
        .map(|id| d.session(id)["pid"].clone())
        .collect();
    // A kill under way: its escalation to SIGKILL must survive too.
    let r = d.post(
        &format!("/api/v1/sessions/{stubborn}/kill"),
        format!(r#"{{"graceMs": {}}}"#, scaled_ms(2000)).as_bytes(),
    );
    assert_eq!(r.status, 202);
    d.wait_output(&flood, "line 000300");

    let prober = Prober::start(d.socket.clone());
    prober.wait_answers(5);
    assert!(
        !output_of(&d.events(&flood)).contains("flood done"),
        "the flood ended before the restart: it must be under way"
    );
    let server = d.server_pid();
    let before = restarts(&d);
    match how {
        How::Api => {
            let r = restart_over_the_api(&d);
            assert_eq!(r["daemon"]["pid"], server);
            assert_eq!(
                r["build"],
                format!("coven {}, build dev", env!("CARGO_PKG_VERSION"))
            );
        }
        How::Usr2 => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), Signal::SIGUSR2).unwrap()
        }
        How::Crash => d.crash_server(),
    }
    if how != How::Crash {
        wait_for("the restart", || (restarts(&d) > before).then_some(()));
        // The same process, another program image.
        assert_eq!(d.server_pid(), server);
        assert_eq!(live_restarts(&d), 1);
    } else {
        assert_ne!(d.server_pid(), server);
    }
    // The client goes on for a while on the new program.
    prober.wait_answers(20);

    // The same sessions, running, with the same processes.
    for (id, pid) in [&flood, &reader, &echo].iter().zip(&pids) {
        let s = d.session(id);
        if *id == &flood && s["status"] != "running" {
            continue; // it may have ended by now
        }
        assert_eq!(s["status"], "running", "{how:?}: {s}");
        assert_eq!(&s["pid"], pid, "{how:?}: {s}");
    }
    // Input after the restart reaches them.
    d.post(
        &format!("/api/v1/sessions/{echo}/input"),
        br#"{"data":"after\n"}"#,
    );
    d.wait_output(&echo, "before\nbefore\nafter\nafter\n");
    d.post(
        &format!("/api/v1/sessions/{reader}/input"),
        br#"{"data":"7\n"}"#,
    );
    let s = d.wait_exit_event(&reader);
    assert_eq!(
        (s["status"].clone(), s["exit_code"].clone()),
        ("failed".into(), 7.into())
    );
    // The kill escalated after the restart.
    d.wait_exit_event(&stubborn);
    let exit = exit_of(&d.events(&stubborn).pop().unwrap());
    assert_eq!(
        (exit["status"].clone(), exit["signal"].clone()),
        ("killed".into(), "KILL".into()),
        "{how:?}"
    );
    // The flood: every byte, in order.
    d.wait_exit_event(&flood);
    let out = output_of(&d.events(&flood));
    assert!(
        out == flood_text(),
        "{how:?}: the flood's output differs ({} bytes)",
        out.len()
    );
    // Not one sequence number skipped or given twice, across all of them.
    let mut seqs: Vec<u64> = [&flood, &reader, &echo, &stubborn]
        .iter()
        .flat_map(|id| d.events(id))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert!(
        seqs == expected,
        "{how:?}: holes or repeats in the sequence"
    );

    let probed = prober.finish();
    assert!(probed.answered > 0);
    assert!(probed.refused.is_empty(), "{how:?}: refused {probed:?}");
    assert!(probed.failed.is_empty(), "{how:?}: failed {probed:?}");
    if how == How::Crash {
        // The one request the killed server had taken and not answered.
        assert!(probed.unanswered.len() <= 1, "{probed:?}");
    } else {
        assert!(probed.unanswered.is_empty(), "{how:?}: {probed:?}");
    }
    d.assert_alive();
}

#[test]
fn sessions_survive_a_restart_over_the_api() {
    sessions_survive(How::Api);
}

#[test]
fn sessions_survive_a_restart_by_sigusr2() {
    sessions_survive(How::Usr2);
}

#[test]
fn sessions_survive_a_crash_of_the_serving_process() {
    sessions_survive(How::Crash);
}

/// The `cat` session `id` runs with the same process, and echoes `text`.
fn still_the_same(d: &Daemon, id: &str, pid: &Value, text: &str) {
    let s = d.session(id);
    assert_eq!((&s["status"], &s["pid"]), (&json!("running"), pid), "{s}");
    let body = json!({ "data": format!("{text}\n") }).to_string();
    d.post(&format!("/api/v1/sessions/{id}/input"), body.as_bytes());
    d.wait_output(id, &format!("{text}\n{text}\n"));
}

#[test]
fn a_panic_costs_one_request_or_a_live_restart() {
    let d = Daemon::with_sessions("");
    let echo = id_of(&d.launch("cat", "x"));
    let pid = d.session(&echo)["pid"].clone();
    let server = d.server_pid();
    // In a handler: that request fails, nothing else.
    let r = d.post("/api/v1/internal/test/panic", br#"{"in":"handler"}"#);
    assert_eq!((r.status, r.code()), (500, "internal_error".into()));
    d.assert_alive();
    // In the loop, outside any handler: a live restart.
    let before = restarts(&d);
    let r = d.post("/api/v1/internal/test/panic", br#"{"in":"loop"}"#);
    assert_eq!(r.status, 202);
    wait_for("the restart", || (restarts(&d) > before).then_some(()));
    assert!(d.log().contains("the event loop panicked"), "{}", d.log());
    assert_eq!(d.server_pid(), server);
    still_the_same(&d, &echo, &pid, "still here");
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&out[at..], from) {
        out[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + to.len();
        found += 1;
    }
    assert!(
        found > 0,
        "{:?} is not in the binary",
        String::from_utf8_lossy(from)
    );
    out
}

/// Installs `bytes` at `path` as an upgrade does: a new file renamed over
/// the old one (the running program keeps its own).
fn install(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_upgrade_is_taken_and_a_binary_that_cannot_take_over_is_refused() {
    let original = std::fs::read(coven_bin()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin").join("coven");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    install(&bin, &original);
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.json"),
        format!(r#"{{"harnesses": {HARNESSES}}}"#),
    )
    .unwrap();
    let mut d = Daemon {
        socket: home.join("coven.sock"),
        home,
        dir,
        child: None,
    };
    d.spawn_bin(&bin);
    let echo = id_of(&d.launch("cat", "x"));
    let pid = d.session(&echo)["pid"].clone();
    let server = d.server_pid();
    let unchanged = |d: &Daemon| {
        assert_eq!(d.server_pid(), server);
        let s = d.session(&echo);
        assert_eq!(
            (s["status"].clone(), s["pid"].clone()),
            ("running".into(), pid.clone())
        );
        assert_eq!(restarts(d), 0, "{}", d.log());
    };

    // A build that writes another handover format: refused, nothing changes.
    install(
        &bin,
        &patched(
            &original,
            b"coven-handover-version:001",
            b"coven-handover-version:999",
        ),
    );
    let r = d.post("/api/v1/internal/lifecycle/restart", &identity(&d));
    assert_eq!((r.status, r.code()), (409, "restart_refused".into()));
    let reason = r.json()["error"]["details"]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("999"), "{reason}");
    assert_eq!(
        r.json()["error"]["details"]["binary"],
        bin.display().to_string()
    );
    // By signal: refused as well, and said so in the log.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), Signal::SIGUSR2).unwrap();
    wait_for("the refusal in the log", || {
        d.log()
            .contains("SIGUSR2: The restart was refused")
            .then_some(())
    });
    unchanged(&d);

    // Not a coven binary at all: refused.
    install(&bin, b"#!/bin/sh\necho hello\n");
    let r = d.post("/api/v1/internal/lifecycle/restart", &identity(&d));
    assert_eq!((r.status, r.code()), (409, "restart_refused".into()));
    // Another daemon's identity: 409 too, before anything is looked at.
    let r = d.post(
        "/api/v1/internal/lifecycle/restart",
        br#"{"apiVersion":"coven.daemon.v1","daemon":{"pid":1,"startedAt":"x","socket":"y"}}"#,
    );
    assert_eq!(
        (r.status, r.code()),
        (409, "daemon_identity_mismatch".into())
    );
    unchanged(&d);

    // A config.json the new build would refuse to start with: refused.
    install(&bin, &original);
    let config = std::fs::read(d.home.join("config.json")).unwrap();
    std::fs::write(
        d.home.join("config.json"),
        r#"{"limits":{"maxHeaders":"lots"}}"#,
    )
    .unwrap();
    let r = d.post("/api/v1/internal/lifecycle/restart", &identity(&d));
    assert_eq!((r.status, r.code()), (409, "restart_refused".into()));
    let reason = r.json()["error"]["details"]["reason"].clone();
    assert!(
        reason.as_str().unwrap().contains("limits.maxHeaders"),
        "{reason}"
    );
    std::fs::write(d.home.join("config.json"), config).unwrap();
    unchanged(&d);

    // Another build of this version: it takes over.
    install(
        &bin,
        &patched(&original, b"coven-build:dev\0\0\0", b"coven-build:second"),
    );
    assert_eq!(d.get("/api/v1/health").json()["build"], "dev");
    let r = restart_over_the_api(&d);
    assert_eq!(
        r["build"],
        format!("coven {}, build second", env!("CARGO_PKG_VERSION"))
    );
    wait_for("the new build", || {
        (d.get("/api/v1/health").json()["build"] == "second").then_some(())
    });
    assert_eq!(d.server_pid(), server);
    still_the_same(&d, &echo, &pid, "upgraded");
}

/// An idle keep-alive connection is handed to the new program as it is.
#[test]
fn an_idle_connection_is_served_across_a_restart() {
    let d = Daemon::with_sessions("");
    let mut s = d.connect();
    send(&mut s, "GET", "/api/v1/health", None);
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    let before = restarts(&d);
    restart_over_the_api(&d);
    wait_for("the restart", || (restarts(&d) > before).then_some(()));
    send(&mut s, "GET", "/api/v1/health", None);
    let r = read_response(&mut s).expect("an answer on the same connection");
    assert_eq!(r.status, 200);
}

/// A stream ends at a restart; resumed from its last event id, it misses
/// nothing and repeats nothing.
#[test]
fn a_stream_resumes_across_a_restart() {
    let d = Daemon::with_sessions("");
    let echo = id_of(&d.launch("cat", "x"));
    d.post(
        &format!("/api/v1/sessions/{echo}/input"),
        br#"{"data":"one\n"}"#,
    );
    d.wait_output(&echo, "one\none\n");
    let mut s = open_stream(&d, &format!("/api/v1/sessions/{echo}/stream"), "");
    let before = restarts(&d);
    restart_over_the_api(&d);
    let first = read_stream(&mut s);
    wait_for("the restart", || (restarts(&d) > before).then_some(()));
    d.post(
        &format!("/api/v1/sessions/{echo}/input"),
        br#"{"data":"two\n"}"#,
    );
    d.wait_output(&echo, "two\ntwo\n");
    let last = first.last().expect("frames before the restart").id.clone();
    let mut s = d.connect();
    write!(
        s,
        "GET /api/v1/sessions/{echo}/stream HTTP/1.1\r\nLast-Event-ID: {last}\r\n\r\n"
    )
    .unwrap();
    let head = read_head_response(&mut s).unwrap();
    assert_eq!(head.status, 200);
    // Read until "two" has come through twice.
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while output_of_frames(&parse_sse(&text)).matches("two\n").count() < 2 {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let all: Vec<Sse> = first.into_iter().chain(parse_sse(&text)).collect();
    let ids: Vec<u64> = all.iter().map(|f| f.id.parse().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(ids, sorted, "repeated frames");
    assert_eq!(output_of_frames(&all), "one\none\ntwo\ntwo\n");
}

fn output_of_frames(frames: &[Sse]) -> String {
    frames
        .iter()
        .filter(|f| f.event == "output")
        .map(|f| payload(&f.data)["data"].as_str().unwrap().to_owned())
        .collect::<String>()
        .replace("\r\n", "\n")
}
