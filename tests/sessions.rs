//! Harness sessions end to end: real PTYs, real processes, declared test
//! harnesses (`/bin/sh -c`, `cat`, `sleep`).

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use support::*;

fn is_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[test]
fn launch_list_get_shapes() {
    let d = Daemon::with_sessions("");
    let root = std::fs::canonicalize(d.dir.path())
        .unwrap()
        .display()
        .to_string();
    let s = d.launch("sh", "echo hi; sleep 30");
    let keys: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "id",
        "project_root",
        "harness",
        "title",
        "status",
        "exit_code",
        "archived_at",
        "created_at",
        "updated_at",
        "cwd",
        "pid",
    ]
    .into();
    assert_eq!(keys, expected);
    let id = s["id"].as_str().unwrap();
    assert!(is_id(id, 128), "{id}");
    assert_eq!(s["project_root"], root);
    assert_eq!(s["cwd"], root);
    assert_eq!(s["harness"], "sh");
    assert_eq!(
        s["title"], "echo hi; sleep 30",
        "title defaults to the prompt"
    );
    assert_eq!(s["status"], "running");
    assert_eq!(s["exit_code"], Value::Null);
    assert_eq!(s["archived_at"], Value::Null);
    assert!(s["pid"].as_i64().unwrap() > 0);
    for t in ["created_at", "updated_at"] {
        humantime::parse_rfc3339(s[t].as_str().unwrap()).unwrap();
    }
    assert_eq!(d.session(id), s);

    let root2 = d.dir.path().join("sub");
    std::fs::create_dir(&root2).unwrap();
    let body = json!({"projectRoot": root2, "harness": "sleep", "prompt": "30", "title": "Second"});
    let second = d
        .post("/api/v1/sessions", body.to_string().as_bytes())
        .json();
    assert_eq!(second["title"], "Second");
    let list = d.get("/api/v1/sessions").json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap(), id], "newest first");
    assert_eq!(d.get("/sessions").json(), list, "legacy alias");

    let r = d.get("/api/v1/sessions/nope");
    assert_eq!((r.status, r.code()), (404, "session_not_found".into()));
    assert_eq!(r.json()["error"]["details"], json!({"sessionId": "nope"}));
    let health = d.get("/health").json();
    assert_eq!(health["stats"]["liveSessions"], 2);
    assert_eq!(health["stats"]["sessions"], 2);
}

#[test]
fn launch_validation_changes_nothing() {
    let d = Daemon::with_sessions("");
    let root = d.dir.path().join("project");
    std::fs::create_dir_all(root.join("inner")).unwrap();
    std::fs::write(root.join("file"), "x").unwrap();
    std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
    let marker = d.dir.path().join("marker");
    let prompt = format!("touch {}", marker.display());
    let root_s = root.display().to_string();
    let cases: Vec<(Vec<u8>, u16, &str, Value)> = vec![
        (b"{not json".to_vec(), 400, "invalid_request", json!("body")),
        (b"[1]".to_vec(), 400, "invalid_request", json!("body")),
        (
            json!({"harness": "sh", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("projectRoot"),
        ),
        (
            json!({"projectRoot": "relative/dir", "harness": "sh", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("projectRoot"),
        ),
        (
            json!({"projectRoot": "/definitely/missing", "harness": "sh", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("projectRoot"),
        ),
        (
            json!({"projectRoot": root.join("file"), "harness": "sh", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("projectRoot"),
        ),
        (
            json!({"projectRoot": 7, "harness": "sh", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("projectRoot"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cwd": "../"})
                .to_string()
                .into(),
            400,
            "project_root_violation",
            Value::Null,
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cwd": "escape"})
                .to_string()
                .into(),
            400,
            "project_root_violation",
            Value::Null,
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cwd": "/tmp"})
                .to_string()
                .into(),
            400,
            "project_root_violation",
            Value::Null,
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cwd": "missing"})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("cwd"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cwd": "file"})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("cwd"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "nope", "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("harness"),
        ),
        (
            json!({"projectRoot": root_s, "prompt": prompt})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("harness"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh"})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("prompt"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": "   "})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("prompt"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": ["x"]})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("prompt"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "title": 5})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("title"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "cols": 0})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("cols"),
        ),
        (
            json!({"projectRoot": root_s, "harness": "sh", "prompt": prompt, "rows": 1001})
                .to_string()
                .into(),
            400,
            "invalid_request",
            json!("rows"),
        ),
    ];
    for (body, status, code, field) in &cases {
        let r = d.post("/api/v1/sessions", body);
        let what = String::from_utf8_lossy(body);
        assert_eq!(
            (r.status, r.code().as_str()),
            (*status, *code),
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let details = &r.json()["error"]["details"];
        if !field.is_null() {
            assert_eq!(&details["field"], field, "{what}");
        }
        if *code == "project_root_violation" {
            assert!(
                details["projectRoot"].is_string() && details["cwd"].is_string(),
                "{details}"
            );
        }
    }
    let r = d.post(
        "/api/v1/sessions",
        json!({"projectRoot": root_s, "harness": "nope", "prompt": "x"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        r.json()["error"]["details"]["knownHarnesses"],
        json!(["codex", "claude", "copilot", "sh", "cat", "sleep", "broken", "envy"])
    );
    assert_eq!(
        d.get("/api/v1/sessions").json(),
        json!([]),
        "nothing recorded"
    );
    assert!(!marker.exists(), "nothing ran");
    // A cwd inside the root, relative or absolute, is fine.
    for cwd in [json!("inner"), json!(root.join("inner"))] {
        let body = json!({"projectRoot": root_s, "harness": "sh", "prompt": "pwd", "cwd": cwd});
        let r = d.post("/api/v1/sessions", body.to_string().as_bytes());
        assert_eq!(r.status, 201);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(r.json()["cwd"], root.join("inner").display().to_string());
        assert!(d
            .wait_output(&id, "/inner")
            .contains(&root.join("inner").display().to_string()));
    }
}

#[test]
fn spawn_failure_is_recorded_failed() {
    let d = Daemon::with_sessions("");
    let root = d.dir.path().display().to_string();
    for harness in ["broken", "codex"] {
        let body = json!({"projectRoot": root, "harness": harness, "prompt": "x"});
        let r = d.post("/api/v1/sessions", body.to_string().as_bytes());
        if harness == "codex" && r.status == 201 {
            continue; // a real codex on this machine's PATH
        }
        assert_eq!(
            (r.status, r.code()),
            (500, "pty_spawn_failed".into()),
            "{harness}"
        );
        let id = r.json()["error"]["details"]["sessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        let s = d.session(&id);
        assert_eq!(s["status"], "failed");
        assert_eq!(s["pid"], Value::Null);
        let events = d.events(&id);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["kind"], "exit");
        assert_eq!(payload(&events[0])["status"], "failed");
    }
    assert_eq!(d.get("/health").json()["stats"]["liveSessions"], 0);
}

/// What this machine's `waitpid` says ended a shell that killed itself
/// with signal `n`, if a signal did.
fn direct_death(n: i32) -> Option<i32> {
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", &format!("kill -{n} $$")])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut raw = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut raw, 0) };
    let _ = child.try_wait();
    libc::WIFSIGNALED(raw).then(|| libc::WTERMSIG(raw))
}

/// A harness killed by a signal nix has no name for (a Linux real-time
/// signal) ends its session like any other: the status is never lost.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "signal 34 is a real-time signal on Linux only"
)]
fn a_death_by_an_unnamed_signal_ends_the_session() {
    // 34; under qemu-user (CI's aarch64 run), which keeps 34 and 35 for
    // itself and renumbers the others, 40.
    let n = if direct_death(34) == Some(34) { 34 } else { 40 };
    let seen = direct_death(n).expect("the signal ends a shell");
    let d = Daemon::with_sessions("");
    let id = d.launch("sh", &format!("kill -{n} $$"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = d.wait_exit_event(&id);
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].clone()),
        (Some("failed"), Value::Null)
    );
    assert_eq!(
        exit_of(&d.events(&id).pop().unwrap()),
        json!({"status": "failed", "exitCode": null, "signalNumber": seen})
    );
    assert_eq!(d.get("/health").json()["stats"]["liveSessions"], 0);
}

#[test]
fn exits_completed_failed_and_signalled() {
    let d = Daemon::with_sessions("");
    let ok = d.launch("sh", "echo done")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let three = d.launch("sh", "exit 3")["id"].as_str().unwrap().to_owned();
    let killed = d.launch("sh", "kill -KILL $$")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = d.wait_exit_event(&ok);
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("completed"), Some(0))
    );
    assert_eq!(s["pid"], Value::Null);
    let exit = d.events(&ok).pop().unwrap();
    assert_eq!(
        exit_of(&exit),
        json!({"status": "completed", "exitCode": 0})
    );
    assert!(output_of(&d.events(&ok)).contains("done\n"));

    let s = d.wait_exit_event(&three);
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(
        exit_of(&d.events(&three).pop().unwrap()),
        json!({"status": "failed", "exitCode": 3})
    );

    let s = d.wait_exit_event(&killed);
    assert_eq!(s["status"], "failed");
    assert_eq!(s["exit_code"], Value::Null);
    assert_eq!(
        exit_of(&d.events(&killed).pop().unwrap()),
        json!({"status": "failed", "exitCode": null, "signal": "KILL", "signalNumber": libc::SIGKILL})
    );
    // Input, kill and resize on a finished session: 409.
    for (path, body) in [
        ("input", r#"{"data":"x"}"#),
        ("kill", ""),
        ("resize", r#"{"cols":10,"rows":10}"#),
    ] {
        let r = d.post(&format!("/api/v1/sessions/{ok}/{path}"), body.as_bytes());
        assert_eq!(
            (r.status, r.code()),
            (409, "session_not_live".into()),
            "{path}"
        );
        let r = d.post(&format!("/api/v1/sessions/missing/{path}"), body.as_bytes());
        assert_eq!(
            (r.status, r.code()),
            (404, "session_not_found".into()),
            "{path}"
        );
    }
}

/// A harness that prints and exits at once keeps its whole output, and its
/// session ends by the PTY's EOF once the daemon lets go of its own slave
/// descriptor, not by the drain timer. (macOS and FreeBSD drop unread
/// output at the last slave close; the held slave is what saves it there.)
#[test]
fn fast_exits_keep_their_tail_and_end_by_eof() {
    let d = Daemon::with_sessions("");
    let ids: Vec<String> = (0..20)
        .map(|i| {
            let prompt = format!("printf 'line-%s\\n' {i} $(seq 1 200); printf tail-{i}");
            d.launch("sh", &prompt)["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let s = d.wait_exit_event(id);
        assert_eq!(s["status"], "completed", "{s}");
        let want: String = std::iter::once(i)
            .chain(1..=200)
            .map(|n| format!("line-{n}\n"))
            .chain([format!("tail-{i}")])
            .collect();
        assert_eq!(output_of(&d.events(id)), want);
    }
    assert!(!d.log().contains("no EOF"), "{}", d.log());
}

#[test]
fn environment_and_terminal() {
    let d = Daemon::with_sessions("");
    let id = d.launch(
        "envy",
        "echo TERM=$TERM VAR=$COVEN_TEST_VAR; tty; stty size",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&id);
    let out = output_of(&d.events(&id));
    assert!(out.contains("TERM=xterm-256color VAR=from-config"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("24 80"), "{out}");
    let root = d.dir.path().display().to_string();
    let body = json!({"projectRoot": root, "harness": "sh", "prompt": "stty size", "cols": 132, "rows": 50});
    let id = d
        .post("/api/v1/sessions", body.to_string().as_bytes())
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(d.wait_output(&id, "50 132").contains("50 132"));
}

/// A megabyte of lines with multi-byte characters comes back byte for byte,
/// however the PTY splits it.
#[test]
fn megabyte_of_output_is_exact() {
    let d = Daemon::with_sessions(r#""ringBytes": 16777216"#);
    let script =
        r#"i=0; while [ $i -lt 35000 ]; do printf '%05d é€😀 ñ abcdefghij\n' $i; i=$((i+1)); done"#;
    let id = d.launch("sh", script)["id"].as_str().unwrap().to_owned();
    d.wait_exit_event(&id);
    let events = d.events(&id);
    let mut expected = String::new();
    for i in 0..35000 {
        expected.push_str(&format!("{i:05} é€😀 ñ abcdefghij\n"));
    }
    assert!(expected.len() > 1_000_000);
    let got = output_of(&events);
    assert!(
        got == expected,
        "output differs (got {} bytes, want {})",
        got.len(),
        expected.len()
    );
    for e in events.iter().filter(|e| e["kind"] == "output") {
        let data = payload(e)["data"].as_str().unwrap().to_owned();
        assert!(
            data.len() <= 48 * 1024,
            "an output event carries {} bytes",
            data.len()
        );
        assert!(!data.contains('\u{FFFD}'), "a character was mangled");
        assert!(e["payload_json"].as_str().unwrap().len() < 64_000);
    }
    // Sequence numbers strictly increase; ids are unique and well-formed.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    assert!(ids.iter().all(|i| is_id(i, 256)));
    assert!(events.iter().all(|e| e["session_id"] == id.as_str()));
}

#[test]
fn input_is_echoed_and_recorded() {
    let d = Daemon::with_sessions("");
    let id = d.launch("cat", "ignored")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for line in ["hello\n", "wörld 😀\n"] {
        let r = d.post(
            &format!("/api/v1/sessions/{id}/input"),
            json!({"data": line}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
        assert_eq!(r.json(), json!({"ok": true, "accepted": true}));
    }
    // The terminal echoes each line, and cat repeats it: twice each, in
    // whatever interleaving the timing gives.
    wait_for("both lines twice", || {
        let out = output_of(&d.events(&id));
        (out.matches("hello\n").count() == 2 && out.matches("wörld 😀\n").count() == 2)
            .then_some(())
    });
    let inputs: Vec<Value> = d
        .events(&id)
        .iter()
        .filter(|e| e["kind"] == "input")
        .map(payload)
        .collect();
    assert_eq!(
        inputs,
        [json!({"data": "hello\n"}), json!({"data": "wörld 😀\n"})]
    );
    for bad in [&b"{}"[..], br#"{"data":5}"#, b"nope", b"[]"] {
        let r = d.post(&format!("/api/v1/sessions/{id}/input"), bad);
        assert_eq!((r.status, r.code()), (400, "invalid_request".into()));
    }
    assert_eq!(
        d.events(&id)
            .iter()
            .filter(|e| e["kind"] == "input")
            .count(),
        2,
        "bad input changes nothing"
    );
}

#[test]
fn full_input_queue_is_503() {
    let d = Daemon::with_sessions(r#""inputQueueBytes": 4096"#);
    // Nobody reads the terminal: the PTY fills, then the queue.
    let id = d.launch("sh", "stty -icanon -echo; echo ready; sleep 60")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "ready");
    let chunk = "x".repeat(1000);
    let mut refused = None;
    for i in 0..2000 {
        let r = d.post(
            &format!("/api/v1/sessions/{id}/input"),
            json!({"data": chunk}).to_string().as_bytes(),
        );
        if r.status != 202 {
            refused = Some((i, r));
            break;
        }
    }
    let (accepted, r) = refused.expect("the input queue never filled");
    assert_eq!((r.status, r.code()), (503, "runtime_unavailable".into()));
    assert_eq!(r.json()["error"]["details"]["inputQueueBytes"], 4096);
    let inputs = d
        .events(&id)
        .iter()
        .filter(|e| e["kind"] == "input")
        .count();
    assert_eq!(inputs, accepted, "a refused input is not recorded");
    // Input larger than the queue could ever hold is 413, not "try again".
    let r = d.post(
        &format!("/api/v1/sessions/{id}/input"),
        json!({"data": "y".repeat(4097)}).to_string().as_bytes(),
    );
    assert_eq!((r.status, r.code()), (413, "input_too_large".into()));
    assert_eq!(r.json()["error"]["details"]["bytes"], 4097);
    let after = d
        .events(&id)
        .iter()
        .filter(|e| e["kind"] == "input")
        .count();
    assert_eq!(after, accepted);
    d.assert_alive();
}

#[test]
fn kill_escalates_past_a_trapped_term() {
    let d = Daemon::with_sessions("");
    let id = d.launch("sh", "trap '' TERM; echo ready; while :; do sleep 1; done")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "ready");
    let r = d.post(
        &format!("/api/v1/sessions/{id}/kill"),
        format!(r#"{{"graceMs": {}}}"#, scaled_ms(200)).as_bytes(),
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), json!({"ok": true, "accepted": true}));
    assert_eq!(d.session(&id)["status"], "killed", "killed at once");
    let r = d.post(&format!("/api/v1/sessions/{id}/kill"), b"");
    assert_eq!(
        (r.status, r.code()),
        (409, "session_not_live".into()),
        "a second kill"
    );
    let s = d.wait_exit_event(&id);
    assert_eq!(s["status"], "killed");
    let events = d.events(&id);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let kill_at = kinds.iter().position(|k| *k == "kill").unwrap();
    assert_eq!(payload(&events[kill_at]), json!({"status": "killed"}));
    assert_eq!(kinds.last(), Some(&"exit"));
    assert_eq!(
        exit_of(events.last().unwrap()),
        json!({"status": "killed", "exitCode": null, "signal": "KILL", "signalNumber": libc::SIGKILL})
    );
}

#[test]
fn kill_reaches_background_grandchildren() {
    let d = Daemon::with_sessions("");
    let pidfile = d.dir.path().join("grandchild.pid");
    let id = d.launch(
        "sh",
        &format!(
            "sleep 1000 & echo $! > {}; echo started; wait",
            pidfile.display()
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "started");
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_gone(grandchild));
    let r = d.post(
        &format!("/api/v1/sessions/{id}/kill"),
        br#"{"signal":"TERM"}"#,
    );
    assert_eq!(r.status, 202);
    let s = d.wait_exit_event(&id);
    assert_eq!(s["status"], "killed");
    assert_eq!(payload(&d.events(&id).pop().unwrap())["signal"], "TERM");
    wait_for("the grandchild to die", || {
        process_gone(grandchild).then_some(())
    });
}

#[test]
fn kill_body_is_checked_after_existence_and_liveness() {
    let d = Daemon::with_sessions("");
    let id = d.launch("sleep", "60")["id"].as_str().unwrap().to_owned();
    for bad in [
        &br#"{"signal":"STOP"}"#[..],
        br#"{"signal":9}"#,
        br#"{"graceMs":-1}"#,
        br#"{"graceMs":60001}"#,
        b"[]",
        b"{",
    ] {
        let r = d.post(&format!("/api/v1/sessions/{id}/kill"), bad);
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".into()),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        d.session(&id)["status"],
        "running",
        "a bad kill changes nothing"
    );
    let r = d.post(
        &format!("/api/v1/sessions/{id}/kill"),
        br#"{"signal":"SIGKILL"}"#,
    );
    assert_eq!(r.status, 202);
    d.wait_exit_event(&id);
    let r = d.post(
        &format!("/api/v1/sessions/{id}/kill"),
        br#"{"signal":"STOP"}"#,
    );
    assert_eq!(r.status, 409, "liveness is checked before the body");
}

#[test]
fn resize_reaches_the_harness() {
    let d = Daemon::with_sessions("");
    let id = d.launch(
        "sh",
        "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "ready");
    let r = d.post(
        &format!("/api/v1/sessions/{id}/resize"),
        br#"{"cols":100,"rows":40}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"ok": true, "accepted": true}));
    d.wait_output(&id, "40 100");
    for bad in [
        &br#"{"cols":0,"rows":5}"#[..],
        br#"{"cols":5}"#,
        br#"{"cols":1001,"rows":5}"#,
    ] {
        let r = d.post(&format!("/api/v1/sessions/{id}/resize"), bad);
        assert_eq!(r.status, 400);
    }
}

#[test]
fn paging_and_cursors() {
    let d = Daemon::with_sessions("");
    let id = d.launch(
        "sh",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.01; done",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&id);
    let all = d.events(&id);
    assert!(all.len() >= 3);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let base = format!("/api/v1/events?sessionId={id}");
    // Both routes answer the same page.
    assert_eq!(
        d.get(&base).json(),
        d.get(&format!("/api/v1/sessions/{id}/events")).json()
    );
    assert_eq!(
        d.get(&base).json(),
        d.get(&format!("/events?sessionId={id}")).json()
    );
    let page = d.get(&base).json();
    assert_eq!(page["events"].as_array().unwrap().len(), all.len());
    assert_eq!(page["hasMore"], false);
    assert_eq!(
        page["nextCursor"],
        json!({"afterSeq": seqs[seqs.len() - 1]})
    );
    // limit and hasMore.
    let page = d.get(&format!("{base}&limit=2")).json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["nextCursor"], json!({"afterSeq": seqs[1]}));
    // afterSeq.
    let page = d.get(&format!("{base}&afterSeq={}", seqs[1])).json();
    assert_eq!(page["events"][0]["seq"], seqs[2]);
    // afterEventId is the same position.
    let eid = all[1]["id"].as_str().unwrap();
    assert_eq!(d.get(&format!("{base}&afterEventId={eid}")).json(), page);
    // Past the end: empty, null cursor.
    let page = d
        .get(&format!("{base}&afterSeq={}", seqs[seqs.len() - 1]))
        .json();
    assert_eq!(
        page,
        json!({"events": [], "nextCursor": null, "hasMore": false})
    );
    // limit=0 is clamped up, a huge limit down.
    assert_eq!(
        d.get(&format!("{base}&limit=0")).json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        d.get(&format!("{base}&limit=99999999")).json()["events"]
            .as_array()
            .unwrap()
            .len(),
        all.len()
    );
    // Errors.
    for (q, status, code, field) in [
        ("", 400, "invalid_request", "sessionId"),
        ("?sessionId=", 400, "invalid_request", "sessionId"),
        (
            &format!("?sessionId={id}&afterSeq=x")[..],
            400,
            "invalid_request",
            "afterSeq",
        ),
        (
            &format!("?sessionId={id}&afterSeq=-1")[..],
            400,
            "invalid_request",
            "afterSeq",
        ),
        (
            &format!("?sessionId={id}&limit=ten")[..],
            400,
            "invalid_request",
            "limit",
        ),
        (
            &format!("?sessionId={id}&afterEventId=bogus")[..],
            400,
            "invalid_request",
            "afterEventId",
        ),
        (
            &format!("?sessionId={id}&afterEventId=e999999")[..],
            400,
            "invalid_request",
            "afterEventId",
        ),
    ] {
        let r = d.get(&format!("/api/v1/events{q}"));
        assert_eq!((r.status, r.code().as_str()), (status, code), "{q}");
        assert_eq!(r.json()["error"]["details"]["field"], field, "{q}");
    }
    let r = d.get("/api/v1/events?sessionId=missing");
    assert_eq!((r.status, r.code()), (404, "session_not_found".into()));
    // Another session's event id is not a position in this one.
    let other = d.launch("sh", "echo other")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&other);
    let other_eid = d.events(&other)[0]["id"].as_str().unwrap().to_owned();
    let r = d.get(&format!("{base}&afterEventId={other_eid}"));
    assert_eq!(r.status, 400);
}

#[test]
fn pages_stop_before_512_kib() {
    let d = Daemon::with_sessions(r#""ringBytes": 67108864"#);
    // Control bytes escape to six characters, twice over in payload_json.
    let id = d.launch(
        "sh",
        "head -c 400000 /dev/zero | tr '\\0' '\\1'; echo; echo end",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&id);
    let r = d.get(&format!("/api/v1/sessions/{id}/events"));
    assert!(r.body.len() <= 512 * 1024, "page of {} bytes", r.body.len());
    let page = r.json();
    assert_eq!(page["hasMore"], true);
    let n = page["events"].as_array().unwrap().len();
    assert!((1..500).contains(&n), "{n} events");
    // Every event's payload_json stays under the clients' 64,000 bytes.
    for e in page["events"].as_array().unwrap() {
        assert!(e["payload_json"].as_str().unwrap().len() < 64_000);
    }
    assert!(output_of(&d.events(&id)).ends_with("\nend\n"));
}

#[test]
fn small_rings_lose_nothing() {
    let d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    let id = d.launch(
        "sh",
        "head -c 300000 /dev/zero | tr '\\0' 'a'; echo; echo end",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_exit_event(&id);
    // The ring held 64 KiB; the journal holds the rest.
    let page = d.get(&format!("/api/v1/sessions/{id}/events")).json();
    assert!(page.get("firstAvailableSeq").is_none());
    let out = output_of(&d.events(&id));
    assert_eq!(out, format!("{}\nend\n", "a".repeat(300000)));
    let stats = d.get("/health").json()["stats"].clone();
    assert_eq!(
        stats["ringBytes"], 0,
        "a finished session's events live on disk only"
    );
    assert!(stats["journalBytes"].as_u64().unwrap() > 300000);
    assert_eq!(stats["sessionsOnDisk"], 1);
}

#[test]
fn two_hundred_concurrent_sessions() {
    let d = Daemon::with_sessions("");
    let ids: Vec<String> = (0..200)
        .map(|i| {
            d.launch(
                "sh",
                &format!("echo started {i}; read line; echo got $line"),
            )["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(d.get("/health").json()["stats"]["liveSessions"], 200);
    for (i, id) in ids.iter().enumerate() {
        d.wait_output(id, &format!("started {i}"));
        let r = d.post(
            &format!("/api/v1/sessions/{id}/input"),
            json!({"data": format!("n{i}\n")}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
    }
    for (i, id) in ids.iter().enumerate() {
        let s = d.wait_exit_event(id);
        assert_eq!(s["status"], "completed");
        assert!(output_of(&d.events(id)).contains(&format!("got n{i}")));
    }
    assert_eq!(d.get("/health").json()["stats"]["liveSessions"], 0);
}

#[test]
fn live_session_limit_is_503() {
    let d = Daemon::with_sessions(r#""maxLiveSessions": 2"#);
    let a = d.launch("sleep", "60")["id"].as_str().unwrap().to_owned();
    d.launch("sleep", "60");
    let root = d.dir.path().display().to_string();
    let r = d.post(
        "/api/v1/sessions",
        json!({"projectRoot": root, "harness": "sleep", "prompt": "60"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((r.status, r.code()), (503, "runtime_unavailable".into()));
    assert_eq!(r.json()["error"]["details"]["maxLiveSessions"], 2);
    assert_eq!(
        d.get("/api/v1/sessions").json().as_array().unwrap().len(),
        2
    );
    d.post(
        &format!("/api/v1/sessions/{a}/kill"),
        br#"{"signal":"KILL"}"#,
    );
    d.wait_exit_event(&a);
    d.launch("sleep", "60");
}

/// Reads the harness's descriptors and ids from `/proc`: Linux-only by
/// design. The spawn it checks (`sys::pty`) is the same code everywhere.
#[cfg(target_os = "linux")]
#[test]
fn harness_sees_only_its_pty() {
    let d = Daemon::with_sessions("");
    // Keep some connections open so that the daemon has descriptors to leak.
    let _held: Vec<_> = (0..5).map(|_| d.connect()).collect();
    let first = d.launch("sleep", "60");
    let s = d.launch("sleep", "60");
    let pid = s["pid"].as_i64().unwrap();
    for p in [pid, first["pid"].as_i64().unwrap()] {
        // `sleep` opens and closes its locale files as it starts: wait for
        // it to settle. A leaked descriptor would never go away.
        let read = || -> Option<Vec<(String, String)>> {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .ok()?
                .map(|e| {
                    let e = e.ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((
                        e.file_name().into_string().ok()?,
                        target.display().to_string(),
                    ))
                })
                .collect()
        };
        let fds = wait_for("the harness to hold only its terminal", || {
            read().filter(|fds| {
                let names: BTreeSet<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
                names == BTreeSet::from(["0", "1", "2"])
            })
        });
        let pts: BTreeSet<&str> = fds.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(pts.len(), 1, "{fds:?}");
        assert!(
            pts.iter().next().unwrap().starts_with("/dev/pts/"),
            "{fds:?}"
        );
    }
    // Session leader with the PTY as controlling terminal, in its own group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgrp");
    assert_eq!(fields[3], pid.to_string(), "session");
    assert_ne!(fields[4], "0", "controlling terminal");
}

#[test]
fn harnesses_route() {
    let d = Daemon::with_sessions("");
    let h = d.get("/api/v1/harnesses").json();
    let list = h["harnesses"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["codex", "claude", "copilot", "sh", "cat", "sleep", "broken", "envy"]
    );
    let sh = &list[3];
    assert_eq!(
        sh,
        &json!({"id": "sh", "label": "Shell", "executable": "/bin/sh", "available": true})
    );
    assert_eq!(list[6]["available"], false);
    assert_eq!(list[6]["executable"], "/nonexistent/harness");
}

#[test]
fn daemon_stop_kills_sessions() {
    let mut d = Daemon::with_sessions("");
    let a = d.launch("sleep", "1000")["pid"].as_i64().unwrap() as i32;
    let b = d.launch("sh", "trap '' TERM; sleep 1000")["pid"]
        .as_i64()
        .unwrap() as i32;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log());
    wait_for("session processes to die", || {
        (process_gone(a) && process_gone(b)).then_some(())
    });
    assert!(!Path::new(&d.socket).exists());
}
