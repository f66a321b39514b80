//! Opening a journal whose segment files hold anything (a torn write, a
//! damaged disk, a crafted file): never a panic, never an allocation sized
//! by what was read, and what opens reads back consistently — every event
//! within the journal's bounds, in order, no more bytes than the files.
//!
//! The input is split at its first `\n\n` into two segments (so that the
//! pairing of segments is fuzzed too), written into a scratch directory.
#![no_main]

use coven::journal::{Journal, EXIT_FILE, SIZES_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|base| {
        let dir = base.path().join("s");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let (first, second) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&data[..at], Some(&data[at + 2..])),
            None => (data, None),
        };
        std::fs::write(dir.join(format!("{:020}.log", 1)), first).unwrap();
        if let Some(second) = second {
            std::fs::write(dir.join(format!("{:020}.log", 7)), second).unwrap();
        }
        let on_disk = data.len() as u64;
        let Ok((mut journal, _warnings, _cut)) = Journal::open(dir.clone()) else {
            return;
        };
        assert!(journal.bytes() <= on_disk);
        let events = journal
            .read(0, u64::MAX, 100_000, usize::MAX)
            .unwrap_or_default();
        for pair in events.windows(2) {
            assert!(pair[0].seq < pair[1].seq, "events out of order");
        }
        let _ = (journal.first_seq(), journal.last_seq(), journal.contains(3));
        let _ = journal.tail_start(1000);
        // The other files a session directory holds, damaged the same way.
        std::fs::write(dir.join(SIZES_FILE), data).unwrap();
        std::fs::write(dir.join(EXIT_FILE), data).unwrap();
        let _ = coven::journal::read_exit(&dir);
    });
});
