//! A session's event log: sequence numbers, the clock, the ring of recent
//! events, the journal behind it, gap accounting when the disk refuses
//! (`output_truncated`), and durability through the writer's tickets (an
//! acknowledgement waits for its ticket; an `exit` event is shown once
//! durable). Also the writer's other answers (`Job::Task`) and retries of
//! what the disk refused.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

/// The daemon-wide event sequence and accounting, apart from the session
/// list so both can be borrowed at once.
/// A session's events: the newest in memory (`ring`), all of them on disk
/// (`journal`), and what the disk refused (gaps to declare, an exit event
/// or a sync to retry, an exit event waiting for its ticket).
pub struct History {
    /// Events the journal refused since the last `output_truncated`, and
    /// their PTY or input bytes.
    pub(super) gap_events: u64,
    pub(super) gap_bytes: u64,
    /// The `exit` event's payload, while the journal refuses it: the
    /// session is over (its status says so) but not yet closed out.
    pub(super) pending_exit: Option<Box<[u8]>>,
    /// Its journal's lifecycle records need syncing again (a refused sync).
    pub(super) resync: bool,
    /// The `exit` event, written but waiting for the writer's ticket to be
    /// durable before anyone is shown it.
    pub(super) unshown: Option<Box<(u64, Event)>>,
    /// Seq of this session's first event.
    pub first_seq: u64,
    pub ring: Ring,
    /// Where its events are durable (None: memory only).
    pub(super) journal: Option<Journal>,
    /// Retention removed the oldest part of its history.
    pub(super) history_cut: bool,
    /// It has new events since the reactor last looked.
    pub(super) touched: bool,
}

impl History {
    pub(super) fn new(ring: Ring, journal: Option<Journal>) -> History {
        History {
            gap_events: 0,
            gap_bytes: 0,
            pending_exit: None,
            resync: false,
            unshown: None,
            first_seq: 0,
            ring,
            journal,
            history_cut: false,
            touched: false,
        }
    }
}

pub(super) struct Log {
    pub(super) next_seq: u64,
    pub(super) clock: Clock,
    pub(super) ring_bytes: usize,
    pub(super) journal_bytes: u64,
    /// Sessions with new events, for waking held requests.
    pub(super) touched: Vec<usize>,
    /// The last journal append failed.
    pub(super) append_failed: bool,
    /// Everything that waits on the disk: fsyncs and metadata writes.
    pub(super) writer: Writer,
    /// Sessions with a write to retry: a gap to declare, an exit event or
    /// metadata the disk refused (may repeat; `retry_storage` sorts it).
    pub(super) outstanding: Vec<usize>,
}

impl Log {
    /// The event that would be recorded next (its seq is taken only once
    /// the caller records it: `next_seq += 1`).
    pub(super) fn next_event(&mut self, kind: Kind, payload: Box<[u8]>) -> Event {
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
    pub(super) fn push(
        &mut self,
        s: &mut Session,
        kind: Kind,
        payload: Box<[u8]>,
        data_bytes: usize,
    ) -> bool {
        let event = self.next_event(kind, payload);
        self.next_seq += 1;
        // Inside a gap nothing is appended: the retry timer declares it (so
        // a full disk costs one `output_truncated` a second at most, not
        // one per event that happened to fit between two that did not).
        let durable = s.history.gap_events == 0 && self.append(s, &event);
        if !durable {
            s.history.gap_events += 1;
            s.history.gap_bytes += data_bytes as u64;
            self.outstanding.push(s.key);
        }
        self.show(s, event);
        durable
    }

    /// Writes an event to the journal only if it takes it (the `exit`
    /// event, whose place in the history must not be lost), without showing
    /// it yet: the caller shows it once the writer has made it durable.
    /// `None`, and nothing recorded, if the journal refuses it.
    pub(super) fn write_durable(
        &mut self,
        s: &mut Session,
        kind: Kind,
        payload: &[u8],
    ) -> Option<Event> {
        self.declare_gap(s);
        if s.history.gap_events > 0 {
            return None;
        }
        let event = self.next_event(kind, payload.into());
        if !self.append(s, &event) {
            return None;
        }
        self.next_seq += 1;
        if s.history.first_seq == 0 {
            s.history.first_seq = event.seq;
        }
        Some(event)
    }

    /// Writes the session's last records into the place it reserved for
    /// them at launch (`journal::write_exit`): the marker of a gap not yet
    /// declared, and the `exit` event; the writer makes them durable with
    /// the rest of the ending. Their seqs are not taken: the journal's
    /// records, when they can be written, get their own.
    pub(super) fn write_final(&mut self, s: &mut Session, payload: &[u8]) {
        let Some(dir) = s.dir() else {
            return;
        };
        let mut events = Vec::with_capacity(2);
        if s.history.gap_events > 0 {
            let gap = record::truncated_payload(s.history.gap_events, s.history.gap_bytes);
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
    pub(super) fn declare_gap(&mut self, s: &mut Session) {
        if s.history.gap_events == 0 {
            return;
        }
        let payload = record::truncated_payload(s.history.gap_events, s.history.gap_bytes);
        let event = self.next_event(Kind::OutputTruncated, payload);
        if self.append(s, &event) {
            log::warn!(
                "session {}: {} event(s), {} byte(s) of output could not be kept; recorded as output_truncated",
                s.id,
                s.history.gap_events,
                s.history.gap_bytes
            );
            self.next_seq += 1;
            s.history.gap_events = 0;
            s.history.gap_bytes = 0;
            self.show(s, event);
        }
    }

    /// Appends to the session's journal, if it has one; records whether
    /// the disk took it. Lifecycle records (kill, exit) are then made
    /// durable by the writer; output is left to the page cache (it
    /// survives a daemon crash, not a power loss).
    pub(super) fn append(&mut self, s: &mut Session, event: &Event) -> bool {
        let Some(journal) = &mut s.history.journal else {
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
    pub(super) fn sync_journal(&mut self, s: &mut Session) {
        let Some(journal) = &mut s.history.journal else {
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
                s.history.resync = false;
            }
            Some(Err(e)) => {
                log::error!("session {}: cannot sync its journal: {e}", s.id);
                s.history.resync = true;
                self.outstanding.push(s.key);
            }
            None => s.history.resync = false,
        }
    }

    /// Puts an event in the session's ring and wakes its readers.
    pub(super) fn show(&mut self, s: &mut Session, event: Event) {
        if !s.history.touched {
            s.history.touched = true;
            self.touched.push(s.key);
        }
        if s.history.first_seq == 0 {
            s.history.first_seq = event.seq;
        }
        let before = s.history.ring.bytes();
        s.history.ring.push(event);
        self.ring_bytes = self.ring_bytes + s.history.ring.bytes() - before;
    }

    /// Has the writer replace the session's `meta.json` (atomically and
    /// durably); a failure comes back through `Sessions::on_writer` and is
    /// retried, and the session keeps its true state in memory meanwhile.
    pub(super) fn save_meta(&mut self, root: &Option<PathBuf>, s: &mut Session) {
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

impl Sessions {
    /// The writer finished a batch: failed jobs are marked for retry, exit
    /// events now durable are shown, and requests waiting for durability
    /// (`DURABLE_TOPIC`) are woken.
    pub fn on_writer(&mut self) {
        self.absorb_failures();
        self.show_durable();
        self.log.touched.push(DURABLE_TOPIC);
        if self.collect_answers() {
            self.log.touched.push(ANSWER_TOPIC);
        }
    }

    /// Moves the answers the writer has into `answers`; whether there were
    /// any.
    pub(super) fn collect_answers(&mut self) -> bool {
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
            match s.history.unshown.take() {
                Some(u) if u.0 <= done => self.log.show(s, u.1),
                Some(waiting) => {
                    s.history.unshown = Some(waiting);
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
            s.history.resync = true;
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
    pub(super) fn retry_storage(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.log.outstanding);
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let Some(s) = self.list.get_mut(key) else {
                continue;
            };
            if let Some(payload) = s.history.pending_exit.clone() {
                self.record_exit(key, payload);
            } else {
                self.log.declare_gap(s);
                if s.history.gap_events > 0 {
                    self.log.outstanding.push(key);
                }
            }
            let s = &mut self.list[key];
            if s.meta_dirty {
                self.log.save_meta(&self.root, s);
            }
            if s.history.resync {
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

    /// Records a finished session's `exit` event and closes it out; while
    /// the journal refuses the event, it waits (`pending_exit`) and is
    /// retried, and the session serves its true status from memory.
    pub(super) fn record_exit(&mut self, key: usize, payload: Box<[u8]>) {
        let s = &mut self.list[key];
        if s.history.pending_exit.is_none() {
            // First its reserved place, which a full disk does not refuse:
            // the status survives whatever happens to the journal.
            self.log.write_final(s, &payload);
        }
        match self.log.write_durable(s, Kind::Exit, &payload) {
            Some(event) => {
                s.history.pending_exit = None;
                self.close_out(key);
                // Shown once its record and the final metadata are durable.
                let ticket = self.log.writer.submitted();
                let s = &mut self.list[key];
                if self.log.writer.done() >= ticket {
                    self.log.show(s, event);
                } else {
                    s.history.unshown = Some(Box::new((ticket, event)));
                    self.awaiting_show.push(key);
                }
            }
            None => {
                s.history.pending_exit = Some(payload);
                // Its status at least, if the disk takes that.
                self.log.save_meta(&self.root, s);
                self.log.outstanding.push(key);
            }
        }
    }

    /// A session is over: its metadata is saved durably, its journal
    /// closed, and its in-memory events released (they are on disk).
    pub(super) fn close_out(&mut self, key: usize) {
        self.mark_finished(key);
        let s = &mut self.list[key];
        self.log.save_meta(&self.root, s);
        if let Some(j) = &mut s.history.journal {
            j.close();
            if let Some(last) = s.history.ring.last_seq() {
                self.log.ring_bytes -= s.history.ring.release_through(last);
            }
        }
        self.write_entry(key);
        if self.root.is_some() {
            // Out of memory once nothing uses it (`evict`).
            self.evictable.push(key);
        }
        self.enforce_retention();
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

    /// Sessions that got events since the last call.
    pub fn take_touched(&mut self) -> Vec<usize> {
        let touched = std::mem::take(&mut self.log.touched);
        for &key in &touched {
            if let Some(s) = self.list.get_mut(key) {
                s.history.touched = false;
            }
        }
        touched
    }

    /// Visits a session's events after `after`, oldest first, from its
    /// journal and then its ring, until `f` says stop or `limit` events were
    /// visited. `max_bytes` bounds the payload read from disk at once.
    /// Returns true if it stopped with events left (more may exist). Events
    /// from the journal are borrowed from a read buffer, never copied.
    pub fn visit(
        &mut self,
        key: usize,
        after: u64,
        limit: usize,
        max_bytes: usize,
        mut f: impl FnMut(&str, &EventRef<'_>) -> bool,
    ) -> bool {
        let floor = self.list[key].history.ring.dropped_through();
        let mut n = 0;
        let s = &mut self.list[key];
        if after < floor {
            if let Some(journal) = &mut s.history.journal {
                let id = &s.id;
                let mut bytes = 0;
                let walked = journal.visit(&mut self.reader, after, floor + 1, |e| {
                    if n == limit || bytes >= max_bytes || !f(id, &e) {
                        return false;
                    }
                    bytes += e.payload.len();
                    n += 1;
                    true
                });
                match walked {
                    Ok(true) => return true,
                    Ok(false) => {}
                    Err(e) => log::warn!("session {}: reading its journal: {e}", s.id),
                }
            }
        }
        for e in s.history.ring.after(after.max(floor)) {
            if n == limit || !f(&s.id, &e.view()) {
                return true;
            }
            n += 1;
        }
        false
    }

    /// Whether `seq` is one of this session's events (or was, before
    /// retention removed it).
    pub fn owns(&mut self, key: usize, seq: u64) -> bool {
        let s = &mut self.list[key];
        if s.history.ring.get(seq).is_some() {
            return true;
        }
        // An event retention (or a memory-only ring) dropped: its position
        // is still a valid cursor.
        if s.history_cut()
            && s.history.first_seq != 0
            && s.history.first_seq <= seq
            && s.first_available().is_none_or(|f| seq < f)
        {
            return true;
        }
        s.history.journal.as_mut().is_some_and(|j| j.contains(seq))
    }

    /// Drops a session's oldest journal segment (never a live session's
    /// current one); returns the bytes freed, 0 if nothing was dropped.
    pub(super) fn trim_oldest(&mut self, key: usize) -> u64 {
        let s = &mut self.list[key];
        let Some(j) = &mut s.history.journal else {
            return 0;
        };
        match j.drop_oldest() {
            Some((path, n)) => {
                // The file goes off the loop; it is no longer read.
                self.reader.close();
                self.log.writer.submit(Some(key), Job::Remove(path));
                self.log.journal_bytes -= n;
                s.history.history_cut |= n > 0;
                n
            }
            None => 0,
        }
    }
}
