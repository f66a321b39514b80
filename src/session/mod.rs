//! Sessions: the registry, each session's lifecycle, its PTY output turned
//! into events, its input queue, kill and resize.
//!
//! Everything a session does to its PTY and process lives here; what the
//! reactor must do for it (register a new master with the poller, wake up
//! at a deadline) is exposed as data: `take_new_masters`, `next_deadline`.
//! No HTTP here.

mod clock;
mod eventlog;
pub mod harness;
mod launch;
mod process;
pub mod record;
mod retention;
pub mod store;

pub use clock::stamp_str;
use clock::Clock;
use eventlog::{History, Log};
use launch::Launch;
pub use launch::{LaunchError, LaunchSpec, Resolution, Spawner};
pub use process::{complete_utf8_len, Refusal};
use process::{Ending, InputQueue, Process};

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::journal::Journal;
use crate::ring::{Event, EventRef, Kind, Ring};
use crate::supervisor::link::{Heard, Link, Started};
use crate::supervisor::proto::SpawnRequest;
use crate::sys::process::ExitStatus;
use crate::sys::pty;
use crate::writer::{Job, Writer};
use harness::Harness;

/// The wake-list topic of requests waiting for the writer (`on_writer`
/// touches it): never a session's slab key.
pub const DURABLE_TOPIC: usize = usize::MAX;
/// The wake-list topic of requests waiting for an answer: a writer task's
/// (a launch's paths, a restart's check) or the supervisor's (a launch's
/// harness started).
pub const ANSWER_TOPIC: usize = usize::MAX - 1;
/// The topic of the web view's screen streams: woken when any session has
/// new events (each stream looks at the sessions it watches).
pub const SCREENS_TOPIC: usize = usize::MAX - 2;
/// PTY bytes per `output` event at most (the contract's 8 KiB).
pub const MAX_OUTPUT_BYTES: usize = 48 * 1024;
/// An event's `payload_json` stays under this many bytes (Coven's clients
/// refuse longer ones): output that escapes to more is split.
pub const MAX_PAYLOAD_JSON_BYTES: usize = 64_000;
/// Reads per PTY per turn before other sources get a go.
const READS_PER_TURN: usize = 16;
/// After the harness exits, how long to wait for its PTY to report EOF
/// (a background process may still hold the terminal) before finishing.
const EXIT_DRAIN: Duration = Duration::from_secs(2);
/// How long a writer task's answer waits to be taken.
const ANSWER_KEEP: Duration = Duration::from_secs(60);
/// How often writes the disk refused are retried.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Completed,
    Failed,
    Killed,
    Orphaned,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "killed" => Status::Killed,
            "orphaned" => Status::Orphaned,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::Orphaned => "orphaned",
        }
    }
}

/// Session limits (from `config::Limits`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_live: usize,
    pub ring_bytes: usize,
    pub input_queue_bytes: usize,
    pub kill_grace: Duration,
    /// Journal bytes one session may keep; its oldest segments go first.
    pub journal_bytes_per_session: u64,
    /// Journal bytes all sessions may keep; the oldest finished sessions'
    /// history goes first.
    pub journal_bytes_total: u64,
    /// Finished sessions are deleted this long after they finished.
    pub retention: Option<Duration>,
    /// Free disk space under which storage is reported as `warning`.
    pub storage_warning_bytes: u64,
}

pub struct Session {
    /// Public id: `[0-9a-f-]`, unique, never a slab key.
    pub id: Box<str>,
    /// Unique among every session this daemon has held, unlike the slab
    /// key, which a deleted session's successor may reuse.
    pub serial: u64,
    /// When it was archived (hidden from the default list).
    pub archived_at: Option<[u8; 20]>,
    /// When it finished, in Unix seconds; 0 while it runs.
    finished_secs: u64,
    /// Its entry's position in the session index, once known.
    idx_pos: Option<u64>,
    /// Its `meta.json` is behind what is in memory (a refused write).
    meta_dirty: bool,
    /// The writer's ticket for its latest `meta.json`.
    meta_ticket: u64,
    /// Project root, cwd, harness id and title.
    texts: Texts,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub created_at: [u8; 20],
    pub updated_at: [u8; 20],
    /// The deadline this session has in the timer set.
    armed: Option<Instant>,
    /// Its harness and terminal, while it has them.
    pub proc: Process,
    /// Its events: the ring, the journal, what the disk refused.
    pub history: History,
    /// Its slab key (for the touched list; never shown to clients).
    key: usize,
}

impl Session {
    /// A record-less session: no process, no events. Callers fill in the
    /// record fields with struct update syntax.
    pub(super) fn new(key: usize, ring: Ring, journal: Option<Journal>) -> Session {
        Session {
            id: Box::default(),
            serial: 0,
            archived_at: None,
            finished_secs: 0,
            idx_pos: None,
            meta_dirty: false,
            meta_ticket: 0,
            texts: Texts::default(),
            status: Status::Running,
            exit_code: None,
            created_at: [0; 20],
            updated_at: [0; 20],
            armed: None,
            proc: Process::default(),
            history: History::new(ring, journal),
            key,
        }
    }

    pub fn is_live(&self) -> bool {
        self.status == Status::Running
            || (self.status == Status::Killed && self.proc.master.is_some())
    }

    /// Every event it will ever have is visible: it is not live, and its
    /// `exit` event is neither waiting for the disk nor for the writer.
    /// Until then, readers of its events wait for more.
    pub fn is_over(&self) -> bool {
        !self.is_live() && self.history.unshown.is_none() && self.history.pending_exit.is_none()
    }

    /// A live restart's carried state (`handover::Live`), on a session
    /// just loaded from disk and given its terminal back.
    pub(super) fn restore_live(&mut self, c: &crate::handover::Live, now: Instant) {
        if c.killed {
            self.status = Status::Killed;
        }
        if let Some(tail) = crate::handover::unhex(&c.tail).filter(|t| t.len() <= 3) {
            self.proc.tail[..tail.len()].copy_from_slice(&tail);
            self.proc.tail_len = tail.len() as u8;
        }
        match crate::handover::unhex(&c.input) {
            Some(bytes) if !bytes.is_empty() => {
                self.proc.input = Some(Box::new(InputQueue { bytes, written: 0 }));
            }
            _ => {}
        }
        let at = |ms: Option<u64>| ms.map(|ms| now + Duration::from_millis(ms));
        self.set_ending(|e| {
            e.escalate_at = at(c.escalate_in_ms);
            e.drain_until = at(c.drain_in_ms);
        });
    }

    /// What a live restart must carry of this session: its live state (the
    /// descriptors made to survive the exec), and its writes the disk
    /// refused. `None` if the disk has all of it and it is not live.
    pub(super) fn carry(&self, now: Instant) -> Option<crate::handover::Carried> {
        let live = self.proc.master.as_ref().map(|master| {
            let ms =
                |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_millis() as u64);
            let ending = self.proc.ending.as_deref();
            crate::handover::Live {
                pgid: self.proc.pgid,
                master: master.as_raw_fd(),
                slave: self.proc.slave.as_ref().map(|s| s.as_raw_fd()),
                killed: self.status == Status::Killed,
                exit: self.proc.exit.map(|e| e.raw),
                eof: self.proc.eof,
                tail: crate::handover::hex(&self.proc.tail[..usize::from(self.proc.tail_len)]),
                input: self
                    .proc
                    .input
                    .as_ref()
                    .map_or_else(String::new, |q| crate::handover::hex(&q.bytes[q.written..])),
                escalate_in_ms: ms(ending.and_then(|e| e.escalate_at)),
                drain_in_ms: ms(ending.and_then(|e| e.drain_until)),
            }
        });
        let unsaved = self.history.gap_events > 0 || self.meta_dirty || self.history.resync;
        (live.is_some() || unsaved).then(|| crate::handover::Carried {
            id: self.id.to_string(),
            live,
            gap_events: self.history.gap_events,
            gap_bytes: self.history.gap_bytes,
            meta_dirty: self.meta_dirty,
            resync: self.history.resync,
            history_cut: self.history.history_cut,
        })
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let e = self.proc.ending.as_deref()?;
        match (e.escalate_at, e.drain_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Changes the pending deadlines; the box goes with the last of them.
    pub(super) fn set_ending(&mut self, f: impl FnOnce(&mut Ending)) {
        let mut e = self.proc.ending.take().map_or_else(Ending::default, |b| *b);
        f(&mut e);
        if e.escalate_at.is_some() || e.drain_until.is_some() || e.reason.is_some() {
            self.proc.ending = Some(Box::new(e));
        }
    }

    pub fn created_at(&self) -> &str {
        stamp_str(&self.created_at)
    }

    pub fn project_root(&self) -> &str {
        self.texts.get(0)
    }

    pub fn cwd(&self) -> &str {
        match self.texts.get(1) {
            "" => self.project_root(),
            cwd => cwd,
        }
    }

    pub fn harness(&self) -> &str {
        self.texts.get(2)
    }

    pub fn title(&self) -> &str {
        self.texts.get(3)
    }

    /// The oldest event still readable.
    pub fn first_available(&self) -> Option<u64> {
        self.history
            .journal
            .as_ref()
            .and_then(Journal::first_seq)
            .or_else(|| self.history.ring.first_seq())
    }

    /// Whether part of its history is gone (retention, or a memory-only
    /// ring that dropped events).
    pub fn history_cut(&self) -> bool {
        self.history.history_cut
            || (self.history.journal.is_none() && self.history.ring.dropped_through() > 0)
    }

    pub fn journal_bytes(&self) -> u64 {
        self.history.journal.as_ref().map_or(0, Journal::bytes)
    }

    /// Where reading must start to cover about its newest `bytes` of
    /// history (`Journal::tail_start`).
    pub fn tail_start(&self, bytes: u64) -> u64 {
        self.history
            .journal
            .as_ref()
            .map_or(0, |j| j.tail_start(bytes))
    }

    /// Its directory on disk (None: memory only).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.history.journal.as_ref().map(Journal::dir)
    }

    /// Seq of its newest event (0 if it has none), shown or not yet.
    pub fn last_seq(&self) -> u64 {
        let shown = self
            .history
            .ring
            .last_seq()
            .unwrap_or(self.history.ring.dropped_through());
        let written = self
            .history
            .journal
            .as_ref()
            .and_then(Journal::last_seq)
            .unwrap_or(0);
        let unshown = self.history.unshown.as_ref().map_or(0, |u| u.1.seq);
        shown.max(written).max(unshown)
    }

    pub(super) fn meta(&self) -> record::SessionMeta {
        record::SessionMeta {
            id: self.id.to_string(),
            project_root: self.project_root().to_owned(),
            cwd: self.cwd().to_owned(),
            harness: self.harness().to_owned(),
            title: self.title().to_owned(),
            status: self.status.as_str().to_owned(),
            exit_code: self.exit_code,
            created_at: self.created_at().to_owned(),
            updated_at: self.updated_at().to_owned(),
            archived_at: self.archived_at.as_ref().map(|t| stamp_str(t).to_owned()),
            history_cut: self.history.history_cut,
            last_seq: self.last_seq(),
        }
    }

    pub fn updated_at(&self) -> &str {
        stamp_str(&self.updated_at)
    }
}

/// A session's record strings (project root, cwd, harness id, title) in
/// one allocation: an idle session's heap is mostly a few small strings,
/// and each allocation of its own costs a header and rounding. A cwd equal
/// to the root (the usual case) is kept once.
#[derive(Default)]
pub struct Texts {
    all: Box<str>,
    /// Where each of the first three ends in `all`.
    ends: [u32; 3],
}

impl Texts {
    pub fn new(project_root: &str, cwd: &str, harness: &str, title: &str) -> Texts {
        let cwd = if cwd == project_root { "" } else { cwd };
        let mut all =
            String::with_capacity(project_root.len() + cwd.len() + harness.len() + title.len());
        let mut ends = [0u32; 3];
        for (i, part) in [project_root, cwd, harness].into_iter().enumerate() {
            all.push_str(part);
            ends[i] = all.len() as u32;
        }
        all.push_str(title);
        Texts {
            all: all.into_boxed_str(),
            ends,
        }
    }

    /// Part `i` (0 root, 1 cwd or empty, 2 harness, 3 title).
    pub(super) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.all.len(), |&e| e as usize);
        &self.all[start..end]
    }
}

/// Why a delete was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteError {
    /// The session is live; it keeps running.
    Live,
    /// Its directory could not be removed (nothing else changed).
    Storage(String),
}

pub struct Sessions {
    list: Slab<Session>,
    by_id: HashMap<Box<str>, usize>,
    /// The next `Session::serial`.
    next_serial: u64,
    /// Every session, finished ones included (`store`).
    index: crate::index::Index,
    /// Sessions in the index, deleted ones aside.
    count: usize,
    /// The newest session id given out: new ones sort after it.
    last_id: Box<str>,
    /// Finished sessions in the slab, to let go once unused (`evict`).
    evictable: Vec<usize>,
    /// The finished sessions asked for in the last `RECENT_FOR` (newest
    /// last, at most `KEEP_RECENT`), with when: kept loaded, so that a
    /// client paging through one does not reload it and rebuild its journal
    /// index per request. Let go once unused that long, or when the daemon
    /// falls quiet (`forget_recent`).
    recent: std::collections::VecDeque<(usize, Instant)>,
    /// Where PTY output is read (`MAX_OUTPUT_BYTES`, made when first
    /// needed, given back when the daemon is quiet: `forget_recent`).
    read_buf: Vec<u8>,
    /// Where journal records are read for pages and streams, and the
    /// segment last read (given back with `read_buf`).
    reader: crate::journal::Reader,
    /// When retention by age next has work (the oldest finished session
    /// comes of age, or a step left work over).
    retention_at: Option<Instant>,
    /// Where retention by age's pass over the index is.
    age_pos: u64,
    /// The earliest due time this pass saw among sessions not yet due.
    age_min_due: Option<u64>,
    /// Index entries before this hold no finished session with history.
    bytes_pos: u64,
    /// When to retry writes the disk refused.
    storage_retry_at: Option<Instant>,
    /// Sessions with an `exit` event waiting for the writer.
    awaiting_show: Vec<usize>,
    /// Free disk bytes, and when they were read.
    free_disk: std::cell::Cell<Option<(Instant, Option<u64>)>>,
    by_pid: HashMap<i32, usize>,
    log: Log,
    live: usize,
    limits: Limits,
    harnesses: Vec<Harness>,
    path: OsString,
    /// Masters opened since the reactor last asked.
    new_masters: Vec<usize>,
    /// Sessions with PTY work left after a turn's budget.
    pending: Vec<usize>,
    timers: BTreeSet<(Instant, usize)>,
    /// `<home>/sessions`, where journals live (None: memory only).
    root: Option<PathBuf>,
    /// The supervisor, which starts harnesses and reaps them (None: no
    /// harness can be started).
    link: Option<Box<dyn Spawner>>,
    /// `load` is taking up the sessions that had not finished (each is
    /// adopted or recovered there, not on being found).
    starting: bool,
    /// Launches whose harness the supervisor is starting, by session key.
    launches: HashMap<usize, Launch>,
    /// Answers of the writer's tasks (`resolve`) not yet taken, by ticket;
    /// and tickets whose answer nobody wants any more.
    answers: HashMap<u64, (Instant, crate::writer::Answer)>,
    unwanted: std::collections::HashSet<u64>,
    /// Deleted sessions' directories a crash left behind, for the writer
    /// once it runs.
    leftovers: Vec<PathBuf>,
    /// When retention by bytes has more to free (a step ran out of time).
    bytes_at: Option<Instant>,
}

impl Sessions {
    pub fn new(limits: Limits, harnesses: Vec<Harness>, path: OsString) -> Sessions {
        Sessions {
            list: Slab::new(),
            by_id: HashMap::new(),
            next_serial: 1,
            index: crate::index::Index::in_memory(),
            count: 0,
            last_id: Box::default(),
            evictable: Vec::new(),
            recent: std::collections::VecDeque::new(),
            read_buf: Vec::new(),
            reader: crate::journal::Reader::default(),
            retention_at: None,
            age_pos: 0,
            age_min_due: None,
            bytes_pos: 0,
            storage_retry_at: None,
            free_disk: std::cell::Cell::new(None),
            awaiting_show: Vec::new(),
            by_pid: HashMap::new(),
            log: Log {
                next_seq: 1,
                clock: Clock::default(),
                ring_bytes: 0,
                journal_bytes: 0,
                touched: Vec::new(),
                append_failed: false,
                writer: Writer::inline(),
                outstanding: Vec::new(),
            },
            live: 0,
            limits,
            harnesses,
            path,
            new_masters: Vec::new(),
            pending: Vec::new(),
            timers: BTreeSet::new(),
            root: None,
            link: None,
            starting: false,
            launches: HashMap::new(),
            answers: HashMap::new(),
            unwanted: std::collections::HashSet::new(),
            leftovers: Vec::new(),
            bytes_at: None,
        }
    }

    pub fn journal_bytes(&self) -> u64 {
        self.log.journal_bytes
    }

    /// Sessions with records on disk.
    pub fn on_disk(&self) -> usize {
        if self.root.is_some() {
            self.count
        } else {
            0
        }
    }

    /// Indexes a session just put in the slab, and gives it its serial.
    pub(super) fn register(&mut self, key: usize) {
        let s = &mut self.list[key];
        s.serial = self.next_serial;
        self.next_serial += 1;
        self.by_id.insert(s.id.clone(), key);
    }

    pub fn harnesses(&self) -> &[Harness] {
        &self.harnesses
    }

    pub fn path_var(&self) -> &OsString {
        &self.path
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Sessions in memory (live ones, and finished ones in use).
    pub fn in_memory(&self) -> usize {
        self.list.len()
    }

    pub fn ring_bytes(&self) -> usize {
        self.log.ring_bytes
    }

    pub fn get(&self, key: usize) -> Option<&Session> {
        self.list.get(key)
    }

    /// Keys of masters to register with the poller (taken once).
    pub fn take_new_masters(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.new_masters)
    }

    pub fn master_fd(&self, key: usize) -> Option<RawFd> {
        self.list
            .get(key)?
            .proc
            .master
            .as_ref()
            .map(|m| m.as_raw_fd())
    }

    /// Sessions that yielded with PTY work left (taken once).
    pub fn take_pending(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.link.as_ref().is_some_and(|l| l.has_pending())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.timers.first().map(|&(t, _)| t),
            self.retention_at,
            self.storage_retry_at,
            self.bytes_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What a live restart carries: every session's state that only
    /// memory holds, and the sequence. The writer is stopped first, so
    /// that what it had queued is on disk for the next program to read.
    pub fn carry(&mut self, now: Instant) -> (Vec<crate::handover::Carried>, u64) {
        self.log.writer.stop();
        self.on_writer();
        let carried = self.list.iter().filter_map(|(_, s)| s.carry(now)).collect();
        (carried, self.log.next_seq)
    }

    /// The descriptors a live restart must keep open: every live session's
    /// master and slave, and the supervisor's link.
    pub fn descriptors(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.link_fd().into_iter().collect();
        for (_, s) in &self.list {
            fds.extend(s.proc.master.as_ref().map(|m| m.as_raw_fd()));
            fds.extend(s.proc.slave.as_ref().map(|m| m.as_raw_fd()));
        }
        fds
    }

    /// After a live restart, what the previous program carried for the
    /// sessions that are not live (writes the disk had refused), and the
    /// sequence: no seq is given out twice.
    pub fn restore(&mut self, carried: &[crate::handover::Carried], next_seq: u64) {
        self.log.next_seq = self.log.next_seq.max(next_seq);
        for c in carried {
            let Some(key) = self.find(&c.id) else {
                continue;
            };
            let s = &mut self.list[key];
            s.history.gap_events = c.gap_events;
            s.history.gap_bytes = c.gap_bytes;
            s.meta_dirty |= c.meta_dirty;
            s.history.resync |= c.resync;
            s.history.history_cut |= c.history_cut;
            if c.gap_events > 0 || c.meta_dirty || c.resync {
                self.log.outstanding.push(key);
            }
        }
    }
}

/// Session ids as this daemon makes them (and real clients accept).
pub fn valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_boundaries() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(complete_utf8_len(s), s.len());
        for cut in 0..=s.len() {
            let c = complete_utf8_len(&s[..cut]);
            assert!(std::str::from_utf8(&s[..c]).is_ok(), "cut {cut}");
            assert!(cut - c <= 3);
            // Only a genuinely incomplete tail is held back.
            assert!([0, 1, 3, 6, 10].contains(&c), "cut {cut} -> {c}");
        }
        // Invalid bytes are not held back (they become U+FFFD).
        assert_eq!(complete_utf8_len(b"a\xff"), 2);
        assert_eq!(complete_utf8_len(b"\x80\x80\x80"), 3);
    }
}
#[cfg(test)]
mod lifecycle_tests;

#[cfg(test)]
mod footprint {
    /// Every live session holds one of these in the slab: keep it small
    /// (rarely used state is boxed: the input queue, the ending deadlines,
    /// the exit event waiting for the disk; the record's strings share one
    /// allocation, `Texts`).
    #[test]
    fn texts_keep_each_part_and_a_cwd_equal_to_the_root_once() {
        let t = super::Texts::new("/p", "/p", "codex", "a title");
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            ("/p", "", "codex", "a title")
        );
        assert_eq!(t.all.len(), "/pcodexa title".len());
        let t = super::Texts::new("/p", "/p/sub", "", "");
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            ("/p", "/p/sub", "", "")
        );
    }

    #[test]
    fn a_session_record_stays_small() {
        let size = std::mem::size_of::<super::Session>();
        assert!(size <= 432, "Session is {size} bytes");
    }
}
