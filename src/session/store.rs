//! Sessions on disk: the index of every session (`crate::index`), loading
//! a finished session on demand and letting it go again, the list's pages,
//! archive and delete, and retention (by total journal bytes, and by age).
//!
//! Memory follows live sessions: a finished session is in the slab only
//! while a request or a held connection uses it (`Sessions::evict` lets it
//! go at the end of the loop turn). Everything about the others is read
//! from the index (64 bytes each) or their `meta.json` when asked for.
//! Without a home on disk (tests, benches) the index lives in memory and
//! finished sessions stay in the slab, since nothing could reload them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use std::collections::HashMap;

use super::eventlog::History;
use super::process::Process;
use super::record;
use super::{stamp_str, valid_session_id, Session, Sessions, Status};
use crate::index::{Entry, Index, CHUNK_ENTRIES, MAX_ID_BYTES};
use crate::journal::{self, Journal};
use crate::ring::Ring;
use crate::supervisor::link::HeldSession;
use crate::sys::process::ExitStatus;
use crate::writer::Job;

/// A list request reads at most this many index entries (4 MiB); a page cut
/// short by it still carries a cursor to go on from.
const MAX_SCAN_ENTRIES: u64 = 64 * 1024;
/// Finished sessions kept loaded after use, and for how long
/// (`Sessions::recent`).
const KEEP_RECENT: usize = 16;
const RECENT_FOR: Duration = Duration::from_secs(1);

/// Unix seconds of an RFC 3339 stamp (at least 1, so 0 can mean "not yet").
pub(super) fn unix_secs(stamp: &[u8; 20]) -> u64 {
    humantime::parse_rfc3339(stamp_str(stamp))
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(1, |d| d.as_secs().max(1))
}

/// One session of a list page: its record, and its pid while it runs.
pub struct Listed {
    pub meta: record::SessionMeta,
    pub pid: Option<i32>,
}

/// A list page: the sessions, and the id to go on after when there may be
/// more.
pub struct Page {
    pub sessions: Vec<Listed>,
    pub next_after: Option<String>,
}

impl Status {
    /// The number the index stores.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl Sessions {
    /// The index entry that says what `s` is now.
    pub(super) fn entry_of(s: &Session) -> Entry {
        Entry {
            id: s.id.to_string(),
            status: Some(s.status.code()),
            archived: s.archived_at.is_some(),
            last_seq: s.last_seq(),
            finished_secs: s.finished_secs,
            journal_bytes: s.journal_bytes(),
        }
    }

    /// Brings the session's index entry up to date. A failed write is
    /// logged: the index is a cache, rebuilt from the sessions' own files
    /// when it is found wrong at start.
    pub(super) fn write_entry(&mut self, key: usize) {
        let Some(pos) = self.position(key) else {
            return;
        };
        let entry = Self::entry_of(&self.list[key]);
        if let Err(e) = self.index.write(pos, &entry) {
            log::error!("session {}: updating the session index: {e}", entry.id);
        }
    }

    /// The session's position in the index (looked up once for a session
    /// loaded from disk).
    pub(super) fn position(&mut self, key: usize) -> Option<u64> {
        let s = &mut self.list[key];
        if s.idx_pos.is_none() {
            s.idx_pos = self.index.find(&s.id).ok().flatten().map(|(pos, _)| pos);
        }
        s.idx_pos
    }

    /// Loads every session recorded under `root` (`<home>/sessions`) that
    /// had not finished when the previous server stopped: those the
    /// supervisor still holds (`held`, their harnesses alive or ended while
    /// no server ran) are taken up again; the others become `orphaned`.
    /// Counts the rest from the index, and keeps journaling there from now
    /// on. The index is rebuilt from the session directories when it is
    /// missing or damaged. Nothing here fails the start but an unusable
    /// `root`.
    pub fn load(&mut self, root: PathBuf, held: Vec<HeldSession>) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        // Deleted sessions' directories a crash left on their way out: the
        // writer removes them once it runs.
        let deleted = deleted_dir(&root);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&deleted)?;
        self.leftovers = std::fs::read_dir(&deleted)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        self.root = Some(root.clone());
        let path = index_path(&root);
        let summary = match Index::open(&path).and_then(|i| summarize(&i).map(|s| (i, s))) {
            Ok((index, Some(summary))) => {
                self.index = index;
                summary
            }
            Ok((_, None)) | Err(_) => {
                if path.exists() {
                    log::warn!("{}: damaged; rebuilding it", path.display());
                } else {
                    log::info!("building the session index {}", path.display());
                }
                self.index = self.rebuild_index(&root, &path)?;
                summarize(&self.index)?
                    .ok_or_else(|| io::Error::other("rebuilt index unreadable"))?
            }
        };
        self.count = summary.count;
        self.log.journal_bytes = summary.journal_bytes;
        self.last_id = summary.last_id.into_boxed_str();
        let mut max_seq = summary.max_seq;
        let mut held: HashMap<String, HeldSession> =
            held.into_iter().map(|h| (h.id.clone(), h)).collect();
        let now = Instant::now();
        // Sessions that had not finished: their harness still runs (the
        // supervisor holds it), or the daemon died with it. Their files say
        // how far they got.
        self.starting = true;
        for (pos, entry) in summary.unfinished {
            let Some(key) = self.find(&entry.id) else {
                log::warn!(
                    "session {}: in the index but not on disk; dropped",
                    entry.id
                );
                let _ = self.index.write(
                    pos,
                    &Entry {
                        status: None,
                        ..entry.clone()
                    },
                );
                self.count -= 1;
                self.log.journal_bytes -= entry.journal_bytes;
                continue;
            };
            let s = &mut self.list[key];
            s.idx_pos = Some(pos);
            max_seq = max_seq.max(s.last_seq());
            self.log.journal_bytes =
                self.log.journal_bytes - entry.journal_bytes + s.journal_bytes();
            // Recorded as running (or killed, and not yet ended).
            let unended = s.finished_secs == 0 || s.status == Status::Killed;
            match held.remove(&entry.id) {
                Some(h) if unended => {
                    self.adopt(key, h, now);
                    continue;
                }
                Some(h) => self.let_go(&h),
                None => {}
            }
            if self.list[key].finished_secs == 0 {
                // It was running, and nothing holds it now.
                self.recover_end(key);
            }
            self.mark_finished(key);
            self.write_entry(key);
        }
        self.starting = false;
        // What the supervisor holds that no record names (a session whose
        // end was recorded just before a crash): let go of it.
        for h in held.into_values() {
            self.let_go(&h);
        }
        self.log.next_seq = self.log.next_seq.max(max_seq + 1);
        self.evict(|_| false);
        // An age pass at once: sessions may have aged while we were down.
        self.retention_at = Some(Instant::now());
        self.enforce_retention();
        Ok(())
    }

    /// Takes up a session the supervisor kept running while no server
    /// ran: its terminal, its process, its exit status if it ended; a kill
    /// that was under way escalates after a fresh grace.
    fn adopt(&mut self, key: usize, h: HeldSession, now: Instant) {
        let grace = self.limits.kill_grace;
        let s = &mut self.list[key];
        if s.status == Status::Orphaned {
            s.status = Status::Running;
        }
        s.finished_secs = 0;
        s.proc.pid = Some(h.pid);
        s.proc.pgid = h.pid;
        s.proc.master = Some(h.master);
        // Where a slave is kept, one no longer held was let go already
        // (the supervisor was told): not twice, its pid may be another's
        // by then.
        s.proc.released = crate::sys::pty::KEEP_SLAVE && h.slave.is_none();
        s.proc.slave = h.slave;
        s.proc.eof = false;
        s.proc.readable = true;
        s.proc.writable = true;
        log::info!("session {}: taken up again (pid {})", s.id, h.pid);
        match h.carried {
            Some(c) => s.restore_live(&c, now),
            // A kill under way when the server died: it escalates after a
            // fresh grace.
            None if s.status == Status::Killed => {
                s.set_ending(|e| e.escalate_at = Some(now + grace));
            }
            None => {}
        }
        self.by_pid.insert(h.pid, key);
        self.live += 1;
        self.new_masters.push(key);
        self.arm(key);
        if let Some(status) = h.status {
            self.on_exit(h.pid, ExitStatus::from_raw(status), now);
        }
    }

    /// A session recorded as running that nothing holds any more: its
    /// final record says how it ended (the journal's `exit` event, or the
    /// one written into its reserved place when the journal could not take
    /// it, which is then written again as soon as the disk allows), or
    /// nothing does and it is `orphaned`.
    fn recover_end(&mut self, key: usize) {
        let stamp = self.log.clock.stamp();
        let s = &mut self.list[key];
        let in_journal = s
            .history
            .journal
            .as_mut()
            .and_then(|j| {
                let last = j.last_seq()?;
                j.read(last.saturating_sub(1), last + 1, 1, usize::MAX)
                    .ok()?
                    .pop()
            })
            .filter(|e| e.kind == crate::ring::Kind::Exit);
        let (mut records, written) = match in_journal {
            Some(e) => (vec![e], true),
            None => (s.dir().map(journal::read_exit).unwrap_or_default(), false),
        };
        let exit = records.pop();
        let ended = exit.as_ref().and_then(|e| {
            let (status, code) = record::exit_status_of(&e.payload)?;
            Some((Status::parse(&status)?, code))
        });
        s.updated_at = stamp;
        match (ended, exit) {
            (Some((status, code)), Some(e)) if status != Status::Running => {
                log::info!(
                    "session {}: ended ({}) while no server ran",
                    s.id,
                    status.as_str()
                );
                s.status = status;
                s.exit_code = code;
                if !written {
                    // Its last records go into the journal as soon as the
                    // disk takes them: the gap's marker, then the exit.
                    if let Some((events, bytes)) = records
                        .first()
                        .and_then(|g| record::truncated_of(&g.payload))
                    {
                        s.history.gap_events = events;
                        s.history.gap_bytes = bytes;
                    }
                    s.history.pending_exit = Some(e.payload);
                    self.log.outstanding.push(key);
                }
            }
            _ => s.status = Status::Orphaned,
        }
        self.log.save_meta(&self.root, s);
    }

    /// The supervisor holds a session that is over here: it lets go.
    fn let_go(&mut self, h: &HeldSession) {
        log::info!("session {}: already over; released", h.id);
        if let Some(link) = &mut self.link {
            link.release(h.pid);
        }
    }

    /// Rebuilds the index from the session directories (each one's
    /// `meta.json` and journal), in id order.
    fn rebuild_index(&mut self, root: &Path, path: &Path) -> io::Result<Index> {
        let started = Instant::now();
        let mut entries = Vec::new();
        for dir in std::fs::read_dir(root)? {
            let Ok(dir) = dir else { continue };
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = dir.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() > MAX_ID_BYTES {
                log::warn!(
                    "{}: id too long for the index; skipped",
                    dir.path().display()
                );
                continue;
            }
            match self.load_dir(&dir.path()) {
                Ok(key) => {
                    // One still recorded as running has `finished_secs`
                    // 0: the start finds it.
                    entries.push(Self::entry_of(&self.list[key]));
                    self.unload(key);
                }
                Err(e) => log::warn!("{}: skipped: {e}", dir.path().display()),
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries.dedup_by(|a, b| a.id == b.id);
        log::info!(
            "session index rebuilt: {} session(s) in {} ms",
            entries.len(),
            started.elapsed().as_millis()
        );
        Index::create(path, &entries)
    }

    /// Reads one session directory into the slab (not live: no process,
    /// nothing more will be read from a PTY). Sessions recorded as running
    /// come back `orphaned` with `finished_secs` 0, for the start to adopt
    /// or stamp.
    pub(super) fn load_dir(&mut self, dir: &Path) -> Result<usize, String> {
        let meta = journal::read_meta(dir).map_err(|e| format!("meta.json: {e}"))?;
        let meta = record::decode_meta(&meta).map_err(|e| format!("meta.json: {e}"))?;
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if meta.id != name || !valid_session_id(&meta.id) || self.by_id.contains_key(name) {
            return Err(format!("meta.json names session {:?}", meta.id));
        }
        let stamp = |t: &str| -> Result<[u8; 20], String> {
            t.as_bytes()
                .try_into()
                .map_err(|_| format!("bad timestamp {t:?}"))
        };
        let created_at = stamp(&meta.created_at)?;
        let updated_at = stamp(&meta.updated_at)?;
        let archived_at = match &meta.archived_at {
            Some(t) => Some(stamp(t)?),
            None => None,
        };
        let status = match Status::parse(&meta.status) {
            Some(Status::Running) => Status::Orphaned,
            Some(status) => status,
            None => return Err(format!("unknown status {:?}", meta.status)),
        };
        let journal = match Journal::open(dir.to_owned()) {
            Ok((journal, warnings, cut)) => {
                for w in warnings {
                    log::warn!("{w}");
                }
                for file in cut {
                    self.log.writer.submit(None, Job::SyncData(file));
                }
                Some(journal)
            }
            Err(e) => {
                log::warn!(
                    "{}: journal unreadable ({e}); its events are unavailable",
                    dir.display()
                );
                None
            }
        };
        let last_seq = journal
            .as_ref()
            .and_then(Journal::last_seq)
            .unwrap_or(0)
            .max(meta.last_seq);
        let mut ring = Ring::new(self.limits.ring_bytes);
        ring.release_through(last_seq);
        let finished_secs = if meta.status == "running" {
            0
        } else {
            unix_secs(&updated_at)
        };
        let key = self.list.vacant_key();
        self.list.insert(Session {
            id: meta.id.clone().into_boxed_str(),
            archived_at,
            finished_secs,
            texts: super::Texts::new(&meta.project_root, &meta.cwd, &meta.harness, &meta.title),
            status,
            exit_code: meta.exit_code,
            created_at,
            updated_at,

            // Loaded sessions have no process: nothing more will be read.
            proc: Process {
                eof: true,
                ..Process::default()
            },
            history: History {
                first_seq: journal.as_ref().and_then(Journal::first_seq).unwrap_or(0),
                history_cut: meta.history_cut,
                ..History::new(ring, journal)
            },
            ..Session::new(key, Ring::new(0), None)
        });
        self.register(key);
        Ok(key)
    }

    /// A session by id: in memory, or (with a home on disk) loaded from its
    /// directory for as long as it is used.
    pub fn find(&mut self, id: &str) -> Option<usize> {
        if let Some(&key) = self.by_id.get(id) {
            // Only a session loaded from disk is kept for reuse: one that
            // finished in memory goes as before, and comes back from disk
            // in the same state as any other.
            if self.recent.iter().any(|&(k, _)| k == key) {
                self.used(key);
            }
            return Some(key);
        }
        let root = self.root.as_ref()?;
        if !valid_session_id(id) || id == "." || id == ".." || id.len() > MAX_ID_BYTES {
            return None;
        }
        let dir = root.join(id);
        if !dir.join("meta.json").exists() {
            return None;
        }
        match self.load_dir(&dir) {
            Ok(key) => {
                self.evictable.push(key);
                self.used(key);
                if self.list[key].finished_secs == 0 && !self.starting {
                    // Its record still says running, though the index
                    // says it ended (its last metadata write was refused):
                    // its final record says how.
                    self.recover_end(key);
                    self.mark_finished(key);
                }
                Some(key)
            }
            Err(e) => {
                log::warn!("{}: cannot load: {e}", dir.display());
                None
            }
        }
    }

    /// Marks a finished session as just asked for (`recent`).
    fn used(&mut self, key: usize) {
        self.recent.retain(|&(k, _)| k != key);
        self.recent.push_back((key, Instant::now()));
        if self.recent.len() > KEEP_RECENT {
            self.recent.pop_front();
        }
    }

    /// Lets the recently used finished sessions go at the next `evict`.
    pub fn forget_recent(&mut self) {
        self.recent = std::collections::VecDeque::new();
        self.read_buf = Vec::new();
        self.reader = crate::journal::Reader::default();
    }

    /// Takes a session out of memory (its files stay).
    pub(super) fn unload(&mut self, key: usize) {
        self.recent.retain(|&(k, _)| k != key);
        let s = self.list.remove(key);
        self.by_id.remove(&s.id);
        self.log.ring_bytes -= s.history.ring.bytes();
    }

    /// Lets finished sessions go that nothing uses any more: not live, no
    /// timer pending, and not held by a connection (`held`). Only with a
    /// home on disk, from which they can be loaded again.
    pub fn evict(&mut self, held: impl Fn(usize) -> bool) {
        if self.root.is_none() {
            self.evictable.clear();
            return;
        }
        // A write that failed since the writer last woke us must mark its
        // session unsaved before the session is judged.
        self.absorb_failures();
        if let Some(&(_, oldest)) = self.recent.front() {
            if oldest.elapsed() >= RECENT_FOR {
                let now = Instant::now();
                self.recent.retain(|&(_, t)| now < t + RECENT_FOR);
            }
        }
        let mut keep = Vec::new();
        for key in std::mem::take(&mut self.evictable) {
            let Some(s) = self.list.get(key) else {
                continue;
            };
            let unsaved = s.meta_dirty
                || s.history.pending_exit.is_some()
                || s.history.gap_events > 0
                || s.history.resync
                || s.history.unshown.is_some()
                || s.meta_ticket > self.log.writer.done();
            let recent = self.recent.iter().any(|&(k, _)| k == key);
            if s.is_live()
                || s.armed.is_some()
                || s.history.touched
                || unsaved
                || recent
                || held(key)
            {
                keep.push(key);
            } else {
                self.unload(key);
            }
        }
        keep.sort_unstable();
        keep.dedup();
        self.evictable = keep;
    }

    /// Sessions (deleted ones aside).
    pub fn count(&self) -> usize {
        self.count
    }

    /// One page of the list, newest first: up to `limit` sessions whose
    /// index entry `keep` accepts, created before the session `after` (an
    /// id a client was given as a cursor; it need not exist any more).
    pub fn page(
        &mut self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> io::Result<Page> {
        let mut end = match after {
            Some(id) => self.index.lower_bound(id)?,
            None => self.index.len(),
        };
        let mut found: Vec<Entry> = Vec::new();
        let mut scanned = 0u64;
        let mut next_after = None;
        'scan: while end > 0 {
            let start = end.saturating_sub(CHUNK_ENTRIES as u64);
            let chunk = self.index.read_range(start, end)?;
            for (i, entry) in chunk.into_iter().enumerate().rev() {
                let pos = start + i as u64;
                scanned += 1;
                let Some(entry) = entry.filter(|e| !e.is_deleted()) else {
                    continue;
                };
                if !keep(&entry) {
                    if scanned >= MAX_SCAN_ENTRIES {
                        next_after = Some(entry.id);
                        break 'scan;
                    }
                    continue;
                }
                if found.len() == limit {
                    next_after = found.last().map(|e| e.id.clone());
                    break 'scan;
                }
                found.push(entry);
                if scanned >= MAX_SCAN_ENTRIES && pos > 0 {
                    next_after = found.last().map(|e| e.id.clone());
                    break 'scan;
                }
            }
            end = start;
        }
        let mut sessions = Vec::with_capacity(found.len());
        for entry in &found {
            if let Some(&key) = self.by_id.get(entry.id.as_str()) {
                let s = &self.list[key];
                sessions.push(Listed {
                    meta: s.meta(),
                    pid: s.proc.pid,
                });
                continue;
            }
            let Some(root) = &self.root else { continue };
            match journal::read_meta(&root.join(&entry.id)).map(|m| record::decode_meta(&m)) {
                Ok(Ok(mut meta)) => {
                    if meta.status == "running" {
                        meta.status = Status::Orphaned.as_str().to_owned();
                    }
                    sessions.push(Listed { meta, pid: None })
                }
                Ok(Err(e)) => log::warn!("session {}: meta.json: {e}", entry.id),
                Err(e) => log::warn!("session {}: meta.json: {e}", entry.id),
            }
        }
        Ok(Page {
            sessions,
            next_after,
        })
    }
}

/// `<home>/sessions.idx` beside `<home>/sessions`.
fn index_path(root: &Path) -> PathBuf {
    root.with_file_name("sessions.idx")
}

/// `<home>/deleted` beside `<home>/sessions`: deleted sessions' directories
/// on their way out (the writer removes them).
pub(super) fn deleted_dir(root: &Path) -> PathBuf {
    root.with_file_name("deleted")
}

/// What a start needs from the index, read in one pass.
struct Summary {
    count: usize,
    journal_bytes: u64,
    max_seq: u64,
    last_id: String,
    /// Entries of sessions that had not finished.
    unfinished: Vec<(u64, Entry)>,
}

/// One pass over the index; `None` if an entry is damaged or out of order
/// (the index is rebuilt then).
fn summarize(index: &Index) -> io::Result<Option<Summary>> {
    let mut s = Summary {
        count: 0,
        journal_bytes: 0,
        max_seq: 0,
        last_id: String::new(),
        unfinished: Vec::new(),
    };
    let mut pos = 0;
    while pos < index.len() {
        let chunk = index.read_range(pos, pos + CHUNK_ENTRIES as u64 * 16)?;
        for entry in chunk {
            let Some(entry) = entry else {
                return Ok(None);
            };
            if entry.id <= s.last_id {
                return Ok(None);
            }
            s.last_id.clone_from(&entry.id);
            if !entry.is_deleted() {
                s.count += 1;
                s.journal_bytes += entry.journal_bytes;
                s.max_seq = s.max_seq.max(entry.last_seq);
                if entry.finished_secs == 0 {
                    s.unfinished.push((pos, entry));
                }
            }
            pos += 1;
        }
    }
    Ok(Some(s))
}
