//! A full disk is never silent: on a small tmpfs, output the journal could
//! not take is declared in the history (`output_truncated`), health reports
//! the storage trouble, and a session that ends meanwhile keeps its true
//! status, before and after a restart.
//!
//! Needs root (to mount a tmpfs): ignored unless asked for (`cargo test --
//! --ignored`, which .ci/run runs as root), and then a failure if it cannot
//! mount one, never a pass.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "mounting a tmpfs needs root"
        );
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs at {}", at.display());
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn storage(d: &Daemon) -> Value {
    d.get("/api/v1/health").json()["storage"].clone()
}

#[test]
#[ignore = "needs root, to mount a tmpfs: .ci/run runs it (as root: cargo test -- --ignored)"]
fn a_full_disk_is_declared_and_the_final_status_survives() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("disk"), "4m");
    let home = fs.0.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        home.join("config.json"),
        format!(r#"{{"harnesses": {HARNESSES}, "limits": {{"storageWarningBytes": 1024}}}}"#),
    )
    .unwrap();
    let mut d = Daemon {
        socket: home.join("coven.sock"),
        home: home.clone(),
        dir,
        child: None,
    };
    d.spawn();
    assert_eq!(storage(&d)["status"], "ok");
    // Ballast that will make room again later.
    let ballast = fs.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1024 * 1024]).unwrap();

    // 6 MB of output into what is left of 4 MiB.
    let id = d.launch(
        "sh",
        "stty -echo; head -c 6000000 /dev/zero | tr '\\0' x; echo; read x; echo after; exit 3",
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the disk to fill and health to say so", || {
        (storage(&d)["status"] == "critical").then_some(())
    });
    // The flood ends (the ring still shows its end), then the session ends
    // while the disk is full.
    d.wait_output(&id, "x\n");
    // Not a byte left: nothing the session's end writes can fit, but its
    // reserved place.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
    drop(f);
    // The journal's last page may still have room for a small record or
    // two. Either the flood's gap is declared there (the retry runs every
    // second), and then input fills what is left until the journal refuses
    // one; or the gap's marker does not fit, and then the exit, larger,
    // cannot either. Both ways the journal refuses the session's end.
    let declared = {
        let start = std::time::Instant::now();
        loop {
            let events = d.events(&id);
            if events.iter().any(|e| e["kind"] == "output_truncated") {
                break true;
            }
            if start.elapsed() > deadline() / 5 {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let journal_len = || {
        let segs = d.segments(&id);
        std::fs::metadata(segs.last().unwrap()).unwrap().len()
    };
    let mut typed = 0u64;
    if declared {
        loop {
            assert!(typed < 1000, "the journal never refused a write");
            let before = journal_len();
            d.post(&format!("/api/v1/sessions/{id}/input"), br#"{"data":"a"}"#);
            typed += 1;
            if journal_len() == before {
                break;
            }
        }
    }
    d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"go\n"}"#,
    );
    let s = wait_for("the session to end", || {
        let s = d.session(&id);
        (s["status"] != "running").then_some(s)
    });
    assert_eq!(
        (s["status"].clone(), s["exit_code"].clone()),
        ("failed".into(), 3.into())
    );
    assert_ne!(storage(&d)["status"], "ok");

    // A restart on the still-full disk: the final status comes from the
    // place the session reserved for it at launch.
    d.stop();
    d.spawn();
    let s = d.session(&id);
    assert_eq!(
        (s["status"].clone(), s["exit_code"].clone()),
        ("failed".into(), 3.into()),
        "{}",
        d.log()
    );

    // Space comes back: the gap is declared, the exit recorded, health ok.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&filler).unwrap();
    wait_for("storage to be ok again", || {
        (storage(&d)["status"] == "ok").then_some(())
    });
    let s = d.session(&id);
    assert_eq!(
        (s["status"].clone(), s["exit_code"].clone()),
        ("failed".into(), 3.into())
    );
    // Everything it held is written (the refused metadata and journal
    // syncs retried), so it leaves memory like any finished session.
    wait_for("the finished session to leave memory", || {
        let h = d.get("/api/v1/health").json();
        (h["stats"]["sessionsInMemory"] == 0).then_some(())
    });

    // After a restart only what the disk kept is there: every byte the
    // harness printed is either in an output event or counted as dropped.
    d.stop();
    d.spawn();
    let s = d.session(&id);
    assert_eq!(
        (s["status"].clone(), s["exit_code"].clone()),
        ("failed".into(), 3.into())
    );
    let events = d.events(&id);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.last(), Some(&"exit"), "{kinds:?}");
    let markers: Vec<Value> = events
        .iter()
        .filter(|e| e["kind"] == "output_truncated")
        .map(payload)
        .collect();
    assert!(!markers.is_empty(), "no output_truncated event");
    let dropped_bytes: u64 = markers
        .iter()
        .map(|m| m["droppedBytes"].as_u64().unwrap())
        .sum();
    let dropped_events: u64 = markers
        .iter()
        .map(|m| m["droppedEvents"].as_u64().unwrap())
        .sum();
    assert!(dropped_events > 0 && dropped_bytes > 0, "{markers:?}");
    // A gap is declared once (a second at most), not once per event.
    assert!((markers.len() as u64) < dropped_events, "{markers:?}");
    let kept: u64 = events
        .iter()
        .filter(|e| e["kind"] == "output")
        .map(|e| payload(e)["data"].as_str().unwrap().len() as u64)
        .sum();
    let kept_input: u64 = events
        .iter()
        .filter(|e| e["kind"] == "input")
        .map(|e| payload(e)["data"].as_str().unwrap().len() as u64)
        .sum();
    let printed = 6_000_000 + "\r\n".len() as u64 + "after\r\n".len() as u64;
    // Input events may be among the dropped ones too.
    let dropped_input = typed + "go\n".len() as u64 - kept_input;
    assert_eq!(kept + dropped_bytes, printed + dropped_input);
    // The marker sits right after its gap: before the next kept events.
    let at = kinds.iter().position(|k| *k == "output_truncated").unwrap();
    assert!(at + 1 < kinds.len());
}
