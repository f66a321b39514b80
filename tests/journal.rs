//! Durability end to end: restarts, crashes, damaged files, retention.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::*;

#[test]
fn restart_keeps_sessions_and_events_identical() {
    let mut d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    let ok = id_of(&d.launch("sh", "echo hello é; printf 'x%.0s' $(seq 1 20000)"));
    let bad = id_of(&d.launch("sh", "echo bye; exit 7"));
    let cat = id_of(&d.launch("cat", "x"));
    d.post(
        &format!("/api/v1/sessions/{cat}/input"),
        br#"{"data":"typed\n"}"#,
    );
    d.wait_output(&cat, "typed\ntyped\n");
    d.post(&format!("/api/v1/sessions/{cat}/kill"), b"");
    for id in [&ok, &bad, &cat] {
        d.wait_exit_event(id);
    }
    let sessions_before = d.get_raw("/api/v1/sessions");
    let pages_before: Vec<Vec<u8>> = [&ok, &bad, &cat]
        .iter()
        .map(|id| d.get_raw(&format!("/api/v1/sessions/{id}/events?limit=10000")))
        .collect();
    let health = d.get("/health").json();
    assert_eq!(health["stats"]["sessionsOnDisk"], 3);
    d.stop();
    d.spawn();
    assert_eq!(
        d.get_raw("/api/v1/sessions"),
        sessions_before,
        "records identical"
    );
    for (id, before) in [&ok, &bad, &cat].iter().zip(&pages_before) {
        let after = d.get_raw(&format!("/api/v1/sessions/{id}/events?limit=10000"));
        assert!(after == *before, "events of {id} differ after restart");
    }
    // The sequence continues after the highest seq on disk.
    let last: u64 = d.events(&cat).last().unwrap()["seq"].as_u64().unwrap();
    let next = id_of(&d.launch("sh", "echo again"));
    d.wait_exit_event(&next);
    assert!(d.events(&next)[0]["seq"].as_u64().unwrap() > last);
    let stats = d.get("/health").json()["stats"].clone();
    assert_eq!(stats["sessionsOnDisk"], 4);
    assert!(stats["journalBytes"].as_u64().unwrap() > 20000);
}

#[test]
fn running_sessions_become_orphaned() {
    let mut d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "echo alive; sleep 1000"));
    d.wait_output(&id, "alive");
    d.crash();
    d.spawn();
    let s = d.session(&id);
    assert_eq!(s["status"], "orphaned");
    assert_eq!(s["pid"], Value::Null);
    assert!(output_of(&d.events(&id)).contains("alive"));
    for (path, body) in [
        ("input", r#"{"data":"x"}"#),
        ("kill", ""),
        ("resize", r#"{"cols":9,"rows":9}"#),
    ] {
        let r = d.post(&format!("/api/v1/sessions/{id}/{path}"), body.as_bytes());
        assert_eq!(
            (r.status, r.code()),
            (409, "session_not_live".into()),
            "{path}"
        );
    }
    // Orphaned stays orphaned across another restart.
    d.stop();
    d.spawn();
    assert_eq!(d.session(&id)["status"], "orphaned");
}

/// Every event the API returned before a crash comes back identical.
#[test]
fn crash_mid_flood_loses_nothing_returned() {
    let mut d = Daemon::with_sessions(r#""ringBytes": 131072"#);
    let mut seen: BTreeMap<u64, Value> = BTreeMap::new();
    // Each flooded session and the newest seq a client was given of it.
    let mut given: Vec<(String, u64)> = Vec::new();
    for round in 0..4 {
        let id = id_of(&d.launch(
            "sh",
            &format!("i=0; while :; do printf 'round{round} line %06d é\\n' $i; i=$((i+1)); done"),
        ));
        // Read pages while the flood runs, as a client would.
        let mut after = 0u64;
        let mut pages = 0;
        while pages < 30 {
            let page = d
                .get(&format!("/api/v1/sessions/{id}/events?afterSeq={after}"))
                .json();
            let events = page["events"].as_array().unwrap();
            for e in events {
                seen.insert(e["seq"].as_u64().unwrap(), e.clone());
            }
            if let Some(last) = events.last() {
                after = last["seq"].as_u64().unwrap();
                pages += 1;
            }
        }
        given.push((id.clone(), after));
        d.crash();
        d.spawn();
        // Every event given out before, read again by seq. Only the range
        // that was given is read back: the floods' later output (hundreds
        // of MB under emulation) is not what this test is about.
        let mut now: BTreeMap<u64, Value> = BTreeMap::new();
        for (sid, newest) in &given {
            let mut after = 0u64;
            while after < *newest {
                let page = d
                    .get(&format!(
                        "/api/v1/sessions/{sid}/events?afterSeq={after}&limit=10000"
                    ))
                    .json();
                let events = page["events"].as_array().unwrap();
                let Some(last) = events.last() else { break };
                after = last["seq"].as_u64().unwrap();
                for e in events {
                    now.insert(e["seq"].as_u64().unwrap(), e.clone());
                }
            }
        }
        for (seq, e) in &seen {
            assert_eq!(
                now.get(seq),
                Some(e),
                "round {round}: event {seq} changed or vanished"
            );
        }
        assert_eq!(d.session(&id)["status"], "orphaned");
    }
}

#[test]
fn damaged_files_are_cut_or_skipped() {
    let mut d = Daemon::with_sessions("");
    let ids: Vec<String> = (0..5)
        .map(|i| id_of(&d.launch("sh", &format!("echo session {i}"))))
        .collect();
    for id in &ids {
        d.wait_exit_event(id);
    }
    let pages: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| d.get_raw(&format!("/api/v1/sessions/{id}/events")))
        .collect();
    d.stop();
    // 0: a torn tail (half a record appended).
    let seg = &d.segments(&ids[0])[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let whole = bytes.len();
    // The last record again, cut short: what a crash mid-append leaves.
    let last_len = u32::from_le_bytes(bytes[whole - 4..].try_into().unwrap()) as usize + 12;
    let torn: Vec<u8> = bytes[whole - last_len..whole - last_len / 2].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(seg, &bytes).unwrap();
    // 1: garbage from start to end.
    std::fs::write(&d.segments(&ids[1])[0], vec![0x5A; 3000]).unwrap();
    // 2: a segment that cannot be read as a file.
    let seg2 = d.segments(&ids[2])[0].clone();
    std::fs::remove_file(&seg2).unwrap();
    std::fs::create_dir(&seg2).unwrap();
    // 3: corrupt metadata.
    std::fs::write(d.session_dir(&ids[3]).join("meta.json"), b"{\"id\": 1").unwrap();
    d.spawn();
    // Torn tail: cut back, every whole event intact. (A finished session's
    // journal is opened, and checked, when it is first asked for.)
    assert_eq!(
        d.get_raw(&format!("/api/v1/sessions/{}/events", ids[0])),
        pages[0]
    );
    let log = d.log();
    assert!(log.contains("torn or corrupt"), "{log}");
    assert_eq!(
        std::fs::metadata(&d.segments(&ids[0])[0]).unwrap().len() as usize,
        whole
    );
    // Garbage: the session is listed, without events.
    assert_eq!(d.session(&ids[1])["status"], "completed");
    assert!(d.events(&ids[1]).is_empty());
    // Unreadable segment: listed, its events unavailable.
    assert_eq!(d.session(&ids[2])["status"], "completed");
    // Corrupt metadata: that session alone is skipped.
    assert_eq!(d.get(&format!("/api/v1/sessions/{}", ids[3])).status, 404);
    // The healthy one is untouched.
    assert_eq!(
        d.get_raw(&format!("/api/v1/sessions/{}/events", ids[4])),
        pages[4]
    );
    // And the daemon works on.
    let next = id_of(&d.launch("sh", "echo fine"));
    assert!(d.wait_output(&next, "fine").contains("fine"));
}

#[test]
fn journal_pages_equal_ring_pages() {
    let d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    let id = id_of(&d.launch(
        "sh",
        "printf 'first %.0s' $(seq 1 500); echo; read x; head -c 400000 /dev/zero | tr '\\0' b; echo",
    ));
    d.wait_output(&id, "first first");
    let from_ring = d.get_raw(&format!("/api/v1/sessions/{id}/events?limit=3"));
    let n = serde_json::from_slice::<Value>(&from_ring).unwrap()["events"]
        .as_array()
        .unwrap()
        .len();
    d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"go\n"}"#,
    );
    d.wait_exit_event(&id);
    let from_disk = d.get_raw(&format!("/api/v1/sessions/{id}/events?limit={n}"));
    let events_part = |b: &[u8]| {
        let s = String::from_utf8(b.to_vec()).unwrap();
        s[..s.find("],\"nextCursor\"").unwrap()].to_owned()
    };
    assert_eq!(events_part(&from_disk), events_part(&from_ring));
}

#[test]
fn retention_removes_oldest_finished_history_first() {
    let d = Daemon::with_sessions(r#""journalBytesTotal": 9437184, "ringBytes": 65536"#);
    let flood = |mb: u32| {
        format!(
            "head -c {} /dev/zero | tr '\\0' z; echo; echo done",
            mb * 1_000_000
        )
    };
    let old = id_of(&d.launch("sh", &flood(6)));
    d.wait_exit_event(&old);
    assert!(d.segments(&old).len() >= 2);
    let new = id_of(&d.launch("sh", &flood(6)));
    d.wait_exit_event(&new);
    let stats = d.get("/health").json()["stats"].clone();
    assert!(
        stats["journalBytes"].as_u64().unwrap() <= 9437184,
        "{stats}"
    );
    // The newer session is whole.
    let out = output_of(&d.events(&new));
    assert_eq!(out.len(), 6_000_000 + "\ndone\n".len());
    assert!(d
        .get(&format!("/api/v1/sessions/{new}/events"))
        .json()
        .get("firstAvailableSeq")
        .is_none());
    // The older one lost its oldest events, and says so.
    let page = d.get(&format!("/api/v1/sessions/{old}/events")).json();
    let first = page["firstAvailableSeq"]
        .as_u64()
        .expect("a cut history is announced");
    assert_eq!(page["events"][0]["seq"].as_u64().unwrap(), first);
    assert!(output_of(&d.events(&old)).ends_with("z\ndone\n"));
    // Its metadata remembers the cut across a restart.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(d.session_dir(&old).join("meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["history_cut"], true);
    let _ = json!(null);
}

#[test]
fn retention_per_session_keeps_the_newest_segment() {
    let d = Daemon::with_sessions(r#""journalBytesPerSession": 1048576, "ringBytes": 65536"#);
    let id = id_of(&d.launch(
        "sh",
        "head -c 10000000 /dev/zero | tr '\\0' p; echo; echo tail",
    ));
    d.wait_exit_event(&id);
    assert_eq!(d.segments(&id).len(), 1, "only the newest segment is kept");
    let page = d.get(&format!("/api/v1/sessions/{id}/events")).json();
    assert!(page["firstAvailableSeq"].is_u64(), "{page}");
    let out = output_of(&d.events(&id));
    assert!(out.ends_with("p\ntail\n"));
    assert!(out.len() < 10_000_000);
    // A live session is trimmed too, but never below its current segment.
    let stats = d.get("/health").json()["stats"].clone();
    assert!(
        stats["journalBytes"].as_u64().unwrap() <= 5 * 1024 * 1024,
        "{stats}"
    );
}
