//! `GET /sessions/:id/wait`: held until the session exits, goes quiet or
//! prints matching text, answered `met: false` at its deadline; bad
//! requests refused with the field named.

mod support;

use serde_json::Value;
use std::io::Write;
use support::*;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn wait(d: &Daemon, id: &str, query: &str) -> (u16, Value) {
    let r = d.get(&format!("/api/v1/sessions/{id}/wait?{query}"));
    (r.status, r.json())
}

#[test]
fn exit_is_met_with_the_exit_event() {
    let d = Daemon::with_sessions("");
    let s = id(&d.launch("sh", "sleep 0.3; exit 3"));
    let (status, got) = wait(&d, &s, "for=exit");
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["met"].clone(), got["for"].clone()),
        (true.into(), "exit".into())
    );
    let events = d.events(&s);
    let exit = events
        .iter()
        .find(|e| e["kind"] == "exit")
        .expect("an exit event");
    assert_eq!(got["seq"], exit["seq"]);
    // Already over: met at once, whatever the cursor.
    let (_, again) = wait(&d, &s, "for=exit&afterSeq=0&timeoutMs=1");
    assert_eq!(again["met"], true);
}

#[test]
fn match_sees_text_as_shown_across_reads() {
    let d = Daemon::with_sessions("");
    // Bold on, half a word, a pause (a separate read), the rest, bold off.
    let s = id(&d.launch(
        "sh",
        r"printf '\033[1mRea'; sleep 0.3; printf 'dy\033[0m at 42\n'; sleep 30",
    ));
    let (status, got) = wait(
        &d,
        &s,
        "for=match&afterSeq=0&pattern=Ready%20at%20(%5Cd%2B)",
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["met"], true, "{got}");
    assert_eq!(got["match"], "Ready at 42");
    let events = d.events(&s);
    let e = events
        .iter()
        .find(|e| e["seq"] == got["seq"])
        .expect("the event");
    assert_eq!(e["kind"], "output");
    assert!(output_of(&events).contains("dy\u{1b}[0m at 42"));
    // What it names: the text was split across two reads, two events.
    let outputs: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "output")
        .map(|e| payload(e)["data"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        outputs.iter().any(|o| o.ends_with("Rea")) && outputs.iter().any(|o| o.starts_with("dy")),
        "{outputs:?}"
    );
}

#[test]
fn many_waits_on_one_session_are_all_answered() {
    let d = Daemon::with_sessions("");
    let s = id(&d.launch("cat", "x"));
    let mut conns: Vec<_> = (0..20)
        .map(|i| {
            let mut c = d.connect();
            let pattern = if i % 2 == 0 { "pong" } else { "po.g" };
            write!(
                c,
                "GET /api/v1/sessions/{s}/wait?for=match&pattern={pattern} HTTP/1.1\r\n\r\n"
            )
            .unwrap();
            c
        })
        .collect();
    // Every wait is parked before the text comes.
    wait_for("20 parked waits", || {
        let h = d.get("/api/v1/health").json();
        (h["stats"]["openConnections"] == 21).then_some(())
    });
    let r = d.post(
        &format!("/api/v1/sessions/{s}/input"),
        br#"{"data":"ping pong\n"}"#,
    );
    assert_eq!(r.status, 202);
    for c in conns.iter_mut() {
        let r = read_response(c).expect("an answer");
        assert_eq!(r.status, 200);
        let got = r.json();
        assert_eq!(
            (got["met"].clone(), got["match"].clone()),
            (true.into(), "pong".into())
        );
    }
}

#[test]
fn quiet_is_met_after_silence_and_not_while_printing() {
    let d = Daemon::with_sessions("");
    let s = id(&d.launch("sh", "echo hello; sleep 30"));
    let (_, got) = wait(&d, &s, &format!("for=quiet&quietMs={}", scaled_ms(300)));
    assert_eq!(
        (got["met"].clone(), got["for"].clone()),
        (true.into(), "quiet".into())
    );
    let busy = id(&d.launch("sh", "while :; do echo tick; sleep 0.05; done"));
    let (_, got) = wait(
        &d,
        &busy,
        &format!(
            "for=quiet&quietMs={}&timeoutMs={}",
            scaled_ms(1000),
            scaled_ms(1500)
        ),
    );
    assert_eq!(got, serde_json::json!({ "met": false }));
}

#[test]
fn a_deadline_answers_not_met() {
    let d = Daemon::with_sessions("");
    let s = id(&d.launch("sh", "echo something else; sleep 30"));
    let (status, got) = wait(
        &d,
        &s,
        &format!("for=match&pattern=never&timeoutMs={}", scaled_ms(300)),
    );
    assert_eq!((status, got), (200, serde_json::json!({ "met": false })));
    d.assert_alive();
}

#[test]
fn bad_waits_are_refused_and_name_the_field() {
    let d = Daemon::with_sessions("");
    let s = id(&d.launch("sleep", "30"));
    for (query, field) in [
        ("", "for"),
        ("for=soon", "for"),
        ("for=quiet", "quietMs"),
        ("for=quiet&quietMs=0", "quietMs"),
        ("for=quiet&quietMs=-1", "quietMs"),
        ("for=match", "pattern"),
        ("for=match&pattern=(", "pattern"),
        ("for=match&pattern=a*", "pattern"),
        ("for=exit&timeoutMs=soon", "timeoutMs"),
    ] {
        let (status, got) = wait(&d, &s, query);
        assert_eq!(status, 400, "{query}: {got}");
        assert_eq!(got["error"]["code"], "invalid_request", "{query}");
        assert_eq!(got["error"]["details"]["field"], field, "{query}: {got}");
    }
    let long = "a".repeat(2000);
    let (status, _) = wait(&d, &s, &format!("for=match&pattern={long}"));
    assert_eq!(status, 400);
    let (status, got) = wait(&d, "1-ffffffff", "for=exit");
    assert_eq!(
        (status, got["error"]["code"].clone()),
        (404, "session_not_found".into())
    );
    d.assert_alive();
}
