//! The writer: one thread beside the loop that does everything that waits
//! on a disk, so the loop never does — every `fsync` (of journal records
//! that must survive a power cut, of metadata, of directories) and every
//! atomic metadata write (temp file, fsync, rename, directory fsync).
//!
//! The loop submits a job and gets a ticket; jobs run in submission order,
//! and `Writer::done` is the highest ticket whose job (and every earlier
//! one) is complete. The thread wakes the loop through a `mio::Waker`
//! after each batch. A client sees an acknowledgement only once `done`
//! reaches the ticket of what it acknowledges (`Sessions::durable`).
//! Failed jobs are reported back with the session they were for, which
//! retries them (`Sessions::on_writer`).
//!
//! Before the loop runs (start-up, which may wait on the disk) and without
//! a home on disk, jobs run inline.
//!
//! The queue is an unbounded channel, bounded in practice by what the loop
//! submits: a few jobs per session state change.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Something that waits on a disk.
#[derive(Debug)]
pub enum Job {
    /// `fdatasync` of a journal segment: its records so far survive a
    /// power cut.
    SyncData(File),
    /// `fsync` of a directory: entries created, renamed or removed in it
    /// survive a power cut.
    SyncDir(PathBuf),
    /// Replaces `<dir>/<name>` atomically and durably.
    WriteAtomic {
        dir: PathBuf,
        name: &'static str,
        bytes: Vec<u8>,
    },
}

/// A job that failed: its ticket, the session it was for, and why.
#[derive(Debug)]
pub struct Failure {
    pub ticket: u64,
    pub key: Option<usize>,
    pub error: io::Error,
}

struct Shared {
    done: AtomicU64,
    /// `failures` holds something (so the loop need not lock it each turn).
    any_failures: AtomicBool,
    failures: Mutex<Vec<Failure>>,
    /// Tickets of the most recent failed jobs (at most `RECENT_FAILURES`).
    failed: Mutex<Vec<u64>>,
    /// The newest ticket that completed well, and the newest that failed.
    last_ok: AtomicU64,
    last_err: AtomicU64,
}

/// Failed tickets remembered for `Writer::failed_in`.
const RECENT_FAILURES: usize = 1024;

pub struct Writer {
    next: u64,
    shared: Arc<Shared>,
    /// `None`: jobs run inline.
    tx: Option<Sender<(u64, Option<usize>, Job)>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs one job.
pub fn run(job: Job) -> io::Result<()> {
    match job {
        Job::SyncData(file) => file.sync_data(),
        Job::SyncDir(dir) => File::open(dir)?.sync_all(),
        Job::WriteAtomic { dir, name, bytes } => {
            crate::journal::write_atomic(&dir, name, &bytes, true)
        }
    }
}

impl Writer {
    /// A writer that runs every job inline, at once.
    pub fn inline() -> Writer {
        Writer {
            next: 0,
            shared: Arc::new(Shared {
                done: AtomicU64::new(0),
                any_failures: AtomicBool::new(false),
                failures: Mutex::new(Vec::new()),
                failed: Mutex::new(Vec::new()),
                last_ok: AtomicU64::new(0),
                last_err: AtomicU64::new(0),
            }),
            tx: None,
            thread: None,
        }
    }

    /// Moves the jobs to a thread of their own, which calls `wake` after
    /// each batch. `delay` holds every job back that long (a test hook
    /// that makes the disk slow: `COVEN_TEST_SYNC_DELAY_MS`).
    pub fn spawn(&mut self, wake: impl Fn() + Send + 'static, delay: Duration) -> io::Result<()> {
        let (tx, rx) = channel::<(u64, Option<usize>, Job)>();
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name("coven-writer".into())
            .stack_size(64 * 1024)
            .spawn(move || work(&rx, &shared, &wake, delay))?;
        self.tx = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }

    /// Queues a job (for session `key`, if any); returns its ticket.
    pub fn submit(&mut self, key: Option<usize>, job: Job) -> u64 {
        self.next += 1;
        let ticket = self.next;
        let job = match &self.tx {
            Some(tx) => match tx.send((ticket, key, job)) {
                Ok(()) => return ticket,
                // The thread is gone (it panicked): go on inline.
                Err(e) => e.0 .2,
            },
            None => job,
        };
        let result = run(job);
        finish(&self.shared, ticket, key, result);
        ticket
    }

    /// Every job up to this ticket is complete.
    pub fn done(&self) -> u64 {
        self.shared.done.load(Ordering::Acquire)
    }

    /// The highest ticket given out.
    pub fn submitted(&self) -> u64 {
        self.next
    }

    /// Whether a job with a ticket in `from + 1 ..= to` failed (a failure
    /// older than the last `RECENT_FAILURES` ones is forgotten).
    pub fn failed_in(&self, from: u64, to: u64) -> bool {
        let failed = self.shared.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.iter().any(|&t| t > from && t <= to)
    }

    /// The most recently completed job failed.
    pub fn failing(&self) -> bool {
        self.shared.last_err.load(Ordering::Acquire) > self.shared.last_ok.load(Ordering::Acquire)
    }

    /// Failures reported since the last call.
    pub fn take_failures(&self) -> Vec<Failure> {
        if !self.shared.any_failures.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let mut failures = self
            .shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *failures)
    }

    /// Finishes the queued jobs and stops the thread (at shutdown).
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn finish(shared: &Shared, ticket: u64, key: Option<usize>, result: io::Result<()>) {
    match result {
        Ok(()) => {
            shared.last_ok.fetch_max(ticket, Ordering::AcqRel);
        }
        Err(error) => {
            let mut failed = shared.failed.lock().unwrap_or_else(|e| e.into_inner());
            if failed.len() == RECENT_FAILURES {
                failed.remove(0);
            }
            failed.push(ticket);
            drop(failed);
            shared
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Failure { ticket, key, error });
            shared.any_failures.store(true, Ordering::Release);
            shared.last_err.fetch_max(ticket, Ordering::AcqRel);
        }
    }
    shared.done.fetch_max(ticket, Ordering::AcqRel);
}

fn work(
    rx: &Receiver<(u64, Option<usize>, Job)>,
    shared: &Shared,
    wake: &dyn Fn(),
    delay: Duration,
) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // A batch: what queued meanwhile, then one wake-up.
        while let Some((ticket, key, job)) = next {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let result = run(job);
            finish(shared, ticket, key, result);
            next = rx.try_recv().ok();
        }
        wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn jobs_complete_in_order_and_failures_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let mut w = Writer::inline();
        let t0 = w.submit(
            None,
            Job::WriteAtomic {
                dir: dir.path().to_owned(),
                name: "meta.json",
                bytes: b"inline".to_vec(),
            },
        );
        assert_eq!(w.done(), t0);
        let counter = Arc::clone(&wakes);
        w.spawn(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
            Duration::ZERO,
        )
        .unwrap();
        let t1 = w.submit(
            Some(7),
            Job::WriteAtomic {
                dir: dir.path().to_owned(),
                name: "meta.json",
                bytes: b"threaded".to_vec(),
            },
        );
        let t2 = w.submit(Some(9), Job::SyncDir(dir.path().join("missing")));
        assert!(t2 > t1 && t1 > t0);
        let start = std::time::Instant::now();
        while w.done() < t2 {
            assert!(start.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            std::fs::read(dir.path().join("meta.json")).unwrap(),
            b"threaded"
        );
        let failures = w.take_failures();
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].ticket, failures[0].key), (t2, Some(9)));
        assert!(w.failed_in(t1, t2) && !w.failed_in(t0, t1) && w.failing());
        w.stop();
        assert!(wakes.load(Ordering::SeqCst) >= 1);
    }
}
