//! A session history that lasts: the paged list, archive, unarchive and
//! delete, through the API and the CLI.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::*;

fn page(d: &Daemon, query: &str) -> Value {
    let r = d.get(&format!("/api/v1/sessions?{query}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The ids of a page's sessions, in its order.
fn page_ids(p: &Value) -> Vec<String> {
    p["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

/// `(created_at, id)`, the list's sort key.
fn key(s: &Value) -> (String, String) {
    (s["created_at"].as_str().unwrap().to_owned(), id_of(s))
}

#[test]
fn pages_visit_every_lasting_session_once_while_others_come_and_go() {
    let d = Daemon::with_sessions("");
    let mut lasting = BTreeSet::new();
    let mut doomed = Vec::new();
    for i in 0..280 {
        let id = id_of(&d.launch("sh", "true"));
        if i % 9 == 4 {
            doomed.push(id);
        } else {
            lasting.insert(id);
        }
    }
    for id in &doomed {
        d.wait_exit_event(id);
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=7&cursor={c}"),
            None => "limit=7".into(),
        };
        let p = page(&d, &q);
        let got = p["sessions"].as_array().unwrap();
        assert!(got.len() <= 7);
        seen.extend(got.iter().cloned());
        pages += 1;
        // Meanwhile: one session more, one (finished) session fewer.
        d.launch("sh", "true");
        if let Some(id) = doomed.pop() {
            let r = d.request("DELETE", &format!("/api/v1/sessions/{id}"), None);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        match p["next_cursor"].as_str() {
            Some(c) => {
                assert!(c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert!(pages >= lasting.len() / 7, "{pages} pages");
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for s in &seen {
        *count.entry(id_of(s)).or_default() += 1;
    }
    assert!(count.values().all(|&n| n == 1), "a session was repeated");
    for id in &lasting {
        assert_eq!(count.get(id), Some(&1), "{id} was skipped");
    }
    let keys: Vec<_> = seen.iter().map(key).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "newest first");
}

#[test]
fn list_parameters_are_checked_and_filter() {
    let d = Daemon::with_sessions("");
    let done = id_of(&d.launch("sh", "true"));
    let failed = id_of(&d.launch("sh", "exit 3"));
    let running = id_of(&d.launch("sleep", "60"));
    d.wait_exit_event(&done);
    d.wait_exit_event(&failed);

    // No parameters: the plain array, as older clients expect.
    let all = d.get("/api/v1/sessions").json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let p = page(&d, "limit=2");
    assert_eq!(p["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(p["sessions"][0]["id"], running.as_str());
    let rest = page(
        &d,
        &format!("limit=2&cursor={}", p["next_cursor"].as_str().unwrap()),
    );
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(page(&d, "limit=3")["next_cursor"], Value::Null);

    let ids = |p: &Value| -> BTreeSet<String> { page_ids(p).into_iter().collect() };
    assert_eq!(
        ids(&page(&d, "status=completed")),
        BTreeSet::from([done.clone()])
    );
    assert_eq!(
        ids(&page(&d, "status=completed,failed")),
        BTreeSet::from([done.clone(), failed.clone()])
    );
    assert_eq!(
        ids(&page(&d, "status=running&status=failed")),
        BTreeSet::from([running.clone(), failed.clone()])
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=00", "cursor"),
        ("includeArchived=yes", "includeArchived"),
        ("status=sleeping", "status"),
        ("status=completed,", "status"),
    ] {
        let r = d.get(&format!("/api/v1/sessions?{query}"));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request".into()),
            "{query}"
        );
        assert_eq!(r.json()["error"]["details"]["field"], field, "{query}");
    }
}

#[test]
fn archive_unarchive_and_delete() {
    let mut d = Daemon::with_sessions("");
    let old = id_of(&d.launch("sh", "echo old"));
    d.wait_exit_event(&old);

    let r = d.post(&format!("/api/v1/sessions/{old}/archive"), b"");
    assert_eq!(r.status, 200);
    let archived_at = r.json()["archived_at"].as_str().unwrap().to_owned();
    humantime::parse_rfc3339(&archived_at).unwrap();
    assert_eq!(r.json()["id"], old.as_str());
    // Out of the default list, paged or not; in it with includeArchived.
    let listed = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == old.as_str())
    };
    assert!(!listed(&d.get("/api/v1/sessions").json()));
    assert!(!listed(&page(&d, "limit=100")["sessions"]));
    assert!(listed(&page(&d, "includeArchived=true")["sessions"]));
    assert_eq!(d.session(&old)["archived_at"], archived_at.as_str());
    // Archiving again keeps the first time; it survives a restart.
    d.post(&format!("/api/v1/sessions/{old}/archive"), b"");
    d.stop();
    d.spawn();
    assert_eq!(d.session(&old)["archived_at"], archived_at.as_str());
    let r = d.post(&format!("/api/v1/sessions/{old}/unarchive"), b"");
    assert_eq!(
        (r.status, r.json()["archived_at"].clone()),
        (200, Value::Null)
    );
    assert!(listed(&d.get("/api/v1/sessions").json()));

    // Delete: a live session is refused and keeps running.
    let live = id_of(&d.launch("sleep", "60"));
    let r = d.request("DELETE", &format!("/api/v1/sessions/{live}"), None);
    assert_eq!((r.status, r.code()), (409, "session_live".into()));
    assert_eq!(d.session(&live)["status"], "running");
    let r = d.request("DELETE", &format!("/api/v1/sessions/{old}"), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for path in [
        format!("/api/v1/sessions/{old}"),
        format!("/api/v1/sessions/{old}/events"),
    ] {
        assert_eq!(d.get(&path).code(), "session_not_found", "{path}");
    }
    assert!(!d.home.join("sessions").join(&old).exists());
    // Its files leave off the loop: gone from deleted/ once the writer
    // has removed them.
    wait_for("the deleted session's files to go", || {
        (!d.home.join("deleted").join(&old).exists()).then_some(())
    });
    let r = d.request("DELETE", &format!("/api/v1/sessions/{old}"), None);
    assert_eq!(r.status, 404);
    for verb in ["archive", "unarchive"] {
        let r = d.post(&format!("/api/v1/sessions/nope/{verb}"), b"");
        assert_eq!((r.status, r.code()), (404, "session_not_found".into()));
    }
    d.stop();
    // What a crash left on its way out is removed at the next start.
    let left = d.home.join("deleted").join("1790000000000-0000beef");
    std::fs::create_dir_all(left.join("inner")).unwrap();
    std::fs::write(left.join("inner/00000000000000000001.log"), b"x").unwrap();
    d.spawn();
    wait_for("what a crash left in deleted/ to go", || {
        (!left.exists()).then_some(())
    });
    assert_eq!(d.get(&format!("/api/v1/sessions/{old}")).status, 404);
    // A stop kills what runs, and records it.
    assert_eq!(d.session(&live)["status"], "killed");
}

#[test]
fn cli_pages_archives_and_removes() {
    let d = Daemon::with_sessions("");
    let ids: Vec<String> = (0..5).map(|_| id_of(&d.launch("sh", "true"))).collect();
    for id in &ids {
        d.wait_exit_event(id);
    }
    let coven = |args: &[&str]| d.command().args(args).output().unwrap();
    let json = |o: std::process::Output| -> Vec<String> {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array().unwrap().iter().map(id_of).collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(json(coven(&["sessions", "--json"])), newest_first);
    assert_eq!(
        json(coven(&["sessions", "--limit", "2", "--json"])),
        newest_first[..2]
    );

    let o = coven(&["archive", &ids[0][..ids[0].len() - 2]]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("archived {}\n", ids[0])
    );
    assert_eq!(json(coven(&["sessions", "--json"])), newest_first[..4]);
    assert_eq!(json(coven(&["sessions", "--all", "--json"])), newest_first);
    let text = String::from_utf8_lossy(&coven(&["sessions", "--all"]).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&ids[0]) && l.ends_with("(archived)")),
        "{text}"
    );
    // A prefix still finds an archived session.
    let o = coven(&["unarchive", &ids[0][..ids[0].len() - 2]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(coven(&["sessions", "--json"])), newest_first);

    let o = coven(&["rm", &ids[1]]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("deleted {}\n", ids[1])
    );
    assert_eq!(json(coven(&["sessions", "--json"])).len(), 4);
    let live = id_of(&d.launch("sleep", "60"));
    let o = coven(&["rm", &live]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("session_live"));
}

#[test]
fn retention_by_age_removes_finished_sessions_never_live_ones() {
    // Two seconds, as a fraction of a day.
    let config = format!(
        r#"{{"harnesses": {HARNESSES}, "retentionDays": {}}}"#,
        2.0 / 86_400.0
    );
    let mut d = Daemon::start_with_config(Some(&config));
    let done = id_of(&d.launch("sh", "echo done"));
    let live = id_of(&d.launch("sleep", "60"));
    d.wait_exit_event(&done);
    let dir = d.home.join("sessions");
    wait_for("the finished session to age out", || {
        (d.get(&format!("/api/v1/sessions/{done}")).status == 404).then_some(())
    });
    assert!(!dir.join(&done).exists());
    assert_eq!(d.session(&live)["status"], "running");
    assert!(dir.join(&live).exists());
    assert!(d.log().contains("removed by retention"), "{}", d.log());

    // Finished sessions found on disk at start age out as well.
    d.stop();
    let r = std::fs::read_to_string(dir.join(&live).join("meta.json")).unwrap();
    assert!(r.contains("\"killed\""), "{r}");
    d.spawn();
    wait_for("the stopped session to age out after the restart", || {
        (!dir.join(&live).exists()).then_some(())
    });
    assert_eq!(d.get("/api/v1/sessions").json(), serde_json::json!([]));
}

#[test]
fn retention_days_zero_keeps_for_ever_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (value, ok) in [
        ("0", true),
        ("30", true),
        ("0.5", true),
        ("-1", false),
        ("\"7\"", false),
    ] {
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"retentionDays": {value}}}"#),
        )
        .unwrap();
        let got = coven::config::Config::load(dir.path().to_owned());
        assert_eq!(got.is_ok(), ok, "{value}");
        if let Err(e) = got {
            assert!(e.to_string().contains("retentionDays"), "{e}");
        }
    }
    std::fs::write(dir.path().join("config.json"), r#"{"retentionDays": 0}"#).unwrap();
    let c = coven::config::Config::load(dir.path().to_owned()).unwrap();
    assert_eq!(c.limits.retention, None);
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let c = coven::config::Config::load(dir.path().to_owned()).unwrap();
    assert_eq!(
        c.limits.retention,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
}

#[test]
fn finished_sessions_leave_memory_and_the_index_is_rebuilt_when_lost() {
    let mut d = Daemon::with_sessions("");
    let ids: Vec<String> = (0..30)
        .map(|i| id_of(&d.launch("sh", &format!("echo {i}"))))
        .collect();
    let live = id_of(&d.launch("sleep", "60"));
    for id in &ids {
        d.wait_exit_event(id);
    }
    // Only the live session stays in memory; the others are on disk.
    let h = wait_for("finished sessions to leave memory", || {
        let h = d.get("/api/v1/health").json();
        (h["stats"]["sessionsInMemory"] == 1).then_some(h)
    });
    assert_eq!(h["stats"]["sessions"], 31);
    assert_eq!(h["stats"]["sessionsOnDisk"], 31);
    // Asked for, a finished one comes back from disk, whole.
    let s = d.session(&ids[7]);
    assert_eq!(s["status"], "completed");
    assert_eq!(output_of(&d.events(&ids[7])), "7\n");
    let before = page(&d, "limit=1000&includeArchived=true");
    assert_eq!(before["sessions"].as_array().unwrap().len(), 31);
    assert_eq!(before["sessions"][0]["id"], live.as_str());

    // The index is a cache: lost or damaged, it is rebuilt from the files.
    d.stop();
    let index = d.home.join("sessions.idx");
    std::fs::remove_file(&index).unwrap();
    d.spawn();
    assert!(
        d.log().contains("building the session index"),
        "{}",
        d.log()
    );
    let after = page(&d, "limit=1000&includeArchived=true");
    assert_eq!(page_ids(&after), page_ids(&before));
    assert_eq!(after["sessions"][0]["status"], "killed");
    d.stop();
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[64 + 5 * 64 + 3] ^= 0xff; // one entry's id, checksum now wrong
    std::fs::write(&index, bytes).unwrap();
    d.spawn();
    assert!(d.log().contains("damaged; rebuilding"), "{}", d.log());
    assert_eq!(page_ids(&page(&d, "limit=1000")), page_ids(&after));
    // New sessions sort after every old one.
    let newer = id_of(&d.launch("sh", "true"));
    assert_eq!(page(&d, "limit=1")["sessions"][0]["id"], newer.as_str());
}

/// The segment a page of a finished session was read from stays open for
/// the next page, and is let go when the session is deleted: its space is
/// freed at once, not when the daemon next falls quiet.
#[cfg(target_os = "linux")]
#[test]
fn a_deleted_session_leaves_no_segment_held_open() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "echo old"));
    d.wait_exit_event(&id);
    let pid = d.server_pid();
    // Only what this session's directory holds (the daemon lets the kept
    // segment go by itself after 5 s without a request; this takes less).
    let held = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| target.to_string_lossy().contains(id.as_str()))
    };
    let r = d.get(&format!("/api/v1/events?sessionId={id}"));
    assert_eq!(r.status, 200);
    assert!(!r.json()["events"].as_array().unwrap().is_empty());
    assert!(held(), "the page's segment is kept open for the next page");
    let r = d.request("DELETE", &format!("/api/v1/sessions/{id}"), None);
    assert_eq!(r.status, 200);
    assert!(!held(), "a deleted session's segment is let go with it");
}
