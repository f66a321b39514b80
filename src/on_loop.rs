//! Which thread runs the event loop, and the debug assertion that it never
//! waits on a disk (`assert_off_loop`): the journal, the writer and every
//! atomic write call it; the reactor marks its thread (`enter_loop`).

use std::cell::Cell;

thread_local! {
    /// This thread runs the event loop (`enter_loop`).
    static ON_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as the event loop's: from now on it must never wait on
/// a disk (`assert_off_loop`).
pub fn enter_loop() {
    ON_LOOP.with(|l| l.set(true));
}

/// This thread no longer runs the loop (it stops, or is about to exec).
pub fn leave_loop() {
    ON_LOOP.with(|l| l.set(false));
}

/// A debug assertion: `what` (a sync, an atomic write, a removal, a path
/// resolution) must not run on the loop's thread. The message goes to the
/// log first, where the tests look for it (`tests/support`), since a panic
/// on the loop becomes a live restart that a test would not otherwise see.
#[inline]
pub fn assert_off_loop(what: &str) {
    if cfg!(debug_assertions) && ON_LOOP.with(Cell::get) {
        log::error!("blocking work on the loop thread: {what}");
        panic!("blocking work on the loop thread: {what}");
    }
}

#[cfg(test)]
mod tests {
    // The assertion exists only in debug builds.
    #[cfg(debug_assertions)]
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    fn a_sync_on_the_loop_thread_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let caught = std::thread::spawn(move || {
            enter_loop();
            std::panic::catch_unwind(|| {
                crate::journal::write_atomic(dir.path(), "f", b"x", true).unwrap()
            })
            .is_err()
        })
        .join()
        .unwrap();
        assert!(caught);
    }
}
