//! The loopback web view: its auth design checked by hand-made requests on
//! a real TCP socket, and the page checked in a real browser (headless
//! Chromium through playwright-core, `tests/web/browser.mjs`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use support::*;

/// Turns the web view on (any free port) through the CLI; its status.
fn web_on(d: &Daemon) -> Value {
    let o = d
        .command()
        .args(["web", "--port", "0", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// One raw HTTP/1.1 exchange on the web view's port: status, head, body.
fn raw(port: u64, request: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    s.set_read_timeout(Some(deadline())).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, bytes[end + 4..].to_vec())
}

/// The session cookie, from signing in with the status's login link.
fn sign_in(status: &Value) -> String {
    let port = status["port"].as_u64().unwrap();
    let login = status["loginUrl"].as_str().unwrap();
    let path = &login[login.find("/login").unwrap()..];
    let (code, head, _) = raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    cookie.split(';').next().unwrap().to_owned()
}

fn request(port: u64, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, Vec<u8>) {
    raw(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The listening TCP sockets the process holds (Linux: its descriptors'
/// inodes against `/proc/net/tcp*`'s listeners).
fn tcp_listeners(pid: i32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.iter().any(|x| x == i))
        })
        .count()
}

#[test]
fn off_by_default_and_only_on_loopback() {
    let d = Daemon::with_sessions("");
    assert_eq!(tcp_listeners(d.server_pid()), 0, "no listener until asked");
    let o = d
        .command()
        .args(["web", "--address", "0.0.0.0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"));
    // The daemon refuses it too, whoever asks.
    let r = d.post("/api/v1/web", br#"{"address": "0.0.0.0"}"#);
    assert_eq!((r.status, r.code()), (400, "invalid_request".into()));
    let r = d.post("/api/v1/web", br#"{"address": "192.168.1.1", "port": 0}"#);
    assert_eq!(r.status, 400);
    assert_eq!(tcp_listeners(d.server_pid()), 0);

    let status = web_on(&d);
    assert_eq!(status["address"], "127.0.0.1");
    assert_eq!(tcp_listeners(d.server_pid()), 1);
    let port = status["port"].as_u64().unwrap();
    let o = d.command().args(["web", "--off"]).output().unwrap();
    assert!(o.status.success());
    assert_eq!(tcp_listeners(d.server_pid()), 0);
    assert!(TcpStream::connect(("127.0.0.1", port as u16)).is_err());

    // config.json's `web` must be loopback too: a daemon would not start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"web": {"address": "0.0.0.0"}}"#,
    )
    .unwrap();
    let o = std::process::Command::new(coven_bin())
        .args(["daemon", "_handover"])
        .env("COVEN_HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("web.address"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn every_request_is_checked() {
    let d = Daemon::with_sessions("");
    let cat = id_of(&d.launch("cat", "x"));
    let status = web_on(&d);
    let port = status["port"].as_u64().unwrap();
    let home = d.home.join("web-secret");
    // Written by the daemon's writer, off the loop.
    wait_for("the secret's file", || home.exists().then_some(()));
    assert_eq!(mode(&home), 0o600);
    assert_eq!(std::fs::read_to_string(&home).unwrap().trim().len(), 64);

    // No cookie: refused, the page and the API alike.
    let (code, head, _) = request(port, "GET", "/", "", "");
    assert_eq!(code, 401, "{head}");
    let (code, _, _) = request(port, "GET", "/api/v1/sessions", "", "");
    assert_eq!(code, 401);
    // The code is good once.
    let cookie = sign_in(&status);
    let login = status["loginUrl"].as_str().unwrap();
    let path = &login[login.find("/login").unwrap()..];
    let (code, _, _) = request(port, "GET", path, "", "");
    assert_eq!(code, 403);
    let (code, _, _) = request(
        port,
        "GET",
        "/login?code=00112233445566778899aabbccddeeff",
        "",
        "",
    );
    assert_eq!(code, 403);

    let with = format!("Cookie: {cookie}\r\n");
    let (code, head, body) = request(port, "GET", "/", &with, "");
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("Content-Encoding: gzip"));
    assert!(!body.is_empty());
    // Every answer carries the headers, and never a CORS one.
    for (method, path, extra) in [
        ("GET", "/", with.clone()),
        ("GET", "/app.js", with.clone()),
        (
            "GET",
            "/api/v1/sessions",
            format!("{with}Origin: http://evil.example\r\n"),
        ),
        (
            "OPTIONS",
            "/api/v1/sessions",
            format!("{with}Origin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n"),
        ),
        ("GET", "/api/v1/sessions", String::new()),
    ] {
        let (_, head, _) = request(port, method, path, &extra, "");
        for h in [
            "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
        ] {
            assert!(head.contains(h), "{method} {path}: {head}");
        }
        assert!(
            !head.to_ascii_lowercase().contains("access-control-"),
            "{head}"
        );
    }

    // DNS rebinding: another Host is refused, cookie or not.
    let (code, _, body) = raw(
        port,
        &format!("GET /api/v1/sessions HTTP/1.1\r\nHost: attacker.example\r\n{with}Connection: close\r\n\r\n"),
    );
    assert_eq!(code, 421);
    assert!(String::from_utf8_lossy(&body).contains("misdirected_request"));
    let (code, _, _) = raw(
        port,
        &format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\n{with}Connection: close\r\n\r\n"),
    );
    assert_eq!(code, 421);

    // A change needs the page's own Origin: none, or another, changes nothing.
    let kill = format!("/api/v1/sessions/{cat}/kill");
    for origin in ["", "Origin: http://127.0.0.1:1\r\n", "Origin: null\r\n"] {
        let (code, _, body) = request(port, "POST", &kill, &format!("{with}{origin}"), "{}");
        assert_eq!(code, 403, "{origin}");
        assert!(String::from_utf8_lossy(&body).contains("forbidden"));
    }
    assert_eq!(d.session(&cat)["status"], "running");
    // The lifecycle and the web view's own switch are not served here.
    let own = format!("{with}Origin: http://127.0.0.1:{port}\r\n");
    let info = d.get("/api/v1/health").json()["daemon"].clone();
    let ask = serde_json::json!({ "apiVersion": "coven.daemon.v1", "daemon": info }).to_string();
    for path in [
        "/api/v1/internal/lifecycle/shutdown",
        "/api/v1/internal/lifecycle/restart",
        "/api/v1/web",
    ] {
        let (code, _, _) = request(port, "POST", path, &own, &ask);
        assert_eq!(code, 404, "{path}");
    }
    d.assert_alive();
    assert_eq!(d.get("/api/v1/health").status, 200);
    // With the cookie and the Origin: it acts.
    let (code, _, _) = request(
        port,
        "POST",
        &format!("/api/v1/sessions/{cat}/input"),
        &own,
        r#"{"data":"hi\n"}"#,
    );
    assert_eq!(code, 202);
    d.wait_output(&cat, "hi");
    let (code, _, _) = request(port, "POST", &kill, &own, "{}");
    assert_eq!(code, 202);
    d.wait_exit_event(&cat);

    // Off, then on again: the old cookie is dead.
    assert!(d
        .command()
        .args(["web", "--off"])
        .output()
        .unwrap()
        .status
        .success());
    let status = web_on(&d);
    let port = status["port"].as_u64().unwrap();
    let (code, _, _) = request(port, "GET", "/api/v1/sessions", &with, "");
    assert_eq!(code, 401);
}

#[test]
fn it_stays_on_through_a_restart() {
    let d = Daemon::with_sessions("");
    let status = web_on(&d);
    let port = status["port"].as_u64().unwrap();
    let cookie = sign_in(&status);
    let o = d.command().args(["daemon", "restart"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same port, and the cookie still good (the secret is on disk).
    let (code, head, _) = wait_for("the web view after the restart", || {
        let s = TcpStream::connect(("127.0.0.1", port as u16)).ok()?;
        drop(s);
        Some(request(
            port,
            "GET",
            "/api/v1/sessions",
            &format!("Cookie: {cookie}\r\n"),
            "",
        ))
    });
    assert_eq!(code, 200, "{head}");
}

#[test]
fn screens_stream_sends_changes_only() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "echo first; read x; echo second; sleep 30"));
    d.wait_output(&id, "first");
    let mut s = open_stream(&d, &format!("/api/v1/screens/stream?ids={id},nosuch"), "");
    s.set_read_timeout(Some(deadline())).unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    let mut frames = |text: &mut String, want: &str| loop {
        if text.contains(want) {
            return;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    };
    frames(&mut text, "event: gone");
    frames(&mut text, "\"first\"");
    assert!(text.contains("event: screen"));
    let first: Value = serde_json::from_str(
        text.lines()
            .find_map(|l| {
                l.strip_prefix("data: ")
                    .filter(|l| l.contains("\"screen\""))
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["screen"]["cells"][0][0][0], "first");
    d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"x\n"}"#,
    );
    frames(&mut text, "\"second\"");
    assert_eq!(text.matches("event: gone").count(), 1);
    // A frame per change (the first screen, perhaps the input's echo, the
    // second line), not one per pace.
    assert!(text.matches("event: screen").count() <= 3, "{text}");
}

#[test]
fn the_page_in_a_real_browser() {
    let d = Daemon::with_sessions("");
    let ticker = id_of(&d.launch(
        "sh",
        "i=0; while [ $i -lt 400 ]; do i=$((i+1)); printf '\\033[32mtick\\033[0m %s\\n' $i; sleep 0.1; done; sleep 30",
    ));
    let cat = id_of(&d.launch("cat", "x"));
    let colours = id_of(&d.launch(
        "sh",
        "printf '\\033[1;31mred bold\\033[0m plain \\033[44mblue\\033[0m\\nsecond line\\n'; sleep 60",
    ));
    d.wait_output(&colours, "second line");
    let status = web_on(&d);
    let shot = d.dir.path().join("web.png");
    let input = serde_json::json!({
        "base": status["url"],
        "login": status["loginUrl"],
        "ticker": ticker,
        "cat": cat,
        "screenshot": shot,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: npm ci --prefix tests/web (.ci/run does)"
    );
    let o = std::process::Command::new("node")
        .arg("browser.mjs")
        .current_dir(dir)
        .env("COVEN_WEB_TEST", input.to_string())
        .output()
        .expect("node, to drive the browser");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen: Value = serde_json::from_slice(&o.stdout).unwrap();

    // Signing in: refused without the cookie; the code works once.
    assert_eq!(seen["withoutCookie"], 401);
    assert_eq!(seen["loginStatus"], 200);
    assert_eq!(seen["afterLogin"], status["url"]);
    assert_eq!(seen["cookie"][0]["httpOnly"], true);
    assert_eq!(seen["cookie"][0]["sameSite"], "Strict");
    assert_eq!(seen["loginAgain"], 403);

    // A tile's rows are the session's screen.
    let tiles = seen["tiles"].as_array().unwrap();
    let tile = tiles.iter().find(|t| t["id"] == colours.as_str()).unwrap();
    let screen = d.get(&format!("/api/v1/sessions/{colours}/screen")).json();
    let rows: Vec<String> = tile["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().trim_end().to_owned())
        .collect();
    let lines: Vec<String> = screen["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().trim_end().to_owned())
        .collect();
    assert_eq!(rows, lines);
    assert!(tiles.iter().any(|t| t["id"] == ticker.as_str()));
    assert_eq!(seen["tickerChanged"], true);

    // Typed in the full view, echoed by cat; the view's size is the PTY's.
    let full: Vec<&str> = seen["fullText"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        full.iter()
            .filter(|r| r.contains("typed in the browser"))
            .count()
            >= 2,
        "{full:?}"
    );
    let output = output_of(&d.events(&cat));
    assert!(output.contains("typed in the browser"), "{output:?}");
    assert!(
        seen["fullSize"]["cols"].as_u64().unwrap() > 80,
        "{}",
        seen["fullSize"]
    );
    assert_eq!(seen["fullClosed"], true);

    // Another origin reads nothing and changes nothing.
    let evil = &seen["evil"];
    assert_eq!(evil["read"], "failed: TypeError", "{evil}");
    assert_eq!(evil["fetchPost"], "failed: TypeError", "{evil}");
    assert_eq!(evil["opaque"], "opaque 0 0", "{evil}");
    assert_eq!(evil["stream"], "error", "{evil}");
    assert_eq!(seen["formStatus"], 403, "{seen}");
    assert!(seen["formBody"].as_str().unwrap().contains("forbidden"));
    assert_eq!(d.session(&cat)["status"], "running");

    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    if let Some(keep) = std::env::var_os("COVEN_WEB_SCREENSHOT") {
        std::fs::write(keep, png).unwrap();
    }
}

#[test]
fn config_turns_it_on_at_start() {
    let config = format!(r#"{{"harnesses": {HARNESSES}, "web": {{"port": 0}}}}"#);
    let d = Daemon::start_with_config(Some(&config));
    let status = d.get("/api/v1/web").json();
    assert_eq!(status["on"], true, "{status}");
    let port = status["port"].as_u64().unwrap();
    assert!(port > 0);
    assert_eq!(tcp_listeners(d.server_pid()), 1);
    // Signing in works as with `coven web`.
    let status = web_on(&d);
    assert_eq!(status["port"].as_u64().unwrap(), port, "stays where it is");
    let cookie = sign_in(&status);
    let (code, _, _) = request(
        port,
        "GET",
        "/api/v1/health",
        &format!("Cookie: {cookie}\r\n"),
        "",
    );
    assert_eq!(code, 200);
}
