//! Durability off the loop: every fsync happens on the writer thread, so a
//! slow disk delays only the answers that acknowledge durability (launch,
//! kill, archive, delete), never anyone else; and those answers come only
//! once what they acknowledge is on disk.

mod support;

use std::io::Read;

use support::*;

#[test]
fn a_slow_disk_delays_acknowledgements_but_not_health() {
    // Every writer job (each fsync, each metadata write) waits 1.5 s: a
    // launch acknowledges two of them, so it takes 3 s at least.
    // This file holds one test, run in a process of its own.
    std::env::set_var("COVEN_TEST_SYNC_DELAY_MS", "1500");
    let d = Daemon::with_sessions("");
    let root = d.dir.path().display().to_string();
    let mut launch = d.connect();
    let body = serde_json::json!({"projectRoot": root, "harness": "sleep", "prompt": "60"});
    send(
        &mut launch,
        "POST",
        "/api/v1/sessions",
        Some(body.to_string().as_bytes()),
    );

    // Health is answered while the launch still waits for the disk.
    let h = d.get("/api/v1/health");
    assert_eq!(h.status, 200);
    launch.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let early = launch.read(&mut probe);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the launch was answered before its record was durable: {early:?}"
    );
    launch.set_nonblocking(false).unwrap();
    launch.set_read_timeout(Some(deadline())).unwrap();

    // Then the 201, with the record on disk.
    let r = read_response(&mut launch).expect("the launch's answer");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let meta =
        std::fs::read_to_string(d.home.join("sessions").join(&id).join("meta.json")).unwrap();
    assert!(meta.contains("\"running\""), "{meta}");

    // A kill is acknowledged once its record and the status are durable.
    let r = d.post(&format!("/api/v1/sessions/{id}/kill"), b"");
    assert_eq!(r.status, 202);
    let meta =
        std::fs::read_to_string(d.home.join("sessions").join(&id).join("meta.json")).unwrap();
    assert!(meta.contains("\"killed\""), "{meta}");
    let s = d.wait_exit_event(&id);
    assert_eq!(s["status"], "killed");
}
