//! The `coven` client commands against a real daemon.

mod support;

use std::process::Output;

use serde_json::Value;
use support::*;

fn coven(d: &Daemon, args: &[&str]) -> Output {
    d.command().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn commands_read_and_drive_sessions() {
    let d = Daemon::with_sessions("");
    let id = d.launch("sh", "echo from-the-harness; read x; echo got $x; sleep 30")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "from-the-harness");

    let o = coven(&d, &["health"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).starts_with("ok coven.daemon.v1"),
        "{}",
        stdout(&o)
    );
    let o = coven(&d, &["health", "--json"]);
    let h: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(h["daemon"]["pid"], d.server_pid());

    let o = coven(&d, &["sessions"]);
    assert!(
        stdout(&o).contains(&id) && stdout(&o).contains("running"),
        "{}",
        stdout(&o)
    );
    let o = coven(&d, &["sessions", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list[0]["id"], id.as_str());

    // A unique prefix is enough.
    let prefix = &id[..id.len() - 4];
    let o = coven(&d, &["show", prefix, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["id"], id.as_str());

    let o = coven(&d, &["input", &id, "typed\n"]);
    assert_eq!(stdout(&o), "accepted\n");
    d.wait_output(&id, "got typed");
    let o = coven(&d, &["events", &id]);
    assert!(
        stdout(&o).contains("from-the-harness\r\n"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("got typed"));
    let o = coven(&d, &["events", &id, "--json"]);
    let records: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records, d.events(&id));
    let after = records[0]["seq"].as_u64().unwrap().to_string();
    let o = coven(&d, &["events", &id, "--json", "--after", &after]);
    assert_eq!(stdout(&o).lines().count(), records.len() - 1);

    let o = coven(&d, &["resize", &id, "100", "40"]);
    assert!(o.status.success());
    let o = coven(&d, &["kill", &id, "--signal", "KILL"]);
    assert!(o.status.success());
    d.wait_exit_event(&id);
    assert_eq!(payload(&d.events(&id).pop().unwrap())["signal"], "KILL");
}

#[test]
fn errors_and_exit_codes() {
    let mut d = Daemon::with_sessions("");
    let o = coven(&d, &["show", "no-such-session"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("session_not_found"));
    let o = coven(&d, &["resize", "x", "wide", "40"]);
    assert_eq!(o.status.code(), Some(2));
    let done = d.launch("sh", "true")["id"].as_str().unwrap().to_owned();
    d.wait_exit_event(&done);
    let o = coven(&d, &["input", &done, "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("session_not_live"));
    d.stop();
    let o = coven(&d, &["health"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no daemon answers"));
}

/// Kills whatever daemon a test started through the CLI, whatever happens.
struct Reap(std::path::PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(text) = std::fs::read_to_string(self.0.join("daemon.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                // The server, and the supervisor that would start another.
                let pid = v["pid"].as_i64().unwrap_or(0) as i32;
                let parent = ps_field(pid, "ppid").parse().unwrap_or(0);
                if parent > 1 {
                    let _ = kill(Pid::from_raw(parent), Signal::SIGSTOP);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if parent > 1 {
                    let _ = kill(Pid::from_raw(parent), Signal::SIGKILL);
                }
            }
        }
    }
}

#[test]
fn daemon_lifecycle_commands() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _reap = Reap(home.clone());
    let coven = |args: &[&str]| {
        std::process::Command::new(coven_bin())
            .args(args)
            .env("COVEN_HOME", &home)
            .output()
            .unwrap()
    };
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.json"),
        format!(r#"{{"harnesses": {HARNESSES}}}"#),
    )
    .unwrap();
    let o = coven(&["daemon", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let o = coven(&["daemon", "stop"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "not running\n");
    let o = coven(&["daemon", "start"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).starts_with("started (pid "));
    let first: Value =
        serde_json::from_slice(&std::fs::read(home.join("daemon.json")).unwrap()).unwrap();
    let o = coven(&["daemon", "start"]);
    assert_eq!(
        stdout(&o),
        format!("already running (pid {})\n", first["pid"])
    );
    let o = coven(&["daemon", "status"]);
    assert!(
        stdout(&o).starts_with(&format!("running  pid {}", first["pid"])),
        "{}",
        stdout(&o)
    );
    let o = coven(&["daemon", "status", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["pid"], first["pid"]);
    assert_eq!(status["liveSessions"], 0);
    // A live restart keeps the daemon's identity and its sessions.
    let o = coven(&["run", "cat", "--detach", "--", "x"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = coven(&["daemon", "restart"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        format!(
            "restarted (pid {}, coven {}, build dev); 1 running session(s) kept\n",
            first["pid"],
            env!("CARGO_PKG_VERSION")
        )
    );
    let second: Value =
        serde_json::from_slice(&std::fs::read(home.join("daemon.json")).unwrap()).unwrap();
    assert_eq!(first, second);
    let o = coven(&["daemon", "stop"]);
    assert_eq!(
        stdout(&o),
        format!(
            "stopped (pid {}); it ended 1 running session\n",
            second["pid"]
        )
    );
    assert!(!home.join("coven.sock").exists());
    assert!(!home.join("daemon.json").exists());
    assert!(std::fs::read_to_string(home.join("daemon.log"))
        .unwrap()
        .contains("listening on"));
}

#[test]
fn follow_and_harnesses() {
    let d = Daemon::with_sessions("");
    let id = d.launch("sh", "echo first; sleep 0.3; echo second")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = coven(&d, &["events", &id, "--follow"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "first\r\nsecond\r\n");
    let o = coven(&d, &["events", &id, "--follow", "--json"]);
    let kinds: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("exit"));
    let o = coven(&d, &["harnesses"]);
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("sh ") && l.ends_with("/bin/sh")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("broken") && l.contains("not installed")),
        "{text}"
    );
}

#[test]
fn help_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let coven = |args: &[&str]| {
        std::process::Command::new(coven_bin())
            .args(args)
            .env("COVEN_HOME", dir.path())
            .output()
            .unwrap()
    };
    for cmd in [
        "daemon",
        "health",
        "harnesses",
        "run",
        "attach",
        "sessions",
        "show",
        "events",
        "input",
        "kill",
        "resize",
        "wait",
    ] {
        let o = coven(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(
            stdout(&o).starts_with(&format!("usage: coven {cmd}")),
            "{cmd}: {}",
            stdout(&o)
        );
        assert_eq!(coven(&["help", cmd]).stdout, o.stdout);
    }
    let o = coven(&["--help"]);
    assert!(stdout(&o).contains("attach <id>"));
    // An option that does not apply, wrong arguments, an unknown command.
    for args in [
        &["health", "--after", "3"][..],
        &["show"],
        &["help", "bogus"],
        &["bogus"],
        &["wait", "x"],
        &["wait", "x", "--exit", "--quiet", "5"],
    ] {
        let o = coven(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
    }
    let o = coven(&["show"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: coven show"));
}

#[test]
fn follow_fails_when_the_daemon_dies_under_it() {
    let mut d = Daemon::with_sessions("");
    let id = d.launch("sh", "echo ready; sleep 30")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut child = d
        .command()
        .args(["events", &id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"ready");
    d.crash();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the stream ended"));
}

#[test]
fn wait_exits_0_when_met_and_1_at_its_timeout() {
    let d = Daemon::with_sessions("");
    let id = d.launch("cat", "x")["id"].as_str().unwrap().to_owned();
    let requests = |h: &serde_json::Value| h["stats"]["requests"].as_u64().unwrap();
    let base = requests(&d.get("/api/v1/health").json());
    // The wait looks at output from when it is asked: ask, then print.
    let waiting = d
        .command()
        .args([
            "wait",
            &id[..8],
            "--match",
            r"^build ok$",
            "--timeout",
            "60000",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI makes three requests: the prefix as an id (404), a page of
    // sessions to resolve it, then the wait. Once the daemon has taken all
    // three (beside this loop's own health requests), the wait is parked.
    let mut polls = 0;
    wait_for("the wait to be parked", || {
        polls += 1;
        let h = d.get("/api/v1/health").json();
        let theirs = requests(&h) - base - polls;
        (theirs >= 3 && h["stats"]["openConnections"] == 2).then_some(())
    });
    let r = d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"build ok\n"}"#,
    );
    assert_eq!(r.status, 202);
    let o = waiting.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("build ok"), "{}", stdout(&o));
    let o = coven(&d, &["wait", &id, "--exit", "--timeout", "200", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "{\"met\":false}\n");
    let o = coven(&d, &["wait", &id, "--quiet", "200"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("quiet at event "), "{}", stdout(&o));
    let o = coven(&d, &["wait", &id, "--match", "("]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pattern"));
}

#[test]
fn screen_and_cast_print_what_the_session_shows_and_did() {
    let d = Daemon::with_sessions("");
    let id = d.launch(
        "sh",
        r"printf 'gone\r\n\033[2J\033[Hnow \033[1mbold\033[0m\r\n'",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&id);
    let o = d.command().args(["screen", &id[..8]]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("now bold\n\n"), "{text:?}");
    assert!(!text.contains("gone"));

    let o = d
        .command()
        .args(["screen", &id, "--ansi"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let ansi = d.get_raw(&format!("/api/v1/sessions/{id}/screen?format=ansi"));
    assert_eq!(o.stdout, ansi);

    let o = d
        .command()
        .args(["cast", &id, "--idle-limit", "0.5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        (header["version"].clone(), header["idle_time_limit"].clone()),
        (2.into(), 0.5.into())
    );
    let out: String = lines
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[2]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(out.contains("now \u{1b}[1mbold"), "{out:?}");

    let o = d
        .command()
        .args(["cast", &id, "--idle-limit", "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("idleLimit"));
}
