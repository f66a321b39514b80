//! What leaves the registry: archiving (hidden from the default list),
//! deleting (the directory renamed into `<home>/deleted` at once and
//! removed by the writer), and retention — by age (`retentionDays`, a pass
//! over the index in bounded steps) and by bytes (a session's own oldest
//! segments, then the oldest finished sessions' history, in bounded steps).

use std::io;
use std::time::{Duration, Instant, SystemTime};

use super::store::{deleted_dir, unix_secs};
use super::{DeleteError, Sessions};
use crate::index::{Entry, CHUNK_ENTRIES};

/// Retention by age works at most this long per loop turn.
const RETENTION_STEP: Duration = Duration::from_millis(1);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The instant at which Unix second `secs` comes.
fn instant_at(now: Instant, secs: u64) -> Instant {
    now + Duration::from_secs(secs.saturating_sub(now_secs()))
}

impl Sessions {
    /// Archives (hides from the default list) or unarchives a session. An
    /// archived session archived again keeps its first `archived_at`. The
    /// index, which the list filters on, is written so that a crash between
    /// the two writes leaves it showing more, never hiding what is not
    /// archived: after `meta.json` when archiving, before when not.
    pub fn set_archived(&mut self, key: usize, archived: bool) {
        let now = self.log.clock.stamp();
        let s = &mut self.list[key];
        if s.archived_at.is_some() == archived {
            return;
        }
        s.archived_at = archived.then_some(now);
        s.updated_at = now;
        if !archived {
            self.write_entry(key);
        }
        self.log.save_meta(&self.root, &mut self.list[key]);
        if archived {
            self.write_entry(key);
        }
    }

    /// Deletes a finished session: its record, its history and its
    /// directory. A live one is refused (it keeps running).
    pub fn delete(&mut self, key: usize) -> Result<(), DeleteError> {
        let s = &self.list[key];
        if s.is_live() {
            return Err(DeleteError::Live);
        }
        if let Some(root) = &self.root {
            // The directory leaves `sessions/` at once (one rename), and
            // is removed off the loop, by the writer. One left in
            // `deleted/` by a crash is removed at the next start.
            let dir = root.join(&*s.id);
            let gone = deleted_dir(root).join(&*s.id);
            match std::fs::rename(&dir, &gone) {
                Ok(()) => {
                    self.reader.close();
                    self.log
                        .writer
                        .submit(None, crate::writer::Job::RemoveTree(gone));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => {}
                Err(e) => {
                    log::error!("session {}: deleting {}: {e}", s.id, dir.display());
                    return Err(DeleteError::Storage(e.to_string()));
                }
            }
            let root = root.clone();
            self.log
                .writer
                .submit(None, crate::writer::Job::SyncDir(root));
        }
        if let Some(pos) = self.position(key) {
            let entry = Entry {
                status: None,
                ..Self::entry_of(&self.list[key])
            };
            if let Err(e) = self.index.write(pos, &entry) {
                log::error!("session {}: updating the session index: {e}", entry.id);
            }
        }
        let s = &self.list[key];
        if let Some(t) = s.armed {
            self.timers.remove(&(t, key));
        }
        self.log.journal_bytes -= s.journal_bytes();
        self.count -= 1;
        let id = s.id.clone();
        self.unload(key);
        log::info!("session {id}: deleted");
        Ok(())
    }

    /// A session just finished (or was found finished at start): it gets
    /// its finish time, and the age timer runs if nothing else set it.
    pub(super) fn mark_finished(&mut self, key: usize) {
        let s = &mut self.list[key];
        if s.is_live() {
            return;
        }
        if s.finished_secs == 0 {
            s.finished_secs = unix_secs(&s.updated_at);
        }
        if let (Some(keep), None) = (self.limits.retention, self.retention_at) {
            let due = s.finished_secs + keep.as_secs();
            self.retention_at = Some(instant_at(Instant::now(), due));
        }
        if let Some(pos) = s.idx_pos {
            self.bytes_pos = self.bytes_pos.min(pos);
        }
    }

    /// Retention by age: one step of a pass over the index, deleting
    /// finished sessions that finished longer ago than `retentionDays`, a
    /// journal segment or a whole session at a time, for at most
    /// `RETENTION_STEP`. A pass that ends sets the timer to when the next
    /// session comes of age. Never a live session.
    pub(super) fn retention_step(&mut self, now: Instant) {
        let Some(keep) = self.limits.retention else {
            self.retention_at = None;
            return;
        };
        let keep = keep.as_secs();
        let started = Instant::now();
        let wall = now_secs();
        loop {
            if started.elapsed() >= RETENTION_STEP {
                // More to look at: go on next turn, after other work.
                self.retention_at = Some(now);
                return;
            }
            if self.age_pos >= self.index.len() {
                self.retention_at = self.age_min_due.take().map(|due| instant_at(now, due));
                self.age_pos = 0;
                return;
            }
            let Ok(Some(entry)) = self.index.read(self.age_pos) else {
                self.age_pos += 1;
                continue;
            };
            if entry.is_deleted() || entry.finished_secs == 0 {
                self.age_pos += 1;
                continue;
            }
            let due = entry.finished_secs + keep;
            if due > wall {
                self.age_min_due = Some(self.age_min_due.map_or(due, |d| d.min(due)));
                self.age_pos += 1;
                continue;
            }
            let Some(key) = self.find(&entry.id) else {
                self.age_pos += 1;
                continue;
            };
            if self.list[key].is_live() {
                self.age_pos += 1;
                continue;
            }
            // A long history goes a segment per step.
            if self.list[key]
                .history
                .journal
                .as_ref()
                .is_some_and(|j| j.segment_count() > 1)
                && self.trim_oldest(key) > 0
            {
                continue;
            }
            match self.delete(key) {
                Ok(()) => log::info!("session {}: removed by retention (retentionDays)", entry.id),
                Err(e) => log::warn!("session {}: retention could not delete it: {e:?}", entry.id),
            }
            self.age_pos += 1;
        }
    }

    /// The oldest finished session that still has history, loaded.
    fn oldest_finished_with_history(&mut self) -> Option<usize> {
        while self.bytes_pos < self.index.len() {
            let chunk = self
                .index
                .read_range(self.bytes_pos, self.bytes_pos + CHUNK_ENTRIES as u64)
                .ok()?;
            for entry in chunk {
                let candidate = entry
                    .filter(|e| !e.is_deleted() && e.finished_secs != 0 && e.journal_bytes > 0);
                if let Some(e) = candidate {
                    if let Some(key) = self.find(&e.id) {
                        if !self.list[key].is_live() && self.list[key].journal_bytes() > 0 {
                            return Some(key);
                        }
                    }
                }
                self.bytes_pos += 1;
            }
        }
        None
    }

    /// Keeps journals within their byte limits: a live session's own oldest
    /// segments first (only live sessions grow), then, over the total, the
    /// oldest finished sessions' history, then the oldest live one's older
    /// segments, and never a live session's current segment.
    pub(super) fn enforce_retention(&mut self) {
        if self.root.is_none() {
            return;
        }
        let per_session = self.limits.journal_bytes_per_session;
        let total = self.limits.journal_bytes_total;
        let mut cut = Vec::new();
        let over: Vec<usize> = self
            .list
            .iter()
            .filter(|(_, s)| s.journal_bytes() > per_session)
            .map(|(k, _)| k)
            .collect();
        for key in over {
            while self.list[key].journal_bytes() > per_session
                && self.list[key]
                    .history
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.segment_count() > 1)
                && self.trim_oldest(key) > 0
            {
                cut.push(key);
            }
        }
        let started = Instant::now();
        self.bytes_at = None;
        while self.log.journal_bytes > total {
            if started.elapsed() >= RETENTION_STEP {
                // More to free: go on next turn, after other work.
                self.bytes_at = Some(Instant::now());
                break;
            }
            let victim = self.oldest_finished_with_history().or_else(|| {
                self.list
                    .iter()
                    .filter(|(_, s)| {
                        s.is_live()
                            && s.history
                                .journal
                                .as_ref()
                                .is_some_and(|j| j.segment_count() > 1)
                    })
                    .min_by_key(|(_, s)| (s.created_at, &s.id))
                    .map(|(k, _)| k)
            });
            match victim {
                Some(key) if self.trim_oldest(key) > 0 => cut.push(key),
                _ => break,
            }
        }
        cut.sort_unstable();
        cut.dedup();
        for key in cut {
            self.log.save_meta(&self.root, &mut self.list[key]);
            self.write_entry(key);
        }
    }
}
