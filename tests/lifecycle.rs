//! The daemon's life on disk: COVEN_HOME and socket modes, the one-daemon
//! lock, signals, cleanup, and restart after a crash.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use nix::sys::signal::Signal;
use support::*;

#[test]
fn home_and_socket_are_private() {
    let d = Daemon::start();
    assert_eq!(mode(&d.home), 0o700);
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(&d.home.join("daemon.json")), 0o600);
    let meta = std::fs::symlink_metadata(&d.socket).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
}

#[test]
fn loose_home_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon {
        socket: home.join("coven.sock"),
        home,
        dir,
        child: None,
    };
    d.spawn();
    assert_eq!(mode(&d.home), 0o700);
    assert!(d.log().contains("tightened"), "{}", d.log());
}

/// Each client and each session costs descriptors: the daemon raises its
/// soft limit as far as the system allows (here, Linux: to the hard one).
#[test]
#[cfg(target_os = "linux")]
fn the_descriptor_limit_is_raised() {
    // Started with a low soft limit, as a service manager may start it.
    let mut d = Daemon {
        dir: tempfile::tempdir().unwrap(),
        home: std::path::PathBuf::new(),
        socket: std::path::PathBuf::new(),
        child: None,
    };
    d.home = d.dir.path().join("home");
    d.socket = d.home.join("coven.sock");
    let wrapper = d.dir.path().join("low-limit");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -Sn 256 || exit 9\nexec '{}' \"$@\"\n",
            coven_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn_bin(&wrapper);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.server_pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard: {line}");
}

#[test]
fn second_daemon_is_refused() {
    let d = Daemon::start();
    let before = std::fs::read(d.home.join("daemon.json")).unwrap();
    let out = d
        .command()
        .args(["daemon", "serve"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", d.server_pid())), "{err}");
    assert!(err.contains(&d.socket.display().to_string()), "{err}");
    // The first daemon's files are untouched and it still serves.
    assert_eq!(std::fs::read(d.home.join("daemon.json")).unwrap(), before);
    d.assert_alive();
    assert_eq!(
        ps_field(d.server_pid(), "ppid"),
        d.pid().to_string(),
        "the server is the supervisor's child"
    );
    // In a process group of its own: a terminal's Ctrl-C reaches the
    // supervisor alone, which passes it on once.
    assert_eq!(ps_field(d.server_pid(), "pgid"), d.server_pid().to_string());
}

#[test]
fn sigterm_cleans_up() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut d = Daemon::start();
        let mut client = d.connect();
        client.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut client).unwrap().status, 200);
        d.signal(sig);
        let status = d.wait_exit();
        assert!(status.success(), "{sig}: {status}");
        assert!(!d.socket.exists(), "{sig}: socket removed");
        assert!(
            !d.home.join("daemon.json").exists(),
            "{sig}: daemon.json removed"
        );
        assert!(closed_by_peer(&mut client), "{sig}: idle client closed");
        let log = d.log();
        assert!(log.contains("stopping") && log.contains("stopped"), "{log}");
    }
}

#[test]
fn sighup_does_not_stop_the_daemon() {
    let d = Daemon::start();
    d.signal(Signal::SIGHUP);
    wait_for("the SIGHUP log line", || {
        d.log().contains("SIGHUP").then_some(())
    });
    d.assert_alive();
}

#[test]
fn restart_after_sigkill_replaces_stale_socket() {
    let mut d = Daemon::start();
    d.crash();
    assert!(
        d.socket.exists(),
        "a killed daemon leaves its socket behind"
    );
    d.spawn();
    d.assert_alive();
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(
        ps_field(d.server_pid(), "ppid"),
        d.pid().to_string(),
        "the server is the supervisor's child"
    );
}

#[test]
fn bad_config_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.json"),
        r#"{"limits":{"maxHeaders":"lots"}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(coven_bin())
        .args(["daemon", "serve"])
        .env("COVEN_HOME", &home)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("limits.maxHeaders"),
        "{err}"
    );
    assert!(!home.join("coven.sock").exists());
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(coven_bin())
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(coven_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon serve"));
}

#[test]
fn sigterm_finishes_queued_responses() {
    let mut d = Daemon::start();
    let mut s = d.connect();
    // Queue answers the client does not read yet.
    let burst = b"GET /api/v1/capabilities HTTP/1.1\r\n\r\n".repeat(2000);
    s.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while sent < burst.len() {
        match s.write(&burst[sent..]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    s.set_nonblocking(false).unwrap();
    // Let the daemon take in what it can before the signal.
    wait_for("requests to be answered", || {
        let stats = d.get("/health").json()["stats"].clone();
        (stats["requests"].as_u64().unwrap() > 10).then_some(())
    });
    d.signal(Signal::SIGTERM);
    // Every answer that arrives is whole; the stream then ends cleanly.
    let mut answered = 0;
    while let Some(r) = read_response(&mut s) {
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["capabilities"].as_array().unwrap().len(), 3);
        answered += 1;
    }
    assert!(answered > 0);
    assert!(d.wait_exit().success());
}

#[test]
fn socket_path_over_the_platform_limit_is_refused_by_name() {
    let max = coven::sys::max_socket_path_bytes();
    let dir = tempfile::tempdir().unwrap();
    // "<dir>/<pad>/coven.sock" exactly at the limit, then one byte over.
    let pad = max - dir.path().as_os_str().len() - "/".len() - "/coven.sock".len();
    let fits = dir.path().join("h".repeat(pad));
    let mut d = Daemon {
        socket: fits.join("coven.sock"),
        home: fits,
        dir,
        child: None,
    };
    assert_eq!(d.socket.as_os_str().len(), max);
    d.spawn();
    d.assert_alive();

    let long = d.dir.path().join("h".repeat(pad + 1));
    let out = std::process::Command::new(coven_bin())
        .args(["daemon", "serve"])
        .env("COVEN_HOME", &long)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let socket = long.join("coven.sock");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains(&format!("at most {max}")), "{err}");
    assert!(!long.exists(), "nothing is created");
}

#[test]
fn shutdown_route_checks_the_identity_then_stops_like_sigterm() {
    let mut d = Daemon::with_sessions("");
    let health = d.get("/api/v1/health").json();
    let me = health["daemon"].clone();
    let path = "/api/v1/internal/lifecycle/shutdown";

    // Bad bodies: 400 naming the field.
    for (body, field) in [
        ("", "body"),
        ("[]", "body"),
        ("{", "body"),
        (r#"{"daemon":{}}"#, "apiVersion"),
        (r#"{"apiVersion":"coven.daemon.v1"}"#, "daemon"),
        (r#"{"apiVersion":"coven.daemon.v1","daemon":7}"#, "daemon"),
        (
            r#"{"apiVersion":"coven.daemon.v1","daemon":{"pid":"1","startedAt":"x","socket":"y"}}"#,
            "daemon.pid",
        ),
        (
            r#"{"apiVersion":"coven.daemon.v1","daemon":{"pid":1,"socket":"y"}}"#,
            "daemon.startedAt",
        ),
        (
            r#"{"apiVersion":"coven.daemon.v1","daemon":{"pid":1,"startedAt":"x"}}"#,
            "daemon.socket",
        ),
    ] {
        let r = d.post(path, body.as_bytes());
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".into()),
            "{body}"
        );
        assert_eq!(r.json()["error"]["details"]["field"], field, "{body}");
    }
    // Another daemon's identity: 409, and nothing changes.
    let mut others = Vec::new();
    for (key, value) in [
        ("pid", serde_json::json!(me["pid"].as_u64().unwrap() + 1)),
        ("startedAt", serde_json::json!("2020-01-01T00:00:00Z")),
        ("socket", serde_json::json!("/elsewhere/coven.sock")),
    ] {
        let mut daemon = me.clone();
        daemon[key] = value;
        others.push(serde_json::json!({"apiVersion": "coven.daemon.v1", "daemon": daemon}));
    }
    others.push(serde_json::json!({"apiVersion": "coven.daemon.v2", "daemon": me}));
    for body in others {
        let r = d.post(path, body.to_string().as_bytes());
        assert_eq!(
            (r.status, r.code()),
            (409, "daemon_identity_mismatch".into()),
            "{body}"
        );
        assert_eq!(r.json()["error"]["details"]["daemon"], me);
    }
    let r = d.get(path);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    d.assert_alive();

    // The right identity: 202, then the daemon stops as on SIGTERM: its
    // running session is killed and recorded, its files are removed.
    let id = d.launch("sleep", "60")["id"].as_str().unwrap().to_owned();
    let mut s = d.connect();
    let body = serde_json::json!({"apiVersion": "coven.daemon.v1", "daemon": me}).to_string();
    send(&mut s, "POST", path, Some(body.as_bytes()));
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        serde_json::json!({
            "ok": true,
            "apiVersion": "coven.daemon.v1",
            "capabilities": {"structuredErrors": true},
            "daemon": me,
        })
    );
    assert!(
        closed_by_peer(&mut s),
        "the connection closes as the daemon exits"
    );
    // It closed only once the daemon was gone: its files first.
    assert!(!d.socket.exists() && !d.home.join("daemon.json").exists());
    assert!(d.wait_exit().success());
    assert!(!d.socket.exists() && !d.home.join("daemon.json").exists());
    assert!(d.log().contains("shutdown requested"), "{}", d.log());
    d.spawn();
    let record = d.session(&id);
    assert_eq!(record["status"], "killed", "{record}");
    let exit = d.events(&id).pop().unwrap();
    assert_eq!(exit["kind"], "exit");
}
