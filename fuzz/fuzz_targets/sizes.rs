//! Reading a session's sizes file whatever it holds: never a panic, and
//! every size it gives is one the API could have set (a size read from
//! disk once made a grid of 65535 × 65535 cells).
#![no_main]

use coven::journal::{read_sizes, size_fits, SIZES_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|dir| {
        std::fs::write(dir.path().join(SIZES_FILE), data).unwrap();
        for size in read_sizes(dir.path()) {
            assert!(size_fits(size.cols, size.rows), "{size:?}");
        }
    });
});
