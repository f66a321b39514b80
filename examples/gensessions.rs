//! Writes N finished sessions straight into a COVEN_HOME, as a daemon
//! would have left them (a `meta.json` and a journal segment of two events
//! each), for measuring a daemon that has run that many: its start-up time
//! and its idle memory. It writes no session index, so the first start
//! builds one (the path an upgraded home takes); later starts read it.
//!
//!     cargo run --release --example gensessions -- <COVEN_HOME> <N> [OLD]
//!
//! The first OLD sessions (default none) finished on 2026-01-01, the rest
//! on 2026-11-01: `retentionDays` between the two removes exactly those.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;

use coven::ring::{Event, Kind};
use coven::session::record as wire;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(home), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: gensessions <COVEN_HOME> <N>");
        std::process::exit(2);
    };
    let root = std::path::Path::new(home).join("sessions");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .unwrap();
    let old: u64 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
    let stamp = *b"2026-11-01T10:00:00.000Z";
    let base_ms: u64 = 1_790_000_000_000;
    let mut seq = 1u64;
    let mut rec = Vec::new();
    for i in 0..n {
        let id = format!("{:013}-{:08x}", base_ms + i, i as u32);
        let dir = root.join(&id);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let meta = wire::SessionMeta {
            id: id.clone(),
            project_root: "/home/user/project".into(),
            cwd: "/home/user/project".into(),
            harness: "codex".into(),
            title: format!("generated session {i}"),
            status: "completed".into(),
            exit_code: Some(0),
            created_at: "2026-11-01T10:00:00Z".into(),
            updated_at: if i < old {
                "2026-01-01T10:00:01Z".into()
            } else {
                "2026-11-01T10:00:01Z".into()
            },
            archived_at: None,
            history_cut: false,
            last_seq: seq + 1,
        };
        std::fs::write(dir.join("meta.json"), wire::encode_meta(&meta)).unwrap();
        rec.clear();
        let events = [
            Event {
                seq,
                kind: Kind::Output,
                created_at: stamp,
                payload: wire::data_payload(&format!("hello from session {i}\r\n")),
            },
            Event {
                seq: seq + 1,
                kind: Kind::Exit,
                created_at: stamp,
                payload: wire::exit_payload(
                    "completed",
                    Some(coven::sys::process::ExitStatus::from_raw(0)),
                    None,
                ),
            },
        ];
        for e in &events {
            coven::journal::encode(e, &mut rec);
        }
        let mut f = std::fs::File::create(dir.join(format!("{seq:020}.log"))).unwrap();
        f.write_all(&rec).unwrap();
        seq += 2;
    }
    println!("wrote {n} finished sessions under {}", root.display());
}
