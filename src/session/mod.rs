//! Sessions: the registry, each session's lifecycle, its PTY output turned
//! into events, its input queue, kill and resize.
//!
//! Everything a session does to its PTY and process lives here; what the
//! reactor must do for it (register a new master with the poller, wake up
//! at a deadline) is exposed as data: `take_new_masters`, `next_deadline`.
//! No HTTP here.

pub mod harness;
pub mod record;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use slab::Slab;

use crate::journal::Journal;
use crate::ring::{Event, Kind, Ring};
use crate::supervisor::link::{Heard, Link, Started};
use crate::supervisor::proto::SpawnRequest;
use crate::sys::process::ExitStatus;
use crate::sys::pty;
use crate::writer::{Job, Writer};
use harness::Harness;

/// The wake-list topic of requests waiting for the writer (`on_writer`
/// touches it): never a session's slab key.
pub const DURABLE_TOPIC: usize = usize::MAX;
/// The wake-list topic of launches waiting for their paths to be resolved
/// (a writer task) or their harness to be started (the supervisor).
pub const LAUNCH_TOPIC: usize = usize::MAX - 1;
/// PTY bytes per `output` event at most (the contract's 8 KiB).
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024;
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

/// A validated launch request.
pub struct LaunchSpec {
    /// Canonical.
    pub project_root: PathBuf,
    /// Canonical, inside `project_root`.
    pub cwd: PathBuf,
    /// Index into `Sessions::harnesses()`.
    pub harness: usize,
    pub prompt: String,
    pub title: String,
    pub cols: u16,
    pub rows: u16,
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
    /// Events the journal refused since the last `output_truncated`, and
    /// their PTY or input bytes.
    gap_events: u64,
    gap_bytes: u64,
    /// The `exit` event's payload, while the journal refuses it: the
    /// session is over (its status says so) but not yet closed out.
    pending_exit: Option<Box<[u8]>>,
    /// Its `meta.json` is behind what is in memory (a refused write).
    meta_dirty: bool,
    /// The writer's ticket for its latest `meta.json`.
    meta_ticket: u64,
    /// Its journal's lifecycle records need syncing again (a refused sync).
    resync: bool,
    /// The `exit` event, written but waiting for the writer's ticket to be
    /// durable before anyone is shown it.
    unshown: Option<Box<(u64, Event)>>,
    /// Project root, cwd, harness id and title.
    texts: Texts,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub created_at: [u8; 20],
    pub updated_at: [u8; 20],
    /// Set while the process has not been reaped.
    pub pid: Option<i32>,
    /// When it last printed (for `wait?for=quiet`).
    pub last_output: Option<Instant>,
    /// The process group to signal (the leader's pid), kept after reaping
    /// so that a kill's escalation still reaches leftover members.
    pgid: i32,
    master: Option<OwnedFd>,
    /// The daemon's slave descriptor, held until the harness is reaped and
    /// the master drained (see `sys::pty`), so no platform drops its tail.
    slave: Option<OwnedFd>,
    readable: bool,
    writable: bool,
    /// The master reported EOF or EIO: every process let go of the PTY.
    eof: bool,
    /// How the harness ended, once the supervisor reaped it.
    exit: Option<ExitStatus>,
    /// An incomplete UTF-8 sequence carried to the next read.
    tail: [u8; 3],
    tail_len: u8,
    /// Input not yet written to the PTY (none, the usual case: it goes as
    /// soon as the queue is empty).
    input: Option<Box<InputQueue>>,
    /// A kill's escalation and the exit's drain deadline, while either is
    /// pending (boxed: a running session has neither).
    ending: Option<Box<Ending>>,
    /// The deadline this session has in the timer set.
    armed: Option<Instant>,
    /// Seq of this session's first event.
    pub first_seq: u64,
    pub ring: Ring,
    /// Where its events are durable (None: memory only).
    journal: Option<Journal>,
    /// Retention removed the oldest part of its history.
    history_cut: bool,
    /// Its slab key (for the touched list; never shown to clients).
    key: usize,
    /// It has new events since the reactor last looked.
    touched: bool,
}

impl Session {
    /// A record-less session: no process, no events. Callers fill in the
    /// record fields with struct update syntax.
    fn new(key: usize, ring: Ring, journal: Option<Journal>) -> Session {
        Session {
            id: Box::default(),
            serial: 0,
            archived_at: None,
            finished_secs: 0,
            idx_pos: None,
            gap_events: 0,
            gap_bytes: 0,
            pending_exit: None,
            meta_dirty: false,
            meta_ticket: 0,
            resync: false,
            unshown: None,
            texts: Texts::default(),
            status: Status::Running,
            exit_code: None,
            created_at: [0; 20],
            updated_at: [0; 20],
            pid: None,
            last_output: None,
            pgid: 0,
            master: None,
            slave: None,
            readable: false,
            writable: false,
            eof: false,
            exit: None,
            tail: [0; 3],
            tail_len: 0,
            input: None,
            ending: None,
            armed: None,
            first_seq: 0,
            ring,
            journal,
            history_cut: false,
            key,
            touched: false,
        }
    }

    pub fn is_live(&self) -> bool {
        self.status == Status::Running || (self.status == Status::Killed && self.master.is_some())
    }

    /// Every event it will ever have is visible: it is not live, and its
    /// `exit` event is neither waiting for the disk nor for the writer.
    /// Until then, readers of its events wait for more.
    pub fn is_over(&self) -> bool {
        !self.is_live() && self.unshown.is_none() && self.pending_exit.is_none()
    }

    /// A live restart's carried state (`handover::Live`), on a session
    /// just loaded from disk and given its terminal back.
    fn restore_live(&mut self, c: &crate::handover::Live, now: Instant) {
        if c.killed {
            self.status = Status::Killed;
        }
        if let Some(tail) = crate::handover::unhex(&c.tail).filter(|t| t.len() <= 3) {
            self.tail[..tail.len()].copy_from_slice(&tail);
            self.tail_len = tail.len() as u8;
        }
        match crate::handover::unhex(&c.input) {
            Some(bytes) if !bytes.is_empty() => {
                self.input = Some(Box::new(InputQueue { bytes, written: 0 }));
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
    fn carry(&self, now: Instant) -> Option<crate::handover::Carried> {
        let live = self.master.as_ref().map(|master| {
            let ms =
                |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_millis() as u64);
            let ending = self.ending.as_deref();
            crate::handover::Live {
                pgid: self.pgid,
                master: master.as_raw_fd(),
                slave: self.slave.as_ref().map(|s| s.as_raw_fd()),
                killed: self.status == Status::Killed,
                exit: self.exit.map(|e| e.raw),
                eof: self.eof,
                tail: crate::handover::hex(&self.tail[..usize::from(self.tail_len)]),
                input: self
                    .input
                    .as_ref()
                    .map_or_else(String::new, |q| crate::handover::hex(&q.bytes[q.written..])),
                escalate_in_ms: ms(ending.and_then(|e| e.escalate_at)),
                drain_in_ms: ms(ending.and_then(|e| e.drain_until)),
            }
        });
        let unsaved = self.gap_events > 0 || self.meta_dirty || self.resync;
        (live.is_some() || unsaved).then(|| crate::handover::Carried {
            id: self.id.to_string(),
            live,
            gap_events: self.gap_events,
            gap_bytes: self.gap_bytes,
            meta_dirty: self.meta_dirty,
            resync: self.resync,
            history_cut: self.history_cut,
        })
    }

    fn deadline(&self) -> Option<Instant> {
        let e = self.ending.as_deref()?;
        match (e.escalate_at, e.drain_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Changes the pending deadlines; the box goes with the last of them.
    fn set_ending(&mut self, f: impl FnOnce(&mut Ending)) {
        let mut e = self.ending.take().map_or_else(Ending::default, |b| *b);
        f(&mut e);
        if e.escalate_at.is_some() || e.drain_until.is_some() || e.reason.is_some() {
            self.ending = Some(Box::new(e));
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
        self.journal
            .as_ref()
            .and_then(Journal::first_seq)
            .or_else(|| self.ring.first_seq())
    }

    /// Whether part of its history is gone (retention, or a memory-only
    /// ring that dropped events).
    pub fn history_cut(&self) -> bool {
        self.history_cut || (self.journal.is_none() && self.ring.dropped_through() > 0)
    }

    pub fn journal_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::bytes)
    }

    /// Where reading must start to cover about its newest `bytes` of
    /// history (`Journal::tail_start`).
    pub fn tail_start(&self, bytes: u64) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.tail_start(bytes))
    }

    /// Its directory on disk (None: memory only).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.journal.as_ref().map(Journal::dir)
    }

    /// Seq of its newest event (0 if it has none), shown or not yet.
    pub fn last_seq(&self) -> u64 {
        let shown = self.ring.last_seq().unwrap_or(self.ring.dropped_through());
        let written = self
            .journal
            .as_ref()
            .and_then(Journal::last_seq)
            .unwrap_or(0);
        let unshown = self.unshown.as_ref().map_or(0, |u| u.1.seq);
        shown.max(written).max(unshown)
    }

    fn meta(&self) -> record::SessionMeta {
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
            history_cut: self.history_cut,
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
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.all.len(), |&e| e as usize);
        &self.all[start..end]
    }
}

pub fn stamp_str(stamp: &[u8; 20]) -> &str {
    std::str::from_utf8(stamp).unwrap_or("1970-01-01T00:00:00Z")
}

/// The daemon's time: the wall clock read once, then advanced by the
/// monotonic clock, so that event times never go backwards within a run
/// (a recording's pauses are real pauses even if the wall clock is set).
/// RFC 3339 text, formatted once per millisecond at most.
struct Clock {
    wall: SystemTime,
    mono: Instant,
    /// Unix milliseconds of `text`.
    ms: u64,
    text: [u8; 24],
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
            ms: u64::MAX,
            text: [0; 24],
        }
    }
}

impl Clock {
    fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }

    /// Unix milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        unix_ms(self.now())
    }

    /// An event's time: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn event_stamp(&mut self) -> [u8; 24] {
        let now = self.now();
        let ms = unix_ms(now);
        if ms != self.ms {
            let text = humantime::format_rfc3339_millis(now).to_string();
            if text.len() == 24 {
                self.text.copy_from_slice(text.as_bytes());
                self.ms = ms;
            }
        }
        self.text
    }

    /// A record's time, to the second: `YYYY-MM-DDTHH:MM:SSZ`.
    fn stamp(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..19].copy_from_slice(&self.event_stamp()[..19]);
        out[19] = b'Z';
        out
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The daemon-wide event sequence and accounting, apart from the session
/// list so both can be borrowed at once.
struct Log {
    next_seq: u64,
    clock: Clock,
    ring_bytes: usize,
    journal_bytes: u64,
    /// Sessions with new events, for waking held requests.
    touched: Vec<usize>,
    /// The last journal append failed.
    append_failed: bool,
    /// Everything that waits on the disk: fsyncs and metadata writes.
    writer: Writer,
    /// Sessions with a write to retry: a gap to declare, an exit event or
    /// metadata the disk refused (may repeat; `retry_storage` sorts it).
    outstanding: Vec<usize>,
}

impl Log {
    /// The event that would be recorded next (its seq is taken only once
    /// the caller records it: `next_seq += 1`).
    fn next_event(&mut self, kind: Kind, payload: Box<[u8]>) -> Event {
        Event {
            seq: self.next_seq,
            kind,
            created_at: self.clock.event_stamp(),
            payload,
        }
    }

    /// Records an event: into the session's ring, where clients see it at
    /// once, and into its journal. Returns whether the journal took it.
    /// One it refused (a full disk) opens a gap in the session's history:
    /// it and the events after it are counted, not written, until the retry
    /// timer declares the gap with an `output_truncated` event, once the
    /// journal takes writes again. `data_bytes`: the PTY or input bytes the
    /// event carries, for that count.
    fn push(&mut self, s: &mut Session, kind: Kind, payload: Box<[u8]>, data_bytes: usize) -> bool {
        let event = self.next_event(kind, payload);
        self.next_seq += 1;
        // Inside a gap nothing is appended: the retry timer declares it (so
        // a full disk costs one `output_truncated` a second at most, not
        // one per event that happened to fit between two that did not).
        let durable = s.gap_events == 0 && self.append(s, &event);
        if !durable {
            s.gap_events += 1;
            s.gap_bytes += data_bytes as u64;
            self.outstanding.push(s.key);
        }
        self.show(s, event);
        durable
    }

    /// Writes an event to the journal only if it takes it (the `exit`
    /// event, whose place in the history must not be lost), without showing
    /// it yet: the caller shows it once the writer has made it durable.
    /// `None`, and nothing recorded, if the journal refuses it.
    fn write_durable(&mut self, s: &mut Session, kind: Kind, payload: &[u8]) -> Option<Event> {
        self.declare_gap(s);
        if s.gap_events > 0 {
            return None;
        }
        let event = self.next_event(kind, payload.into());
        if !self.append(s, &event) {
            return None;
        }
        self.next_seq += 1;
        if s.first_seq == 0 {
            s.first_seq = event.seq;
        }
        Some(event)
    }

    /// Writes the session's last records into the place it reserved for
    /// them at launch (`journal::write_exit`): the marker of a gap not yet
    /// declared, and the `exit` event; the writer makes them durable with
    /// the rest of the ending. Their seqs are not taken: the journal's
    /// records, when they can be written, get their own.
    fn write_final(&mut self, s: &mut Session, payload: &[u8]) {
        let Some(dir) = s.dir() else {
            return;
        };
        let mut events = Vec::with_capacity(2);
        if s.gap_events > 0 {
            let gap = record::truncated_payload(s.gap_events, s.gap_bytes);
            events.push(self.next_event(Kind::OutputTruncated, gap));
        }
        events.push(self.next_event(Kind::Exit, payload.into()));
        match crate::journal::write_exit(dir, &events) {
            Ok(file) => {
                self.writer.submit(Some(s.key), Job::SyncData(file));
            }
            Err(e) => log::warn!("session {}: its final record: {e}", s.id),
        }
    }

    /// Writes the session's `output_truncated` event if it has a gap and
    /// the journal takes it now.
    fn declare_gap(&mut self, s: &mut Session) {
        if s.gap_events == 0 {
            return;
        }
        let payload = record::truncated_payload(s.gap_events, s.gap_bytes);
        let event = self.next_event(Kind::OutputTruncated, payload);
        if self.append(s, &event) {
            log::warn!(
                "session {}: {} event(s), {} byte(s) of output could not be kept; recorded as output_truncated",
                s.id,
                s.gap_events,
                s.gap_bytes
            );
            self.next_seq += 1;
            s.gap_events = 0;
            s.gap_bytes = 0;
            self.show(s, event);
        }
    }

    /// Appends to the session's journal, if it has one; records whether
    /// the disk took it. Lifecycle records (kill, exit) are then made
    /// durable by the writer; output is left to the page cache (it
    /// survives a daemon crash, not a power loss).
    fn append(&mut self, s: &mut Session, event: &Event) -> bool {
        let Some(journal) = &mut s.journal else {
            return true;
        };
        let before = journal.bytes();
        let result = journal.append(event, false);
        self.journal_bytes += journal.bytes() - before;
        match result {
            Ok(_) => {
                self.append_failed = false;
                if matches!(event.kind, Kind::Kill | Kind::Exit) {
                    self.sync_journal(s);
                }
                true
            }
            Err(e) => {
                if !self.append_failed {
                    log::error!("session {}: journal append failed: {e}", s.id);
                }
                self.append_failed = true;
                false
            }
        }
    }

    /// Asks the writer to make the session's journal durable so far (and
    /// the directory entry of a segment created since the last time).
    fn sync_journal(&mut self, s: &mut Session) {
        let Some(journal) = &mut s.journal else {
            return;
        };
        let fresh = journal.take_fresh_segment();
        if fresh {
            self.writer
                .submit(Some(s.key), Job::SyncDir(journal.dir().to_owned()));
        }
        match journal.sync_handle() {
            Some(Ok(file)) => {
                self.writer.submit(Some(s.key), Job::SyncData(file));
                s.resync = false;
            }
            Some(Err(e)) => {
                log::error!("session {}: cannot sync its journal: {e}", s.id);
                s.resync = true;
                self.outstanding.push(s.key);
            }
            None => s.resync = false,
        }
    }

    /// Puts an event in the session's ring and wakes its readers.
    fn show(&mut self, s: &mut Session, event: Event) {
        if !s.touched {
            s.touched = true;
            self.touched.push(s.key);
        }
        if s.first_seq == 0 {
            s.first_seq = event.seq;
        }
        let before = s.ring.bytes();
        s.ring.push(event);
        self.ring_bytes = self.ring_bytes + s.ring.bytes() - before;
    }

    /// Has the writer replace the session's `meta.json` (atomically and
    /// durably); a failure comes back through `Sessions::on_writer` and is
    /// retried, and the session keeps its true state in memory meanwhile.
    fn save_meta(&mut self, root: &Option<PathBuf>, s: &mut Session) {
        let Some(root) = root else {
            return;
        };
        let job = Job::WriteAtomic {
            durable: true,
            dir: root.join(&*s.id),
            name: "meta.json",
            bytes: record::encode_meta(&s.meta()),
        };
        s.meta_ticket = self.writer.submit(Some(s.key), job);
        s.meta_dirty = false;
    }
}

/// What a launch's paths are on disk, found by the writer (`resolve`):
/// the canonical project root, the canonical `cwd` (joined to the root as
/// given) and whether each is a directory, and the harness's executable
/// on `PATH`. Errors are the system's words.
#[derive(Debug)]
pub struct Resolution {
    pub root: Result<(PathBuf, bool), String>,
    pub cwd: Option<Result<(PathBuf, bool), String>>,
    pub exe: Option<PathBuf>,
}

/// A launch whose harness the supervisor is starting.
#[derive(Debug)]
enum Launch {
    /// No answer yet; `wanted`: a request still waits for it.
    Waiting {
        wanted: bool,
    },
    Started,
    Failed(String),
}

/// Why a launch did not produce a running session.
#[derive(Debug)]
pub enum LaunchError {
    /// Too many live sessions.
    AtCapacity { max_live: usize },
    /// The harness could not be started; the session is recorded as failed.
    SpawnFailed { key: usize, message: String },
    /// The session's records could not be created on disk.
    Storage(String),
}

/// Why input or kill was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotLive,
    QueueFull { limit: usize },
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
    link: Option<Link>,
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

    /// Sessions that got events since the last call.
    pub fn take_touched(&mut self) -> Vec<usize> {
        let touched = std::mem::take(&mut self.log.touched);
        for &key in &touched {
            if let Some(s) = self.list.get_mut(key) {
                s.touched = false;
            }
        }
        touched
    }

    /// Visits a session's events after `after`, oldest first, from its
    /// journal and then its ring, until `f` says stop or `limit` events were
    /// visited. `max_bytes` bounds what is read from disk at once. Returns
    /// true if it stopped with events left (more may exist).
    pub fn visit(
        &mut self,
        key: usize,
        after: u64,
        limit: usize,
        max_bytes: usize,
        mut f: impl FnMut(&str, &Event) -> bool,
    ) -> bool {
        let floor = self.list[key].ring.dropped_through();
        let mut n = 0;
        if after < floor {
            let disk = self.read_journal(key, after, floor + 1, limit.saturating_add(1), max_bytes);
            let bytes: usize = disk.iter().map(|e| e.payload.len()).sum();
            let s = &self.list[key];
            for e in &disk {
                if n == limit || !f(&s.id, e) {
                    return true;
                }
                n += 1;
            }
            if disk.len() > limit || bytes >= max_bytes {
                return true;
            }
        }
        let s = &self.list[key];
        for e in s.ring.after(after.max(floor)) {
            if n == limit || !f(&s.id, e) {
                return true;
            }
            n += 1;
        }
        false
    }

    /// Sessions with records on disk.
    pub fn on_disk(&self) -> usize {
        if self.root.is_some() {
            self.count
        } else {
            0
        }
    }

    /// Events of a session's journal with `after < seq < before`.
    pub fn read_journal(
        &mut self,
        key: usize,
        after: u64,
        before: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Vec<Event> {
        let s = &mut self.list[key];
        let Some(journal) = &mut s.journal else {
            return Vec::new();
        };
        journal
            .read(after, before, limit, max_bytes)
            .unwrap_or_else(|e| {
                log::warn!("session {}: reading its journal: {e}", s.id);
                Vec::new()
            })
    }

    /// Whether `seq` is one of this session's events (or was, before
    /// retention removed it).
    pub fn owns(&mut self, key: usize, seq: u64) -> bool {
        let s = &mut self.list[key];
        if s.ring.get(seq).is_some() {
            return true;
        }
        // An event retention (or a memory-only ring) dropped: its position
        // is still a valid cursor.
        if s.history_cut()
            && s.first_seq != 0
            && s.first_seq <= seq
            && s.first_available().is_none_or(|f| seq < f)
        {
            return true;
        }
        s.journal.as_mut().is_some_and(|j| j.contains(seq))
    }

    /// Drops a session's oldest journal segment (never a live session's
    /// current one); returns the bytes freed, 0 if nothing was dropped.
    fn trim_oldest(&mut self, key: usize) -> u64 {
        let s = &mut self.list[key];
        let Some(j) = &mut s.journal else {
            return 0;
        };
        match j.drop_oldest() {
            Some((path, n)) => {
                // The file goes off the loop; it is no longer read.
                self.log.writer.submit(Some(key), Job::Remove(path));
                self.log.journal_bytes -= n;
                s.history_cut |= n > 0;
                n
            }
            None => 0,
        }
    }

    /// Indexes a session just put in the slab, and gives it its serial.
    fn register(&mut self, key: usize) {
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
        self.list.get(key)?.master.as_ref().map(|m| m.as_raw_fd())
    }

    /// Sessions that yielded with PTY work left (taken once).
    pub fn take_pending(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.link.as_ref().is_some_and(Link::has_pending)
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

    /// A new session id, `<unix ms, 13 digits>-<8 hex>`: sorting by id is
    /// sorting by creation, and each one sorts after every id before it
    /// (the index relies on it), even if the clock steps back.
    fn new_id(&mut self) -> Box<str> {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut rand = [0u8; 4];
        crate::sys::random_bytes(&mut rand);
        let mut id = format!("{ms:013}-{:08x}", u32::from_be_bytes(rand));
        if *id <= *self.last_id {
            // Same millisecond (or the clock went back): just after the last.
            let (last_ms, last_rand) = self
                .last_id
                .split_once('-')
                .and_then(|(m, r)| Some((m.parse::<u64>().ok()?, u32::from_str_radix(r, 16).ok()?)))
                .unwrap_or((ms, 0));
            id = match last_rand.checked_add(1) {
                Some(r) => format!("{last_ms:013}-{r:08x}"),
                None => format!("{:013}-00000000", last_ms + 1),
            };
        }
        let id = id.into_boxed_str();
        self.last_id = id.clone();
        id
    }

    /// Asks the writer where a launch's paths lead (`Resolution`): path
    /// resolution waits on the disk, so it never runs on the loop. Returns
    /// the ticket whose answer `take_answer` gives.
    pub fn resolve(&mut self, root: PathBuf, cwd: Option<String>, harness: usize) -> u64 {
        let harness = self.harnesses[harness].clone();
        let path = self.path.clone();
        let task = move || -> crate::writer::Answer {
            let dir = |p: &std::path::Path| {
                std::fs::canonicalize(p)
                    .map(|c| {
                        let is_dir = c.is_dir();
                        (c, is_dir)
                    })
                    .map_err(|e| e.to_string())
            };
            let root = dir(&root);
            let cwd = match (&root, cwd) {
                (Ok((r, _)), Some(c)) => Some(dir(&r.join(c))),
                _ => None,
            };
            Box::new(Resolution {
                root,
                cwd,
                exe: harness.resolve(&path),
            })
        };
        self.log.writer.submit(None, Job::Task(Box::new(task)))
    }

    /// Runs `task` on the writer's thread (work that waits on a disk);
    /// `take_answer` gives its answer, by the ticket returned.
    pub fn submit_task(
        &mut self,
        task: impl FnOnce() -> crate::writer::Answer + Send + 'static,
    ) -> u64 {
        self.log.writer.submit(None, Job::Task(Box::new(task)))
    }

    /// Hands a job to the writer (if there is one).
    pub fn submit(&mut self, job: Option<Job>) {
        if let Some(job) = job {
            self.log.writer.submit(None, job);
        }
    }

    /// A writer task's answer, once it came (None before).
    pub fn take_answer(&mut self, ticket: u64) -> Option<crate::writer::Answer> {
        // It may have come before the writer's wake-up was seen.
        if !self.answers.contains_key(&ticket) {
            self.collect_answers();
        }
        self.answers.remove(&ticket).map(|(_, a)| a)
    }

    /// Nobody waits for this task's answer any more.
    pub fn forget_answer(&mut self, ticket: u64) {
        if self.answers.remove(&ticket).is_none() && self.log.writer.done() < ticket {
            self.unwanted.insert(ticket);
        }
    }

    /// Records a session and asks the supervisor to start its harness
    /// (`exe`, found by `resolve`); `launched` says when it has. A harness
    /// that cannot be asked for at all fails at once.
    pub fn launch(&mut self, spec: LaunchSpec, exe: Option<PathBuf>) -> Result<usize, LaunchError> {
        if self.live >= self.limits.max_live {
            return Err(LaunchError::AtCapacity {
                max_live: self.limits.max_live,
            });
        }
        let harness = self.harnesses[spec.harness].clone();
        let id = self.new_id();
        // The index entry first: a crash before the directory exists leaves
        // an entry that lists nothing, never a directory nothing lists.
        let pos = self
            .index
            .append(&crate::index::Entry {
                id: id.to_string(),
                status: Some(Status::Running.code()),
                ..crate::index::Entry::default()
            })
            .map_err(|e| LaunchError::Storage(format!("writing the session index: {e}")))?;
        // A launch that is acknowledged is listed after a power cut: the
        // writer syncs the index's new entry with the session's records.
        if let Some(Ok(file)) = self.index.sync_handle() {
            self.log.writer.submit(None, Job::SyncData(file));
        }
        let journal = match &self.root {
            Some(root) => match Journal::create(root.join(&*id)) {
                Ok(journal) => {
                    // The new directory's entry in sessions/, durable.
                    self.log.writer.submit(None, Job::SyncDir(root.clone()));
                    match crate::journal::reserve_exit(journal.dir()) {
                        Ok(file) => {
                            self.log.writer.submit(None, Job::SyncData(file));
                        }
                        Err(e) => log::warn!("session {id}: reserving its final record: {e}"),
                    }
                    Some(journal)
                }
                Err(e) => {
                    let gone = crate::index::Entry {
                        id: id.to_string(),
                        status: None,
                        ..crate::index::Entry::default()
                    };
                    let _ = self.index.write(pos, &gone);
                    return Err(LaunchError::Storage(format!(
                        "creating the session's journal: {e}"
                    )));
                }
            },
            None => None,
        };
        self.count += 1;
        let now = self.log.clock.stamp();
        let entry = self.list.vacant_entry();
        let key = entry.key();
        entry.insert(Session {
            id: id.clone(),
            texts: Texts::new(
                &spec.project_root.display().to_string(),
                &spec.cwd.display().to_string(),
                harness.id.as_str(),
                &spec.title,
            ),
            status: Status::Running,
            exit_code: None,
            created_at: now,
            updated_at: now,
            idx_pos: Some(pos),
            ..Session::new(key, Ring::new(self.limits.ring_bytes), journal)
        });
        self.register(key);
        self.log.save_meta(&self.root, &mut self.list[key]);
        self.record_size(key, spec.cols, spec.rows);

        let started = match exe {
            None => Err(format!(
                "harness {:?}: executable {:?} was not found on PATH",
                harness.id, harness.command
            )),
            Some(exe) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
                let req = SpawnRequest {
                    id: id.to_string(),
                    exe: bytes(&exe),
                    arg0: harness.command.as_bytes().to_vec(),
                    args: harness
                        .argv(&spec.prompt)
                        .into_iter()
                        .map(String::into_bytes)
                        .collect(),
                    cwd: bytes(&spec.cwd),
                    env: harness
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                        .collect(),
                    cols: spec.cols,
                    rows: spec.rows,
                };
                match &mut self.link {
                    Some(link) => link.spawn(req),
                    None => Err("no supervisor to start it".into()),
                }
                .map_err(|e| {
                    format!(
                        "harness {:?}: cannot start {}: {e}",
                        harness.id,
                        exe.display()
                    )
                })
            }
        };
        match started {
            Ok(()) => {
                self.live += 1;
                self.launches.insert(key, Launch::Waiting { wanted: true });
                Ok(key)
            }
            Err(message) => {
                self.spawn_failed(key, &message);
                Err(LaunchError::SpawnFailed { key, message })
            }
        }
    }

    /// Whether a launch's harness has been started: None while the
    /// supervisor has not said, then once `Ok` or the reason it failed.
    pub fn launched(&mut self, key: usize) -> Option<Result<(), String>> {
        match self.launches.get(&key)? {
            Launch::Waiting { .. } => None,
            _ => match self.launches.remove(&key)? {
                Launch::Failed(message) => Some(Err(message)),
                _ => Some(Ok(())),
            },
        }
    }

    /// Nobody waits to hear how this launch went.
    pub fn forget_launch(&mut self, key: usize) {
        match self.launches.get_mut(&key) {
            Some(Launch::Waiting { wanted }) => *wanted = false,
            Some(_) => {
                self.launches.remove(&key);
            }
            None => {}
        }
    }

    /// The supervisor started a launch's harness.
    fn on_spawned(&mut self, id: &str, started: Started) {
        let Some(&key) = self.by_id.get(id) else {
            log::warn!("session {id}: started, but no longer known; stopped");
            pty::signal_group(started.pid, Signal::SIGKILL);
            return;
        };
        let s = &mut self.list[key];
        s.pid = Some(started.pid);
        s.pgid = started.pid;
        s.master = Some(started.master);
        s.slave = started.slave;
        if s.status == Status::Killed {
            // Killed while it was being started: its escalation is armed.
            pty::signal_group(started.pid, Signal::SIGTERM);
        }
        self.by_pid.insert(started.pid, key);
        self.new_masters.push(key);
        self.answered(key, Launch::Started);
    }

    /// The supervisor could not start a launch's harness.
    fn on_spawn_failed(&mut self, id: &str, error: &str) {
        let Some(&key) = self.by_id.get(id) else {
            return;
        };
        let message = format!(
            "harness {:?}: cannot start it: {error}",
            self.list[key].harness()
        );
        self.live -= 1;
        self.spawn_failed(key, &message);
        self.answered(key, Launch::Failed(message));
    }

    /// A launch has its answer: kept for the request that waits for it.
    fn answered(&mut self, key: usize, how: Launch) {
        if let Some(Launch::Waiting { wanted: true }) = self.launches.remove(&key) {
            self.launches.insert(key, how);
        }
        self.log.touched.push(LAUNCH_TOPIC);
    }

    /// A session whose harness could not be started is over, `failed`.
    fn spawn_failed(&mut self, key: usize, message: &str) {
        let s = &mut self.list[key];
        log::warn!("session {}: {message}", s.id);
        s.status = Status::Failed;
        let payload = record::exit_payload("failed", None, Some(message));
        self.record_exit(key, payload);
    }

    /// Readiness on a session's master. A session whose read budget runs
    /// out is queued in `pending` and driven again next turn.
    pub fn on_pty(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(s) = self.list.get_mut(key) else {
            return;
        };
        if s.master.is_none() {
            return;
        }
        s.readable |= readable;
        s.writable |= writable;
        self.pump(key);
    }

    /// Writes queued input and reads output within a budget.
    fn pump(&mut self, key: usize) {
        let s = &mut self.list[key];
        let Some(master) = s.master.as_ref() else {
            return;
        };
        let fd = master.as_raw_fd();
        if s.writable && s.input.is_some() {
            write_input(s, fd);
        }
        let mut buf = [0u8; MAX_OUTPUT_BYTES];
        let mut reads = 0;
        while s.readable && !s.eof {
            if reads == READS_PER_TURN {
                self.pending.push(key);
                return;
            }
            reads += 1;
            let carried = usize::from(s.tail_len);
            buf[..carried].copy_from_slice(&s.tail[..carried]);
            // SAFETY: `fd` is the session's open master for this call.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match pty::read_master(bfd, &mut buf[carried..]) {
                pty::Got::End => s.eof = true,
                pty::Got::Data(n) => {
                    let total = carried + n;
                    let complete = complete_utf8_len(&buf[..total]);
                    s.tail_len = (total - complete) as u8;
                    s.tail[..total - complete].copy_from_slice(&buf[complete..total]);
                    if complete > 0 {
                        let text = String::from_utf8_lossy(&buf[..complete]);
                        s.last_output = Some(Instant::now());
                        self.log
                            .push(s, Kind::Output, record::data_payload(&text), text.len());
                        if s.journal_bytes() > self.limits.journal_bytes_per_session
                            || self.log.journal_bytes > self.limits.journal_bytes_total
                        {
                            self.enforce_retention();
                            return self.pending.push(key);
                        }
                    }
                }
                pty::Got::WouldBlock if s.exit.is_some() && s.slave.is_some() => {
                    // The harness is gone and everything it wrote is read:
                    // let go of the slave (ours and the supervisor's), so
                    // the master reports EOF once no other process holds
                    // the terminal. Read again.
                    s.slave = None;
                    if let Some(link) = &mut self.link {
                        link.release(s.pgid);
                    }
                }
                pty::Got::WouldBlock => s.readable = false,
                pty::Got::Interrupted => {}
                pty::Got::Failed(e) => {
                    log::warn!("session {}: reading the PTY: {e}", s.id);
                    s.eof = true;
                }
            }
        }
        if s.eof && s.exit.is_some() {
            self.finish(key);
        }
    }

    /// Acts on what the supervisor said: harnesses started or not, and
    /// those that ended. If it is gone, launches it was starting fail.
    pub fn on_supervisor(&mut self, now: Instant) {
        let Some(link) = &mut self.link else {
            return;
        };
        for heard in link.heard() {
            match heard {
                Heard::Spawned { id, started } => self.on_spawned(&id, started),
                Heard::SpawnFailed { id, error } => self.on_spawn_failed(&id, &error),
                Heard::Exited { pid, status } => {
                    self.on_exit(pid, ExitStatus::from_raw(status), now)
                }
            }
        }
        if self.supervisor_lost() {
            let waiting: Vec<usize> = self
                .launches
                .iter()
                .filter(|(_, l)| matches!(l, Launch::Waiting { .. }))
                .map(|(&k, _)| k)
                .collect();
            for key in waiting {
                let id = self.list[key].id.clone();
                self.on_spawn_failed(&id, "the daemon's supervisor is gone");
            }
        }
    }

    /// The supervisor is gone: no exit status will come any more.
    pub fn supervisor_lost(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.lost)
    }

    /// The descriptor of the link to the supervisor, for the poller.
    pub fn link_fd(&self) -> Option<RawFd> {
        self.link.as_ref().map(Link::fd)
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
            fds.extend(s.master.as_ref().map(|m| m.as_raw_fd()));
            fds.extend(s.slave.as_ref().map(|m| m.as_raw_fd()));
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
            s.gap_events = c.gap_events;
            s.gap_bytes = c.gap_bytes;
            s.meta_dirty |= c.meta_dirty;
            s.resync |= c.resync;
            s.history_cut |= c.history_cut;
            if c.gap_events > 0 || c.meta_dirty || c.resync {
                self.log.outstanding.push(key);
            }
        }
    }

    /// Tells the supervisor that this server serves.
    pub fn ready(&mut self) {
        if let Some(link) = &mut self.link {
            link.ready();
        }
    }

    /// From now on, harnesses are started by the supervisor at the other
    /// end of `link`.
    pub fn attach_link(&mut self, link: Link) {
        self.link = Some(link);
    }

    /// A harness ended (the supervisor reaped it): its raw wait status.
    fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Instant) {
        let Some(key) = self.by_pid.remove(&pid) else {
            return;
        };
        let s = &mut self.list[key];
        s.exit = Some(status);
        s.pid = None;
        if !s.eof {
            // Trailing output may still be queued in the PTY: read it,
            // and give a lingering holder of the terminal a moment.
            s.readable = true;
            s.set_ending(|e| e.drain_until = Some(now + EXIT_DRAIN));
            self.arm(key);
        }
        self.pump(key);
    }

    /// The session is over: both its exit status and its PTY's EOF are in
    /// (or the drain time ran out).
    fn finish(&mut self, key: usize) {
        let s = &mut self.list[key];
        let Some(info) = s.exit else {
            return;
        };
        if s.tail_len > 0 {
            let tail = String::from_utf8_lossy(&s.tail[..usize::from(s.tail_len)]).into_owned();
            s.tail_len = 0;
            self.log
                .push(s, Kind::Output, record::data_payload(&tail), tail.len());
        }
        s.status = match (s.status, info.code()) {
            (Status::Killed, _) => Status::Killed,
            (_, Some(0)) => Status::Completed,
            _ => Status::Failed,
        };
        s.exit_code = info.code();
        s.master = None;
        if s.slave.take().is_some() || !pty::KEEP_SLAVE {
            // Finished without the slave let go in `pump` (the drain ran
            // out, or no slave is kept here): the supervisor's copies go
            // now.
            if let Some(link) = &mut self.link {
                link.release(s.pgid);
            }
        }
        s.input = None;
        let reason = s.ending.as_mut().and_then(|e| e.reason.take());
        s.set_ending(|e| e.drain_until = None);
        s.updated_at = self.log.clock.stamp();
        let payload = record::exit_payload(s.status.as_str(), Some(info), reason.as_deref());
        self.live -= 1;
        self.arm(key);
        self.record_exit(key, payload);
    }

    /// Records a finished session's `exit` event and closes it out; while
    /// the journal refuses the event, it waits (`pending_exit`) and is
    /// retried, and the session serves its true status from memory.
    fn record_exit(&mut self, key: usize, payload: Box<[u8]>) {
        let s = &mut self.list[key];
        if s.pending_exit.is_none() {
            // First its reserved place, which a full disk does not refuse:
            // the status survives whatever happens to the journal.
            self.log.write_final(s, &payload);
        }
        match self.log.write_durable(s, Kind::Exit, &payload) {
            Some(event) => {
                s.pending_exit = None;
                self.close_out(key);
                // Shown once its record and the final metadata are durable.
                let ticket = self.log.writer.submitted();
                let s = &mut self.list[key];
                if self.log.writer.done() >= ticket {
                    self.log.show(s, event);
                } else {
                    s.unshown = Some(Box::new((ticket, event)));
                    self.awaiting_show.push(key);
                }
            }
            None => {
                s.pending_exit = Some(payload);
                // Its status at least, if the disk takes that.
                self.log.save_meta(&self.root, s);
                self.log.outstanding.push(key);
            }
        }
    }

    /// The writer finished a batch: failed jobs are marked for retry, exit
    /// events now durable are shown, and requests waiting for durability
    /// (`DURABLE_TOPIC`) are woken.
    pub fn on_writer(&mut self) {
        self.absorb_failures();
        self.show_durable();
        self.log.touched.push(DURABLE_TOPIC);
        if self.collect_answers() {
            self.log.touched.push(LAUNCH_TOPIC);
        }
    }

    /// Moves the answers the writer has into `answers`; whether there were
    /// any.
    fn collect_answers(&mut self) -> bool {
        let answers = self.log.writer.take_answers();
        if answers.is_empty() {
            return false;
        }
        let now = Instant::now();
        // An answer nobody took in a minute never will be (a screen
        // dropped while its files were read).
        self.answers
            .retain(|_, (at, _)| now.duration_since(*at) < ANSWER_KEEP);
        for (ticket, answer) in answers {
            if !self.unwanted.remove(&ticket) {
                self.answers.insert(ticket, (now, answer));
            }
        }
        true
    }

    /// Shows the `exit` events whose records the writer has made durable.
    /// Also called before an acknowledgement that finds its work durable
    /// already (the writer may finish before its wake-up is seen), so that
    /// what it acknowledges is visible when the client reads on.
    pub fn show_durable(&mut self) {
        let done = self.log.writer.done();
        for key in std::mem::take(&mut self.awaiting_show) {
            let Some(s) = self.list.get_mut(key) else {
                continue;
            };
            match s.unshown.take() {
                Some(u) if u.0 <= done => self.log.show(s, u.1),
                Some(waiting) => {
                    s.unshown = Some(waiting);
                    self.awaiting_show.push(key);
                }
                None => {}
            }
        }
    }

    /// Marks the sessions whose writes the writer reported failed, for
    /// retry (and so that they are not evicted with their state unsaved).
    /// A failure is reported before its ticket counts as done, so after
    /// this, every done ticket that failed is accounted for.
    pub(super) fn absorb_failures(&mut self) {
        for f in self.log.writer.take_failures() {
            let Some(s) = f.key.and_then(|k| self.list.get_mut(k)) else {
                log::error!("writer: {}", f.error);
                continue;
            };
            log::error!("session {}: a write the disk refused: {}", s.id, f.error);
            s.meta_dirty = true;
            s.resync = true;
            self.log.outstanding.push(s.key);
        }
    }

    /// Moves the writer's work to its own thread, which calls `wake` when a
    /// batch is done (the reactor then calls `on_writer`).
    pub fn start_writer(
        &mut self,
        wake: impl Fn() + Send + 'static,
        delay: Duration,
    ) -> io::Result<()> {
        self.log.writer.spawn(wake, delay)?;
        for dir in std::mem::take(&mut self.leftovers) {
            self.log.writer.submit(None, Job::RemoveTree(dir));
        }
        Ok(())
    }

    /// The writer's newest ticket: what a request has done so far is durable
    /// once `durable_through` reaches it.
    pub fn submitted(&self) -> u64 {
        self.log.writer.submitted()
    }

    pub fn durable_through(&self) -> u64 {
        self.log.writer.done()
    }

    /// Whether the writer failed a job with a ticket in `from + 1 ..= to`.
    pub fn failed_in(&self, from: u64, to: u64) -> bool {
        self.log.writer.failed_in(from, to)
    }

    /// Retries what the disk refused: each outstanding session's gap
    /// marker, exit event and metadata. Runs on its own timer, once a
    /// second while anything is outstanding.
    fn retry_storage(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.log.outstanding);
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let Some(s) = self.list.get_mut(key) else {
                continue;
            };
            if let Some(payload) = s.pending_exit.clone() {
                self.record_exit(key, payload);
            } else {
                self.log.declare_gap(s);
                if s.gap_events > 0 {
                    self.log.outstanding.push(key);
                }
            }
            let s = &mut self.list[key];
            if s.meta_dirty {
                self.log.save_meta(&self.root, s);
            }
            if s.resync {
                self.log.sync_journal(s);
            }
        }
        self.storage_retry_at = (!self.log.outstanding.is_empty()).then(|| now + STORAGE_RETRY);
    }

    /// The state of the disk the journals are on, for health: `critical`
    /// while writes fail, `degraded` while refused writes are still being
    /// made good, `warning` under the free-space floor, else `ok`; and the
    /// free bytes (None without a home on disk).
    pub fn storage(&self) -> (&'static str, Option<u64>) {
        // statvfs costs a system call: at most one a second, however many
        // health requests come.
        let now = Instant::now();
        let free = match self.free_disk.get() {
            Some((at, free)) if now.duration_since(at) < Duration::from_secs(1) => free,
            _ => {
                let free = self.root.as_deref().and_then(crate::sys::free_disk_bytes);
                self.free_disk.set(Some((now, free)));
                free
            }
        };
        let status =
            if self.log.append_failed || self.log.writer.failing() || self.log.writer.is_gone() {
                "critical"
            } else if !self.log.outstanding.is_empty() {
                "degraded"
            } else if free.is_some_and(|f| f < self.limits.storage_warning_bytes) {
                "warning"
            } else {
                "ok"
            };
        (status, free)
    }

    /// A session is over: its metadata is saved durably, its journal
    /// closed, and its in-memory events released (they are on disk).
    fn close_out(&mut self, key: usize) {
        self.mark_finished(key);
        let s = &mut self.list[key];
        self.log.save_meta(&self.root, s);
        if let Some(j) = &mut s.journal {
            j.close();
            if let Some(last) = s.ring.last_seq() {
                self.log.ring_bytes -= s.ring.release_through(last);
            }
        }
        self.write_entry(key);
        if self.root.is_some() {
            // Out of memory once nothing uses it (`evict`).
            self.evictable.push(key);
        }
        self.enforce_retention();
    }

    /// Queues input for the PTY and records it.
    pub fn input(&mut self, key: usize, data: &str) -> Result<(), Refusal> {
        let limit = self.limits.input_queue_bytes;
        let s = &mut self.list[key];
        if s.status != Status::Running || s.master.is_none() {
            return Err(Refusal::NotLive);
        }
        let queued = s.input.as_ref().map_or(0, |q| q.bytes.len() - q.written);
        if queued + data.len() > limit {
            return Err(Refusal::QueueFull { limit });
        }
        s.input
            .get_or_insert_with(Box::default)
            .bytes
            .extend_from_slice(data.as_bytes());
        self.log
            .push(s, Kind::Input, record::data_payload(data), data.len());
        if let Some(fd) = s.master.as_ref().map(|m| m.as_raw_fd()) {
            s.writable = true;
            write_input(s, fd);
        }
        Ok(())
    }

    /// Accepts a kill: records it, signals the process group, and arms the
    /// escalation to SIGKILL.
    pub fn kill(
        &mut self,
        key: usize,
        signal: Signal,
        grace: Duration,
        now: Instant,
    ) -> Result<(), Refusal> {
        let s = &mut self.list[key];
        if s.status != Status::Running {
            return Err(Refusal::NotLive);
        }
        s.status = Status::Killed;
        s.updated_at = self.log.clock.stamp();
        self.log.push(s, Kind::Kill, record::kill_payload(), 0);
        self.log.save_meta(&self.root, s);
        let pgid = s.pgid;
        self.write_entry(key);
        let s = &mut self.list[key];
        pty::signal_group(pgid, signal);
        if signal != Signal::SIGKILL {
            s.set_ending(|e| e.escalate_at = Some(now + grace));
            self.arm(key);
        }
        Ok(())
    }

    pub fn resize(&mut self, key: usize, cols: u16, rows: u16) -> Result<(), Refusal> {
        let s = &mut self.list[key];
        match (&s.master, s.status) {
            (Some(master), Status::Running) => pty::resize(master, cols, rows).map_err(|e| {
                log::warn!("session {}: resize: {e}", s.id);
                Refusal::NotLive
            })?,
            _ => return Err(Refusal::NotLive),
        }
        self.record_size(key, cols, rows);
        Ok(())
    }

    /// Notes the session's terminal size from now on (`journal::append_size`).
    fn record_size(&mut self, key: usize, cols: u16, rows: u16) {
        let s = &self.list[key];
        let Some(dir) = s.dir() else {
            return;
        };
        let size = crate::journal::Size {
            after: s.last_seq(),
            unix_ms: self.log.clock.unix_ms(),
            cols,
            rows,
        };
        if let Err(e) = crate::journal::append_size(dir, size) {
            log::warn!("session {}: recording its size: {e}", s.id);
        }
    }

    /// The poller refused a session's terminal: nothing would ever read it.
    /// The session is killed, and its exit event says why.
    pub fn unwatchable(&mut self, key: usize, error: &io::Error, now: Instant) {
        let Some(s) = self.list.get_mut(key) else {
            return;
        };
        let reason = format!("the daemon could not watch its terminal: {error}");
        log::error!("session {}: {reason}; killing it", s.id);
        s.set_ending(|e| e.reason = Some(reason.into()));
        let _ = self.kill(key, Signal::SIGKILL, Duration::ZERO, now);
        // Its output is read once it exits (the supervisor says so), and
        // it finishes when the drain time runs out.
    }

    /// Daemon shutdown: kill every running session with the default grace.
    pub fn kill_all(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .list
            .iter()
            .filter(|(_, s)| s.status == Status::Running)
            .map(|(k, _)| k)
            .collect();
        let grace = self.limits.kill_grace;
        for key in keys {
            let _ = self.kill(key, Signal::SIGTERM, grace, now);
        }
    }

    fn arm(&mut self, key: usize) {
        let s = &mut self.list[key];
        let want = s.deadline();
        if s.armed == want {
            return;
        }
        if let Some(t) = s.armed.take() {
            self.timers.remove(&(t, key));
        }
        if let Some(t) = want {
            self.timers.insert((t, key));
            s.armed = Some(t);
        }
    }

    pub fn on_timers(&mut self, now: Instant) {
        if !self.log.outstanding.is_empty() && self.storage_retry_at.is_none() {
            self.storage_retry_at = Some(now + STORAGE_RETRY);
        }
        if self.storage_retry_at.is_some_and(|t| t <= now) {
            self.retry_storage(now);
        }
        if self.retention_at.is_some_and(|t| t <= now) {
            self.retention_step(now);
        }
        if self.bytes_at.is_some_and(|t| t <= now) {
            self.enforce_retention();
        }
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                return;
            }
            self.timers.pop_first();
            let s = &mut self.list[key];
            s.armed = None;
            let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
            if due(s.ending.as_ref().and_then(|e| e.escalate_at)) {
                s.set_ending(|e| e.escalate_at = None);
                pty::signal_group(s.pgid, Signal::SIGKILL);
            }
            if due(s.ending.as_ref().and_then(|e| e.drain_until)) {
                s.set_ending(|e| e.drain_until = None);
                log::debug!(
                    "session {}: no EOF {} s after its exit (the terminal is still held); finishing",
                    s.id,
                    EXIT_DRAIN.as_secs()
                );
                // Read what is there without waiting for EOF any longer.
                s.readable = true;
                self.pump(key);
                if self.list[key].master.is_some() {
                    self.finish(key);
                }
            }
            self.arm(key);
        }
    }

    /// Drives sessions that yielded.
    pub fn on_pending(&mut self, now: Instant) {
        if self.link.as_ref().is_some_and(Link::has_pending) {
            self.on_supervisor(now);
        }
        for key in self.take_pending() {
            self.pump(key);
        }
    }
}

/// Deadlines of a session that is ending.
#[derive(Default)]
struct Ending {
    /// When a kill escalates to SIGKILL.
    escalate_at: Option<Instant>,
    /// When to stop waiting for EOF after the exit.
    drain_until: Option<Instant>,
    /// Why the daemon ended it, for its exit event's `error`.
    reason: Option<Box<str>>,
}

/// Input queued for a session's PTY.
#[derive(Default)]
struct InputQueue {
    bytes: Vec<u8>,
    /// Bytes of `bytes` already written.
    written: usize,
}

/// Writes queued input until done (the queue goes) or the PTY is full.
fn write_input(s: &mut Session, fd: RawFd) {
    let Some(q) = s.input.as_mut() else {
        return;
    };
    while q.written < q.bytes.len() {
        // SAFETY: `fd` is the session's open master for this call's duration.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match pty::write_master(bfd, &q.bytes[q.written..]) {
            pty::Got::Data(n) => q.written += n,
            pty::Got::WouldBlock => {
                s.writable = false;
                return;
            }
            pty::Got::Interrupted => {}
            pty::Got::End => {
                // Nobody reads the terminal any more: the input goes.
                log::debug!("session {}: writing input: the terminal is closed", s.id);
                q.written = q.bytes.len();
            }
            pty::Got::Failed(e) => {
                log::debug!("session {}: writing input: {e}", s.id);
                q.written = q.bytes.len();
            }
        }
    }
    s.input = None;
}

/// Session ids as this daemon makes them (and real clients accept).
pub fn valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Length of the longest prefix of `buf` that does not end inside a UTF-8
/// sequence still waiting for its continuation bytes.
pub fn complete_utf8_len(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=n.min(3) {
        let b = buf[n - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let need = match b {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if need > back { n - back } else { n };
    }
    n
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
