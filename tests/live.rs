//! Following sessions without polling: long polls, event streams, signals.

mod support;

use std::io::{Read, Write};
use std::time::Instant;

use serde_json::json;
use support::*;

fn last_seq(d: &Daemon, id: &str) -> u64 {
    d.events(id)
        .last()
        .map_or(0, |e| e["seq"].as_u64().unwrap())
}

#[test]
fn long_poll_answers_when_an_event_lands() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "echo ready; read x; echo got $x; sleep 30"));
    d.wait_output(&id, "ready");
    let after = last_seq(&d, &id);
    let mut poll = d.connect();
    send(
        &mut poll,
        "GET",
        &format!("/api/v1/events?sessionId={id}&afterSeq={after}&waitMs=60000"),
        None,
    );
    // Held: another request on another connection is served meanwhile.
    d.assert_alive();
    let r = d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"go\n"}"#,
    );
    assert_eq!(r.status, 202);
    // Far sooner than the 60 s wait: the read timeout is 20 s.
    let page = read_response(&mut poll)
        .expect("the long poll answers")
        .json();
    let events = page["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events[0]["seq"].as_u64().unwrap() > after);
    assert_eq!(events[0]["kind"], "input");
    // The connection is reusable afterwards.
    send(&mut poll, "GET", "/api/v1/health", None);
    assert_eq!(read_response(&mut poll).unwrap().status, 200);
    // The sessions/:id/events form waits too.
    let after = last_seq(&d, &id);
    let mut poll = d.connect();
    send(
        &mut poll,
        "GET",
        &format!("/api/v1/sessions/{id}/events?afterSeq={after}&waitMs=60000"),
        None,
    );
    d.post(&format!("/api/v1/sessions/{id}/kill"), b"");
    let page = read_response(&mut poll).unwrap().json();
    assert_eq!(page["events"][0]["kind"], "kill");
}

#[test]
fn long_poll_answers_empty_at_its_deadline() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sleep", "60"));
    let after = last_seq(&d, &id) + 1_000_000;
    let start = Instant::now();
    let r = d.get(&format!(
        "/api/v1/events?sessionId={id}&afterSeq={after}&waitMs=300"
    ));
    assert!(
        start.elapsed().as_millis() >= 300,
        "answered before its deadline"
    );
    assert_eq!(
        r.json(),
        json!({"events": [], "nextCursor": null, "hasMore": false})
    );
    // Bad waitMs: 400. A finished session: at once.
    for bad in ["-1", "soon", "1.5"] {
        let r = d.get(&format!("/api/v1/events?sessionId={id}&waitMs={bad}"));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".into()),
            "{bad}"
        );
    }
    let done = id_of(&d.launch("sh", "true"));
    d.wait_exit_event(&done);
    let after = last_seq(&d, &done);
    let r = d.get(&format!(
        "/api/v1/events?sessionId={done}&afterSeq={after}&waitMs=60000"
    ));
    assert_eq!(r.json()["events"], json!([]));
}

#[test]
fn stream_delivers_what_paging_returns() {
    let d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    let id = id_of(&d.launch("sh", "for i in $(seq 1 200); do echo line $i; done; head -c 200000 /dev/zero | tr '\\0' q; echo; sleep 0.2; echo last"));
    let mut s = open_stream(&d, &format!("/api/v1/sessions/{id}/stream"), "");
    let frames = read_stream(&mut s);
    let paged = d.events(&id);
    assert_eq!(frames.len(), paged.len());
    for (f, e) in frames.iter().zip(&paged) {
        assert_eq!(f.id, e["seq"].to_string());
        assert_eq!(f.event, e["kind"].as_str().unwrap());
        assert_eq!(&f.data, e);
    }
    assert_eq!(
        frames.last().unwrap().event,
        "exit",
        "the stream ends after exit"
    );
    // The query form, from a cursor; and Last-Event-ID wins over afterSeq.
    let second = &frames[1].id;
    let mut s = open_stream(
        &d,
        &format!("/api/v1/events/stream?sessionId={id}&afterSeq={second}"),
        "",
    );
    let tail = read_stream(&mut s);
    assert_eq!(tail, frames[2..]);
    // How many events the output made depends on how the reads fell (a
    // turn's reads make one): one in the middle.
    let k = frames.len() / 2;
    let middle = &frames[k].id;
    let mut s = open_stream(
        &d,
        &format!("/api/v1/sessions/{id}/stream?afterSeq=0"),
        &format!("Last-Event-ID: {middle}\r\n"),
    );
    assert_eq!(read_stream(&mut s), frames[k + 1..]);
    // A finished session whose events were all sent: ends at once.
    let last = &frames.last().unwrap().id;
    let mut s = open_stream(
        &d,
        &format!("/api/v1/sessions/{id}/stream?afterSeq={last}"),
        "",
    );
    assert!(read_stream(&mut s).is_empty());
    // Errors are ordinary JSON answers.
    let r = d.get("/api/v1/events/stream");
    assert_eq!((r.status, r.code()), (400, "invalid_request".into()));
    let r = d.get("/api/v1/sessions/nope/stream");
    assert_eq!((r.status, r.code()), (404, "session_not_found".into()));
    let mut s = d.connect();
    s.write_all(
        format!("GET /api/v1/sessions/{id}/stream HTTP/1.1\r\nLast-Event-ID: x\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 400);
}

#[test]
fn thousand_streams_on_one_flooding_session() {
    let d = Daemon::with_sessions(r#""maxConnections": 2000"#);
    let id = id_of(&d.launch("sh", "echo go; read x; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 300000; echo; echo end"));
    d.wait_output(&id, "go");
    let streams: Vec<_> = (0..1000)
        .map(|_| open_stream(&d, &format!("/api/v1/sessions/{id}/stream"), ""))
        .collect();
    d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"x\n"}"#,
    );
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| std::thread::spawn(move || read_stream(&mut s)))
        .collect();
    let results: Vec<Vec<Sse>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let paged = d.events(&id);
    for frames in &results {
        assert_eq!(frames.len(), paged.len());
        assert_eq!(frames.last().unwrap().data, *paged.last().unwrap());
    }
    let out = output_of(&paged);
    assert!(out.ends_with("\nend\n") && out.len() > 300_000);
    d.assert_alive();
}

#[test]
fn a_stalled_reader_costs_a_bounded_budget_and_loses_nothing() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch(
        "sh",
        "echo go; read x; head -c 20000000 /dev/zero | tr '\\0' r; echo; echo end",
    ));
    d.wait_output(&id, "go");
    let mut s = open_stream(&d, &format!("/api/v1/sessions/{id}/stream"), "");
    let rss_before = vm_rss_kib(d.server_pid());
    d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"x\n"}"#,
    );
    // The whole 20 MB flows while this reader reads nothing.
    wait_for("the flood to finish", || {
        let page = d.get(&format!("/api/v1/sessions/{id}")).json();
        (page["status"] != "running").then_some(())
    });
    let rss_after = vm_rss_kib(d.server_pid());
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // Then it reads: every byte arrives, in order.
    let frames = read_stream(&mut s);
    let out: String = frames
        .iter()
        .filter(|f| f.event == "output")
        .map(|f| payload(&f.data)["data"].as_str().unwrap().to_owned())
        .collect::<String>()
        .replace("\r\n", "\n");
    assert_eq!(out.len(), "go\nx\n".len() + 20_000_000 + "\nend\n".len());
    assert!(out.starts_with("go\nx\nrrr") && out.ends_with("r\nend\n"));
}

#[test]
fn kill_signals_and_grace() {
    let d = Daemon::with_sessions("");
    for (signal, name, number) in [
        ("INT", "INT", libc::SIGINT),
        ("SIGHUP", "HUP", libc::SIGHUP),
        ("kill", "KILL", libc::SIGKILL),
        ("TERM", "TERM", libc::SIGTERM),
    ] {
        let id = id_of(&d.launch("sleep", "1000"));
        let r = d.post(
            &format!("/api/v1/sessions/{id}/kill"),
            json!({"signal": signal}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
        d.wait_exit_event(&id);
        let exit = exit_of(&d.events(&id).pop().unwrap());
        assert_eq!(
            exit,
            json!({"status": "killed", "exitCode": null, "signal": name, "signalNumber": number}),
            "{signal}"
        );
    }
    // graceMs: a harness that ignores TERM lives until the grace is over.
    let id = id_of(&d.launch(
        "sh",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ));
    d.wait_output(&id, "ready");
    let r = d.post(
        &format!("/api/v1/sessions/{id}/kill"),
        format!(r#"{{"graceMs": {}}}"#, scaled_ms(1500)).as_bytes(),
    );
    assert_eq!(r.status, 202);
    assert!(
        d.events(&id).iter().all(|e| e["kind"] != "exit"),
        "escalated before the grace"
    );
    d.wait_exit_event(&id);
    let events = d.events(&id);
    let at = |kind: &str| {
        let e = events.iter().find(|e| e["kind"] == kind).unwrap();
        humantime::parse_rfc3339(e["created_at"].as_str().unwrap()).unwrap()
    };
    let waited = at("exit").duration_since(at("kill")).unwrap();
    assert!(waited.as_secs() >= 1, "escalated after {waited:?}");
    assert_eq!(payload(events.last().unwrap())["signal"], "KILL");
}

#[test]
fn held_requests_count_and_end_cleanly_at_shutdown() {
    let mut d = Daemon::with_sessions(r#""maxConnections": 3"#);
    let id = id_of(&d.launch("sleep", "1000"));
    let after = last_seq(&d, &id);
    d.settle();
    let mut poll = d.connect();
    send(
        &mut poll,
        "GET",
        &format!("/api/v1/events?sessionId={id}&afterSeq={after}&waitMs=60000"),
        None,
    );
    let mut stream = open_stream(&d, &format!("/api/v1/sessions/{id}/stream"), "");
    let mut third = d.connect();
    send(&mut third, "GET", "/api/v1/health", None);
    assert_eq!(read_response(&mut third).unwrap().status, 200);
    // Held connections count against the limit.
    let mut fourth = d.connect();
    let r = read_response(&mut fourth).expect("a canned 503");
    assert_eq!(r.status, 503);
    drop(third);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    // The long poll answers its page; the stream ends after the kill and
    // exit the shutdown records.
    let page = read_response(&mut poll)
        .expect("the long poll answers")
        .json();
    assert!(page["events"].is_array());
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    let frames = parse_sse(&rest);
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("exit"),
        "{rest}"
    );
    assert!(d.wait_exit().success());
}
