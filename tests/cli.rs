//! The `coven` client commands against a real daemon.

mod support;

use std::process::Output;

use serde_json::Value;
use support::*;

fn coven(d: &Daemon, args: &[&str]) -> Output {
    d.command().args(args).output().unwrap()
}

/// `coven` run with `COVEN_HOME=home`, with or without a daemon there.
fn coven_at(home: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(coven_bin())
        .args(args)
        .env("COVEN_HOME", home)
        .output()
        .unwrap()
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
    assert_eq!(stdout(&o), format!("sent 6 bytes to {id}\n"));
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

#[test]
fn daemon_lifecycle_commands() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _reap = Reap(home.clone());
    let coven = |args: &[&str]| coven_at(&home, args);
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
    let coven = |args: &[&str]| coven_at(dir.path(), args);
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
    // The blank rows below the last text are left out.
    assert_eq!(text, "now bold\n");
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

/// A pipe whose reading end is already closed: every write to the other
/// end fails at once, as `coven … | head -0` would find.
fn closed_pipe() -> std::os::fd::OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

fn killed_by_sigpipe(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(nix::sys::signal::Signal::SIGPIPE as i32)
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "seq 1 200000"));
    d.wait_exit_event(&id);
    for args in [
        &["sessions"][..],
        &["sessions", "--json"],
        &["show", &id],
        &["events", &id],
        &["events", &id, "--follow"],
        &["cast", &id],
        &["screen", &id],
        &["screen", &id, "--ansi"],
        &["health"],
        &["harnesses"],
        &["daemon", "status"],
        &["help"],
        &["help", "run"],
        &["version"],
        &["completions", "bash"],
        &["man"],
        &["show", "no-such-session", "--json"],
    ] {
        let o = d
            .command()
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        assert!(killed_by_sigpipe(&o), "{args:?}: {:?}", o.status);
        assert!(
            o.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // `coven events ID | head -1`: a pipe closed after one line.
    use std::io::BufRead;
    let mut child = d
        .command()
        .args(["events", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "1\r\n");
    drop(lines);
    let o = child.wait_with_output().unwrap();
    assert!(killed_by_sigpipe(&o), "{:?}", o.status);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn errors_say_what_the_daemon_said() {
    let mut d = Daemon::with_sessions("");
    // The harnesses the daemon knows.
    let o = coven(&d, &["run", "nope", "--detach", "--", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("Unknown harness. (invalid_request)"), "{e}");
    assert!(
        e.contains("known harnesses: ") && e.contains("cat, sleep"),
        "{e}"
    );
    let o = coven(&d, &["run", "nope", "--detach", "--json", "--", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let envelope: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(envelope["error"]["code"], "invalid_request");
    assert!(envelope["error"]["details"]["knownHarnesses"]
        .as_array()
        .unwrap()
        .contains(&"sh".into()));

    // Why a spawn failed.
    let o = coven(&d, &["run", "broken", "--detach", "--", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("(pty_spawn_failed)"), "{e}");
    assert!(
        e.contains("reason: ") && e.contains("/nonexistent/harness"),
        "{e}"
    );

    // Paths that do not fit.
    let root = d.dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let o = d
        .command()
        .args(["run", "sh", "--detach", "--cwd", "/", "--", "true"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("(project_root_violation)"), "{e}");
    assert!(
        e.contains("cwd: /") && e.contains(&format!("project root: {}", root.display())),
        "{e}"
    );

    // An ambiguous prefix: what it matches.
    let a = id_of(&d.launch("sh", "true"));
    let b = id_of(&d.launch("sh", "true"));
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let o = coven(&d, &["show", &a[..common]]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("matches more than one session"), "{e}");
    assert!(e.contains(&a) && e.contains(&b), "{e}");

    // Not found, as the envelope with --json.
    let o = coven(&d, &["show", "no-such-session", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let envelope: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(envelope["error"]["code"], "session_not_found");

    // No daemon: where it was looked for, and how to start one.
    d.stop();
    let o = coven(&d, &["sessions"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains(&d.socket.display().to_string()), "{e}");
    assert!(e.contains("coven daemon start"), "{e}");
    let o = coven(&d, &["sessions", "--json"]);
    let envelope: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(envelope["error"]["code"], "daemon_unreachable");
    assert_eq!(
        envelope["error"]["details"]["socket"],
        d.socket.display().to_string()
    );
}

#[test]
fn a_daemon_that_will_not_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _reap = Reap(home.clone());
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.json"),
        r#"{"harnesses": [{"id": "sh", "lable": "x", "command": "/bin/sh"}]}"#,
    )
    .unwrap();
    let o = coven_at(&home, &["daemon", "start"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("harnesses[0].lable: unknown field"), "{e}");
    assert!(
        e.contains(&home.join("daemon.log").display().to_string()),
        "{e}"
    );
}

#[test]
fn usage_errors_name_the_mistake_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let coven = |args: &[&str]| coven_at(dir.path(), args);
    for (args, said) in [
        (&["sesions"][..], "did you mean \"sessions\""),
        (&["daemon", "bogus"], "\"bogus\""),
        (&["daemon", "strat"], "did you mean \"start\""),
        (&["run"], "usage: coven run <harness>"),
        (&["run", "sh"], "missing <prompt>"),
        (&["sessions", "--limt", "3"], "did you mean --limit"),
        (&["sessions", "--limit", "0"], "--limit must be at least 1"),
        (&["resize", "x", "0", "10"], "1 to 1000"),
        (&["resize", "x", "abc", "10"], "\"abc\""),
        (&["screen", "x", "--json", "--ansi"], "--ansi and --json"),
        (&["cast", "x", "--json"], "--json does not apply to cast"),
        (
            &["attach", "x", "--json"],
            "--json does not apply to attach",
        ),
        (&["run", "sh", "--json", "--", "hi"], "--detach"),
        (&["wait", "x", "--quiet", "0"], "--quiet"),
        (&["show", "a", "b"], "unexpected argument \"b\""),
        (&["completions", "tcsh"], "\"tcsh\""),
        (&["daemon", "install", "--manager", "runit"], "\"runit\""),
        (&["help", "bogus"], "\"bogus\""),
    ] {
        let o = coven(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(said), "{args:?}: {e}");
        // With --json the envelope goes to stdout (below), else nothing.
        assert_eq!(o.stdout.is_empty(), !args.contains(&"--json"), "{args:?}");
    }
    // The command's own usage, not the overview.
    let e = stderr(&coven(&["resize", "x", "0", "10"]));
    assert!(e.contains("usage: coven resize <id> <cols> <rows>"), "{e}");
    assert!(!e.contains("commands:"), "{e}");
    // With --json, the envelope too.
    let o = coven(&["sessions", "--limit", "0", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let envelope: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(envelope["error"]["code"], "usage");
    // Commands that print honour --json without a daemon too.
    let o = coven(&["version", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["apiVersion"], "coven.daemon.v1");
}

#[test]
fn input_key_names_reach_the_session_byte_for_byte() {
    let d = Daemon::with_sessions("");
    // A raw terminal (no echo, no signals, no CR to LF): the harness reads
    // exactly the bytes typed, and prints them in hex.
    let id = id_of(&d.launch(
        "sh",
        "stty raw -echo; echo ready; head -c 16 | od -An -tx1 -v",
    ));
    d.wait_output(&id, "ready");
    let o = coven(
        &d,
        &[
            "input", &id, "a b", "Tab", "C-c", "Up", "Enter", "C-d", "M-x", "Escape", "BSpace",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("sent 14 bytes to {id}\n"));
    // --literal: the names are text.
    let o = coven(&d, &["input", &id, "--literal", "Up"]);
    assert!(o.status.success(), "{}", stderr(&o));
    d.wait_exit_event(&id);
    let text = output_of(&d.events(&id));
    let hex: Vec<&str> = text
        .split("ready")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        hex.join(" "),
        "61 20 62 09 03 1b 5b 41 0d 04 1b 78 1b 7f 55 70",
        "{text:?}"
    );
}

#[test]
fn several_ids_at_once() {
    let d = Daemon::with_sessions("");
    let a = id_of(&d.launch("sleep", "30"));
    let b = id_of(&d.launch("sleep", "30"));
    let o = coven(&d, &["kill", &a, &b, "--signal", "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("killing {a}: sent KILL")), "{out}");
    assert!(out.contains(&format!("killing {b}: sent KILL")), "{out}");
    d.wait_exit_event(&a);
    d.wait_exit_event(&b);
    let o = coven(&d, &["archive", &a, &b]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("archived {a}\narchived {b}\n"));
    // One that fails does not stop the others; the exit says one failed.
    let o = coven(&d, &["rm", &a, "no-such-session", &b]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), format!("deleted {a}\ndeleted {b}\n"));
    assert!(stderr(&o).contains("no-such-session"), "{}", stderr(&o));
    assert_eq!(d.get(&format!("/api/v1/sessions/{a}")).status, 404);
    assert_eq!(d.get(&format!("/api/v1/sessions/{b}")).status, 404);
}

#[test]
fn completions_and_the_man_page_name_every_command() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "true"));
    let text = |args: &[&str]| {
        let o = coven(&d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let help = text(&["help"]);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A command's row, not a summary's continuation.
        .filter(|l| !l.starts_with("   "))
        .map(|l| {
            let mut w = l.split_whitespace();
            match w.next() {
                Some("daemon") => format!("daemon {}", w.next().unwrap()),
                first => first.unwrap().to_owned(),
            }
        })
        .collect();
    assert!(commands.len() > 20, "{commands:?}");
    let bash = text(&["completions", "bash"]);
    let zsh = text(&["completions", "zsh"]);
    let fish = text(&["completions", "fish"]);
    let man = text(&["man"]).replace("\\-", "-");
    for c in &commands {
        // `daemon serve` as `serve` where the script nests it.
        let last = c.rsplit(' ').next().unwrap();
        for (what, t) in [
            ("bash", &bash),
            ("zsh", &zsh),
            ("fish", &fish),
            ("man", &man),
        ] {
            assert!(t.contains(last), "{what} lacks {c}");
        }
        assert!(man.contains(&format!("coven {c}")), "man lacks {c}");
        // Every option of every command, from its own help.
        let words: Vec<&str> = c.split(' ').collect();
        let mut args = words.clone();
        args.push("--help");
        let own = text(&args);
        let options = own
            .lines()
            .skip_while(|l| *l != "options:")
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")));
        for opt in options {
            for (what, t) in [
                ("bash", &bash),
                ("zsh", &zsh),
                ("fish", &fish),
                ("man", &man),
            ] {
                let name = opt.trim_start_matches('-');
                assert!(t.contains(name), "{what} lacks {opt} (of {c})");
            }
        }
    }

    // bash completes with it: a command, an option, a session id.
    let dir = std::path::Path::new(coven_bin()).parent().unwrap();
    let complete = |line: &str| {
        let script = format!(
            "{bash}\nCOMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _coven; echo \"${{COMPREPLY[*]}}\""
        );
        let o = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("COVEN_HOME", &d.home)
            .env(
                "PATH",
                format!("{}:{}", dir.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .expect("bash");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_owned()
    };
    assert_eq!(complete("coven sess"), "sessions");
    assert_eq!(complete("coven kill --sig"), "--signal");
    assert_eq!(complete("coven daemon inst"), "install");
    assert_eq!(complete(&format!("coven show {}", &id[..id.len() - 2])), id);

    // fish completes with it too.
    let script = d.dir.path().join("coven.fish");
    std::fs::write(&script, &fish).unwrap();
    let o = std::process::Command::new("fish")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C 'coven sess'; complete -C 'coven kill --si'; complete -C 'coven daemon ins'",
            script.display()
        ))
        .output()
        .expect("fish, to check its completions");
    assert!(o.status.success(), "{}", stderr(&o));
    let firsts: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(firsts, ["sessions", "--signal", "install"]);
    // zsh reads it (syntax), and loads it under compinit.
    let script = d.dir.path().join("_coven");
    std::fs::write(&script, &zsh).unwrap();
    let o = std::process::Command::new("zsh")
        .arg("-c")
        .arg(format!(
            "zsh -n {0} && autoload -U compinit && compinit -u -d {1}/zcompdump && source {0} && echo loaded",
            script.display(),
            d.dir.path().display()
        ))
        .output()
        .expect("zsh, to check its completions");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "loaded\n", "{}", stderr(&o));

    // The man page renders without a warning.
    let mut child = std::process::Command::new("man")
        .args(["--warnings", "-l", "-"])
        .env("MANWIDTH", "80")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("man (Debian's man-db), to render the man page");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text(&["man"]).as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    assert!(stdout(&o).contains("coven daemon install"));
}

#[test]
fn readme_quick_start_works_on_a_fresh_machine() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let steps: Vec<&str> = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("README has a quick start")
        .lines()
        .skip_while(|l| !l.starts_with("    "))
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim_start())
        .collect();
    assert!(steps[0].starts_with("cargo install --path . --locked"));
    // The rest, as a newcomer runs it: `coven` on PATH, a fresh HOME,
    // COVEN_HOME unset.
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().join(".coven"));
    let bin = std::path::Path::new(coven_bin()).parent().unwrap();
    let o = std::process::Command::new("bash")
        .args(["-ec", &steps[1..].join("\n")])
        .env_remove("COVEN_HOME")
        .env("HOME", dir.path())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("started (pid "), "{out}");
    assert!(out.contains("hello from a session"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" completed ") && l.contains("shell")),
        "{out}"
    );
    // The curl line names the socket wherever the home is.
    assert!(readme.contains(r#"curl --unix-socket "${COVEN_HOME:-$HOME/.coven}/coven.sock""#));
}
