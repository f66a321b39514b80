//! The writer: one thread beside the loop that does everything that waits
//! on a disk, so the loop never does — every `fsync` (of journal records
//! that must survive a power cut, of metadata, of directories), every
//! atomic metadata write (temp file, fsync, rename, directory fsync), every
//! removal (a dropped segment, a deleted session's directory), the repair
//! of a torn journal tail, and the work whose answer the loop needs but
//! cannot wait for (`Job::Task`: resolving a launch's paths, reading a
//! screen checkpoint), which comes back through `Writer::take_answers`.
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
//! a home on disk, jobs run inline. Once the loop runs, a job never runs on
//! its thread: `on_loop::assert_off_loop` (a debug assertion the tests run with)
//! fails if a sync, an atomic write or a removal is tried there, and a
//! writer thread that is gone fails every job it is given (health's storage
//! says `critical`, the log says why) instead of doing it on the loop.
//!
//! Jobs are taken in batches of what queued meanwhile; a sync of a file or
//! directory already synced in the same batch is skipped (group commit,
//! `Synced`), so many launches or exits at once share their syncs.
//!
//! The queue is an unbounded channel, bounded in practice by what the loop
//! submits: a few jobs per session state change.

use std::any::Any;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Something that waits on a disk.
pub enum Job {
    /// `fdatasync` of a journal segment: its records so far survive a
    /// power cut.
    SyncData(File),
    /// `fsync` of a directory: entries created, renamed or removed in it
    /// survive a power cut.
    SyncDir(PathBuf),
    /// Replaces `<dir>/<name>` atomically (temp file + rename), and if
    /// `durable`, so that it survives a power cut.
    WriteAtomic {
        dir: PathBuf,
        name: &'static str,
        bytes: Vec<u8>,
        durable: bool,
    },
    /// Cuts a file back to `len` bytes, durably (a torn journal tail).
    Truncate { path: PathBuf, len: u64 },
    /// Removes a file; one already gone is fine.
    Remove(PathBuf),
    /// Removes a directory and everything in it; one already gone is fine.
    RemoveTree(PathBuf),
    /// Work whose answer the loop takes back (`Writer::take_answers`). A
    /// task reads; it changes no file (a batch's syncs count on that).
    Task(Box<dyn FnOnce() -> Answer + Send>),
}

/// What a `Job::Task` gives back; its submitter knows the type.
pub type Answer = Box<dyn Any + Send>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::SyncData(file) => write!(f, "SyncData({file:?})"),
            Job::SyncDir(dir) => write!(f, "SyncDir({})", dir.display()),
            Job::WriteAtomic { dir, name, .. } => {
                write!(f, "WriteAtomic({}/{name})", dir.display())
            }
            Job::Truncate { path, len } => write!(f, "Truncate({}, {len})", path.display()),
            Job::Remove(path) => write!(f, "Remove({})", path.display()),
            Job::RemoveTree(path) => write!(f, "RemoveTree({})", path.display()),
            Job::Task(_) => f.write_str("Task"),
        }
    }
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
    /// Answers of `Job::Task`s, by ticket, and whether there are any.
    answers: Mutex<Vec<(u64, Answer)>>,
    any_answers: AtomicBool,
    /// The thread is gone: every job fails.
    gone: AtomicBool,
    /// Tickets of the most recent failed jobs (at most `RECENT_FAILURES`).
    failed: Mutex<Vec<u64>>,
    /// The newest ticket that completed well, and the newest that failed.
    last_ok: AtomicU64,
    last_err: AtomicU64,
    /// `SyncData` and `SyncDir` jobs that synced (not skipped).
    syncs: AtomicU64,
}

/// The most jobs one batch takes (one wake-up of the loop each).
const BATCH_JOBS: usize = 256;

/// Failed tickets remembered for `Writer::failed_in`.
const RECENT_FAILURES: usize = 1024;

pub struct Writer {
    next: u64,
    shared: Arc<Shared>,
    /// `None`: jobs run inline.
    tx: Option<Sender<(u64, Option<usize>, Job)>>,
    thread: Option<JoinHandle<()>>,
}

/// What a batch has made durable so far (group commit). Every job of a
/// batch was submitted before the batch's first job ran, so everything
/// the loop wrote before submitting any of them was written before any
/// sync of the batch began: a sync of a file or directory already synced
/// in the same batch has nothing left to do, and is skipped. The writer's
/// own changes to a directory forget it: an atomic write's rename its
/// directory (synced again after, if durable), a removal every directory.
#[derive(Default)]
struct Synced {
    /// Files by (device, inode): two handles of one file are one file.
    files: Vec<(u64, u64)>,
    dirs: Vec<PathBuf>,
    /// Syncs actually made.
    made: u64,
}

impl Synced {
    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let id = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        if id.is_some_and(|id| self.files.contains(&id)) {
            return Ok(());
        }
        file.sync_data()?;
        self.made += 1;
        self.files.extend(id);
        Ok(())
    }

    fn sync_dir(&mut self, dir: PathBuf) -> io::Result<()> {
        if self.dirs.contains(&dir) {
            return Ok(());
        }
        File::open(&dir)?.sync_all()?;
        self.made += 1;
        self.dirs.push(dir);
        Ok(())
    }
}

/// Runs one job; a task's answer is kept in `shared`.
fn run(shared: &Shared, ticket: u64, job: Job) -> io::Result<()> {
    let mut synced = Synced::default();
    let result = run_in(shared, ticket, job, &mut synced);
    shared.syncs.fetch_add(synced.made, Ordering::Relaxed);
    result
}

/// Runs one job of a batch (`Synced`).
fn run_in(shared: &Shared, ticket: u64, job: Job, synced: &mut Synced) -> io::Result<()> {
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    };
    match job {
        Job::SyncData(file) => synced.sync_data(&file),
        Job::SyncDir(dir) => synced.sync_dir(dir),
        Job::WriteAtomic {
            dir,
            name,
            bytes,
            durable,
        } => {
            // Its rename changes the directory; a durable write syncs it
            // after.
            synced.dirs.retain(|d| *d != dir);
            crate::journal::write_atomic(&dir, name, &bytes, durable)?;
            if durable {
                synced.dirs.push(dir);
            }
            Ok(())
        }
        Job::Truncate { path, len } => {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(len)?;
            file.sync_all()
        }
        Job::Remove(path) => {
            synced.dirs.clear();
            gone(std::fs::remove_file(path))
        }
        Job::RemoveTree(path) => {
            synced.dirs.clear();
            gone(std::fs::remove_dir_all(path))
        }
        Job::Task(task) => {
            // A task that panics loses its answer; its submitter sees the
            // failure instead.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task))
                .map_err(|_| io::Error::other("a task panicked"))?;
            shared
                .answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((ticket, answer));
            shared.any_answers.store(true, Ordering::Release);
            Ok(())
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
                answers: Mutex::new(Vec::new()),
                any_answers: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                last_ok: AtomicU64::new(0),
                last_err: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
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
        let result = match &self.tx {
            Some(tx) => match tx.send((ticket, key, job)) {
                Ok(()) => return ticket,
                // The thread is gone: the job fails, and health says so;
                // it is never done on the loop instead.
                Err(_) => {
                    if !self.shared.gone.swap(true, Ordering::AcqRel) {
                        log::error!("the writer thread is gone: nothing more is made durable");
                    }
                    Err(io::Error::other("the writer thread is gone"))
                }
            },
            None => run(&self.shared, ticket, job),
        };
        finish(&self.shared, ticket, key, result);
        ticket
    }

    /// The writer thread is gone (it panicked or could not be started
    /// again): health reports storage as critical.
    pub fn is_gone(&self) -> bool {
        self.shared.gone.load(Ordering::Acquire)
    }

    /// Answers of the tasks completed since the last call, by ticket.
    pub fn take_answers(&self) -> Vec<(u64, Answer)> {
        if !self.shared.any_answers.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(
            &mut *self
                .shared
                .answers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Every job up to this ticket is complete.
    pub fn done(&self) -> u64 {
        self.shared.done.load(Ordering::Acquire)
    }

    /// How many `SyncData` and `SyncDir` jobs synced rather than being
    /// covered by an earlier sync of their batch.
    #[cfg(test)]
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
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
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        // A batch: what queued meanwhile (at most `BATCH_JOBS`), then one
        // wake-up.
        batch.push(first);
        while batch.len() < BATCH_JOBS {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut synced = Synced::default();
        for (ticket, key, job) in batch.drain(..) {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let result = run_in(shared, ticket, job, &mut synced);
            finish(shared, ticket, key, result);
        }
        shared.syncs.fetch_add(synced.made, Ordering::Relaxed);
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
                durable: true,
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
                durable: true,
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

#[cfg(test)]
mod more_tests {
    use super::*;

    /// Syncs of one file or directory queued together are made once; a
    /// removal between them, or a later batch, syncs again.
    #[test]
    fn a_batch_syncs_each_file_and_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut w = Writer::inline();
        w.spawn(|| {}, Duration::ZERO).unwrap();
        // Held up until every other job is queued: they are one batch.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        w.submit(
            None,
            Job::Task(Box::new(move || {
                let _ = started.send(());
                let _ = wait.recv();
                Box::new(())
            })),
        );
        // Its batch is taken: what follows queues for the next one.
        running.recv_timeout(Duration::from_secs(20)).unwrap();
        let until = |w: &Writer, t: u64| {
            let start = std::time::Instant::now();
            while w.done() < t {
                assert!(start.elapsed() < Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for _ in 0..5 {
            w.submit(None, Job::SyncData(file.try_clone().unwrap()));
            w.submit(None, Job::SyncDir(dir.path().to_owned()));
        }
        w.submit(None, Job::Remove(dir.path().join("nothing")));
        w.submit(None, Job::SyncData(file.try_clone().unwrap()));
        w.submit(None, Job::SyncDir(dir.path().to_owned()));
        w.submit(
            None,
            Job::WriteAtomic {
                dir: dir.path().to_owned(),
                name: "g",
                bytes: b"x".to_vec(),
                durable: false,
            },
        );
        let last = w.submit(None, Job::SyncDir(dir.path().to_owned()));
        go.send(()).unwrap();
        until(&w, last);
        assert_eq!(
            w.syncs(),
            4,
            "the file once, the directory before and after the removal, and after the write"
        );
        let again = w.submit(None, Job::SyncData(file.try_clone().unwrap()));
        until(&w, again);
        assert_eq!(w.syncs(), 5, "a later batch syncs again");
        assert!(w.take_failures().is_empty());
    }

    #[test]
    fn tasks_answer_and_removals_of_what_is_gone_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::inline();
        let t = w.submit(None, Job::Task(Box::new(|| Box::new(41u32 + 1))));
        let answers = w.take_answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, t);
        assert_eq!(*answers[0].1.downcast_ref::<u32>().unwrap(), 42);
        assert!(w.take_answers().is_empty());
        let tree = dir.path().join("a/b");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f"), b"x").unwrap();
        w.submit(None, Job::RemoveTree(dir.path().join("a")));
        w.submit(None, Job::RemoveTree(dir.path().join("a")));
        w.submit(None, Job::Remove(dir.path().join("nothing")));
        assert!(!dir.path().join("a").exists());
        assert!(w.take_failures().is_empty() && !w.failing());
    }

    #[test]
    fn a_gone_thread_fails_jobs_instead_of_running_them_inline() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::inline();
        w.spawn(|| {}, Duration::ZERO).unwrap();
        // The thread goes (as if it had panicked): its receiver with it.
        w.tx = Some(std::sync::mpsc::channel().0);
        let file = dir.path().join("f");
        let t = w.submit(
            Some(3),
            Job::WriteAtomic {
                dir: dir.path().to_owned(),
                name: "f",
                bytes: b"x".to_vec(),
                durable: true,
            },
        );
        assert!(!file.exists(), "not run inline");
        assert!(w.is_gone() && w.failing() && w.failed_in(t - 1, t));
        assert_eq!(w.take_failures()[0].key, Some(3));
    }
}
