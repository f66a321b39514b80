//! `GET /sessions/:id/cast`: the session as an asciicast v2 recording,
//! played back by a real reader (`asciinema cat`, Debian's `asciinema`).

mod support;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

/// A download's head (lowercase) and body: it has no `Content-Length`, it
/// ends when the daemon closes the connection.
fn download(d: &Daemon, path: &str) -> (String, Vec<u8>) {
    let mut s = d.connect();
    send(&mut s, "GET", path, None);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = memchr::memmem::find(&raw, b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    (head, raw[at + 4..].to_vec())
}

/// The recording's lines: its header, then `(time, code, data)`.
fn parse(cast: &[u8]) -> (Value, Vec<(f64, String, String)>) {
    let text = std::str::from_utf8(cast).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let events = lines
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v[0].as_f64().unwrap(),
                v[1].as_str().unwrap().to_owned(),
                v[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (header, events)
}

/// What `asciinema cat` prints for a recording. It reads keys from
/// `/dev/tty`, so it runs with a PTY as its controlling terminal; its
/// output goes to a pipe.
fn asciinema_cat(file: &std::path::Path) -> Vec<u8> {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave.as_raw_fd();
    let mut cmd = Command::new("asciinema");
    cmd.arg("cat")
        .arg(file)
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .expect("asciinema runs (Debian package `asciinema`)");
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "asciinema cat: {err}");
    drop(pty.master);
    out
}

#[test]
fn a_recording_plays_back_as_the_session_printed() {
    let d = Daemon::with_sessions("");
    let id = d.launch_sized(r"printf '\033[1;31mred\033[0m \303\251t\303\251\r\n'; sleep 0.3; read x; printf 'got %s\r\n' $x; read y",
        60,
        20,
    );
    d.wait_output(&id, "\u{e9}t\u{e9}");
    let r = d.post(
        &format!("/api/v1/sessions/{id}/resize"),
        br#"{"cols":100,"rows":30}"#,
    );
    assert_eq!(r.status, 200);
    let r = d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"one\n"}"#,
    );
    assert_eq!(r.status, 202);
    d.wait_output(&id, "got one");
    let r = d.post(&format!("/api/v1/sessions/{id}/input"), br#"{"data":"\n"}"#);
    assert_eq!(r.status, 202);
    d.wait_exit_event(&id);

    let (head, body) = download(&d, &format!("/api/v1/sessions/{id}/cast"));
    assert!(
        head.contains("content-type: application/x-asciicast"),
        "{head}"
    );
    let (header, lines) = parse(&body);
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (60.into(), 20.into())
    );
    assert_eq!(header["title"], d.session(&id)["title"]);
    assert_ne!(header["title"], "");
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    let created = humantime::parse_rfc3339(d.session(&id)["created_at"].as_str().unwrap()).unwrap();
    let created = created
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        header["timestamp"].as_u64().unwrap().abs_diff(created) <= 1,
        "{header}"
    );

    // Every output and input, in order, with times that never go back.
    let events = d.events(&id);
    let output: String = lines
        .iter()
        .filter(|l| l.1 == "o")
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(output, raw_output(&events));
    let typed: Vec<&str> = lines
        .iter()
        .filter(|l| l.1 == "i")
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(typed, ["one\n", "\n"]);
    assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0), "{lines:?}");
    let resized: Vec<&str> = lines
        .iter()
        .filter(|l| l.1 == "r")
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(resized, ["100x30"]);
    // The resize came before the input that followed it.
    let at = |code: &str, data: &str| {
        lines
            .iter()
            .position(|l| l.1 == code && l.2 == data)
            .unwrap()
    };
    assert!(at("r", "100x30") < at("i", "one\n"));

    // A real player prints exactly the session's output.
    let file = d.dir.path().join("session.cast");
    std::fs::write(&file, &body).unwrap();
    assert_eq!(
        String::from_utf8(asciinema_cat(&file)).unwrap(),
        raw_output(&events)
    );
}

#[test]
fn idle_limit_cuts_pauses() {
    let d = Daemon::with_sessions("");
    let id = d.launch_sized(
        "echo one; sleep 1.5; echo two; sleep 1.5; echo three",
        40,
        10,
    );
    d.wait_exit_event(&id);
    let (_, plain) = parse(&download(&d, &format!("/api/v1/sessions/{id}/cast")).1);
    let gaps = |lines: &[(f64, String, String)]| -> Vec<f64> {
        lines.windows(2).map(|w| w[1].0 - w[0].0).collect()
    };
    // Pauses of 1.5 s (read late or early by a loaded machine, not by 1 s).
    assert!(
        gaps(&plain).iter().filter(|&&g| g >= 0.5).count() >= 2,
        "{plain:?}"
    );
    let (header, cut) =
        parse(&download(&d, &format!("/api/v1/sessions/{id}/cast?idleLimit=0.25")).1);
    assert_eq!(header["idle_time_limit"], 0.25);
    assert_eq!(cut.len(), plain.len());
    assert!(gaps(&cut).iter().all(|&g| g <= 0.25 + 1e-9), "{cut:?}");

    for bad in ["0", "-1", "x", "86401"] {
        let r = d.get(&format!("/api/v1/sessions/{id}/cast?idleLimit={bad}"));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".to_owned()),
            "{bad}"
        );
    }
    let r = d.get("/api/v1/sessions/nope/cast");
    assert_eq!(r.status, 404);
}

#[test]
fn a_long_recording_streams_in_bounded_pieces() {
    // Several MiB, far more than a connection's stream budget, read slowly.
    let d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    let id = d.launch_sized(
        r"i=0; while [ $i -lt 4000 ]; do printf '%01000d\r\n' $i; i=$((i+1)); done",
        100,
        10,
    );
    d.wait_exit_event(&id);
    let (_, body) = download(&d, &format!("/api/v1/sessions/{id}/cast"));
    let (_, lines) = parse(&body);
    let output: String = lines
        .iter()
        .filter(|l| l.1 == "o")
        .map(|l| l.2.as_str())
        .collect();
    // Each line as the PTY shows it: `\n` became `\r\n`.
    assert_eq!(output.len(), 4000 * 1003);
    assert!(output.ends_with(&format!("{:01000}\r\r\n", 3999)));
    d.assert_alive();
}
