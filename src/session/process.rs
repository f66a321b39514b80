//! A session's live process: its PTY read into events (a budget of reads a
//! turn, a UTF-8 tail carried), its input queue, kill with escalation,
//! resize, the harness's end (exit status, then the PTY's EOF or a drain
//! deadline) and the session's timers.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;

/// A session's harness and terminal: what only a live session has.
#[derive(Default)]
pub struct Process {
    /// Set while the process has not been reaped.
    pub pid: Option<i32>,
    /// When it last printed (for `wait?for=quiet`).
    pub last_output: Option<Instant>,
    /// The process group to signal (the leader's pid), kept after reaping
    /// so that a kill's escalation still reaches leftover members.
    pub(super) pgid: i32,
    pub(super) master: Option<OwnedFd>,
    /// The daemon's slave descriptor, held until the harness is reaped and
    /// the master drained (see `sys::pty`), so no platform drops its tail.
    pub(super) slave: Option<OwnedFd>,
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// The master reported EOF or EIO: every process let go of the PTY.
    pub(super) eof: bool,
    /// How the harness ended, once the supervisor reaped it.
    pub(super) exit: Option<ExitStatus>,
    /// An incomplete UTF-8 sequence carried to the next read.
    pub(super) tail: [u8; 3],
    pub(super) tail_len: u8,
    /// Input not yet written to the PTY (none, the usual case: it goes as
    /// soon as the queue is empty).
    pub(super) input: Option<Box<InputQueue>>,
    /// A kill's escalation and the exit's drain deadline, while either is
    /// pending (boxed: a running session has neither).
    pub(super) ending: Option<Box<Ending>>,
    /// The supervisor was told it may let go of the terminal (`release`):
    /// once per session.
    pub(super) released: bool,
}

/// Deadlines of a session that is ending.
#[derive(Default)]
pub struct Ending {
    /// When a kill escalates to SIGKILL.
    pub(super) escalate_at: Option<Instant>,
    /// When to stop waiting for EOF after the exit.
    pub(super) drain_until: Option<Instant>,
    /// Why the daemon ended it, for its exit event's `error`.
    pub(super) reason: Option<Box<str>>,
}

/// Input queued for a session's PTY.
#[derive(Default)]
pub(super) struct InputQueue {
    pub(super) bytes: Vec<u8>,
    /// Bytes of `bytes` already written.
    pub(super) written: usize,
}

/// Writes queued input until done (the queue goes) or the PTY is full.
pub(super) fn write_input(s: &mut Session, fd: RawFd) {
    let Some(q) = s.proc.input.as_mut() else {
        return;
    };
    while q.written < q.bytes.len() {
        // SAFETY: `fd` is the session's open master for this call's duration.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match pty::write_master(bfd, &q.bytes[q.written..]) {
            pty::Got::Data(n) => q.written += n,
            pty::Got::WouldBlock => {
                s.proc.writable = false;
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
    s.proc.input = None;
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

/// The `output` events' payloads for `text`: one, unless it escapes to a
/// `payload_json` of `MAX_PAYLOAD_JSON_BYTES` or more (much escaped output,
/// control bytes above all), which is cut in halves at character
/// boundaries until each piece fits. `f` gets each payload and the bytes
/// of text it carries.
pub(super) fn output_payloads(text: &str, f: &mut impl FnMut(Box<[u8]>, usize)) {
    let payload = record::data_payload(text);
    if payload.len() < super::MAX_PAYLOAD_JSON_BYTES || text.chars().nth(1).is_none() {
        return f(payload, text.len());
    }
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    if mid == 0 {
        mid = text.chars().next().map_or(text.len(), char::len_utf8);
    }
    output_payloads(&text[..mid], f);
    output_payloads(&text[mid..], f);
}

/// Why input or kill was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotLive,
    QueueFull { limit: usize },
}

impl Sessions {
    /// Readiness on a session's master. A session whose read budget runs
    /// out is queued in `pending` and driven again next turn.
    pub fn on_pty(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(s) = self.list.get_mut(key) else {
            return;
        };
        if s.proc.master.is_none() {
            return;
        }
        s.proc.readable |= readable;
        s.proc.writable |= writable;
        self.pump(key);
    }

    /// Writes queued input and reads output within a budget.
    pub(super) fn pump(&mut self, key: usize) {
        let s = &mut self.list[key];
        let Some(master) = s.proc.master.as_ref() else {
            return;
        };
        let fd = master.as_raw_fd();
        if s.proc.writable && s.proc.input.is_some() {
            write_input(s, fd);
        }
        // Every read of this turn goes into one buffer and makes one event
        // (at most `MAX_OUTPUT_BYTES`): one payload, one journal write and
        // one ring entry for up to `READS_PER_TURN` reads.
        let buf = &mut self.read_buf;
        if buf.len() < MAX_OUTPUT_BYTES {
            buf.resize(MAX_OUTPUT_BYTES, 0);
        }
        let carried = usize::from(s.proc.tail_len);
        buf[..carried].copy_from_slice(&s.proc.tail[..carried]);
        s.proc.tail_len = 0;
        let mut filled = carried;
        let mut reads = 0;
        let mut more = false;
        while s.proc.readable && !s.proc.eof {
            if reads == READS_PER_TURN || filled == buf.len() {
                more = true;
                break;
            }
            reads += 1;
            // SAFETY: `fd` is the session's open master for this call.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match pty::read_master(bfd, &mut buf[filled..]) {
                pty::Got::End => s.proc.eof = true,
                pty::Got::Data(n) => filled += n,
                pty::Got::WouldBlock if s.proc.exit.is_some() && s.proc.slave.is_some() => {
                    // The harness is gone and everything it wrote is read:
                    // let go of the slave (ours and the supervisor's), so
                    // the master reports EOF once no other process holds
                    // the terminal. Read again.
                    s.proc.slave = None;
                    s.proc.released = true;
                    if let Some(link) = &mut self.link {
                        link.release(s.proc.pgid);
                    }
                }
                pty::Got::WouldBlock => s.proc.readable = false,
                pty::Got::Interrupted => {}
                pty::Got::Failed(e) => {
                    log::warn!("session {}: reading the PTY: {e}", s.id);
                    s.proc.eof = true;
                }
            }
        }
        // A UTF-8 sequence cut by the last read waits for its end.
        let complete = complete_utf8_len(&buf[..filled]);
        s.proc.tail_len = (filled - complete) as u8;
        s.proc.tail[..filled - complete].copy_from_slice(&buf[complete..filled]);
        if complete > 0 {
            // Valid UTF-8 is the rule: checked by the fast validator; only
            // invalid bytes take the lossy way.
            let text = match std::str::from_utf8(&buf[..complete]) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(&buf[..complete]),
            };
            s.proc.last_output = Some(Instant::now());
            let log = &mut self.log;
            output_payloads(&text, &mut |payload, len| {
                log.push(s, Kind::Output, payload, len);
            });
            if s.journal_bytes() > self.limits.journal_bytes_per_session
                || self.log.journal_bytes > self.limits.journal_bytes_total
            {
                self.enforce_retention();
                return self.pending.push(key);
            }
        }
        if more {
            return self.pending.push(key);
        }
        if s.proc.eof && s.proc.exit.is_some() {
            self.finish(key);
        }
    }

    /// A harness ended (the supervisor reaped it): its raw wait status.
    pub(super) fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Instant) {
        let Some(key) = self.by_pid.remove(&pid) else {
            return;
        };
        let s = &mut self.list[key];
        s.proc.exit = Some(status);
        s.proc.pid = None;
        if !s.proc.eof {
            // Trailing output may still be queued in the PTY: read it,
            // and give a lingering holder of the terminal a moment.
            s.proc.readable = true;
            s.set_ending(|e| e.drain_until = Some(now + EXIT_DRAIN));
            self.arm(key);
        }
        self.pump(key);
    }

    /// The session is over: both its exit status and its PTY's EOF are in
    /// (or the drain time ran out).
    pub(super) fn finish(&mut self, key: usize) {
        let s = &mut self.list[key];
        let Some(info) = s.proc.exit else {
            return;
        };
        if s.proc.tail_len > 0 {
            let tail =
                String::from_utf8_lossy(&s.proc.tail[..usize::from(s.proc.tail_len)]).into_owned();
            s.proc.tail_len = 0;
            self.log
                .push(s, Kind::Output, record::data_payload(&tail), tail.len());
        }
        s.status = match (s.status, info.code()) {
            (Status::Killed, _) => Status::Killed,
            (_, Some(0)) => Status::Completed,
            _ => Status::Failed,
        };
        s.exit_code = info.code();
        s.proc.master = None;
        s.proc.slave = None;
        if !s.proc.released {
            // Finished without the terminal let go in `pump` (the drain ran
            // out, or no slave is kept here): the supervisor's copies go
            // now.
            s.proc.released = true;
            if let Some(link) = &mut self.link {
                link.release(s.proc.pgid);
            }
        }
        s.proc.input = None;
        let reason = s.proc.ending.as_mut().and_then(|e| e.reason.take());
        s.set_ending(|e| e.drain_until = None);
        s.updated_at = self.log.clock.stamp();
        let payload = record::exit_payload(s.status.as_str(), Some(info), reason.as_deref());
        self.live -= 1;
        self.arm(key);
        self.record_exit(key, payload);
    }

    /// Queues input for the PTY and records it.
    pub fn input(&mut self, key: usize, data: &str) -> Result<(), Refusal> {
        let limit = self.limits.input_queue_bytes;
        let s = &mut self.list[key];
        if s.status != Status::Running || s.proc.master.is_none() {
            return Err(Refusal::NotLive);
        }
        let queued = s
            .proc
            .input
            .as_ref()
            .map_or(0, |q| q.bytes.len() - q.written);
        if queued + data.len() > limit {
            return Err(Refusal::QueueFull { limit });
        }
        s.proc
            .input
            .get_or_insert_with(Box::default)
            .bytes
            .extend_from_slice(data.as_bytes());
        self.log
            .push(s, Kind::Input, record::data_payload(data), data.len());
        if let Some(fd) = s.proc.master.as_ref().map(|m| m.as_raw_fd()) {
            s.proc.writable = true;
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
        let pgid = s.proc.pgid;
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
        match (&s.proc.master, s.status) {
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
    pub(super) fn record_size(&mut self, key: usize, cols: u16, rows: u16) {
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
            if due(s.proc.ending.as_ref().and_then(|e| e.escalate_at)) {
                s.set_ending(|e| e.escalate_at = None);
                pty::signal_group(s.proc.pgid, Signal::SIGKILL);
            }
            if due(s.proc.ending.as_ref().and_then(|e| e.drain_until)) {
                s.set_ending(|e| e.drain_until = None);
                log::debug!(
                    "session {}: no EOF {} s after its exit (the terminal is still held); finishing",
                    s.id,
                    EXIT_DRAIN.as_secs()
                );
                // Read what is there without waiting for EOF any longer.
                s.proc.readable = true;
                self.pump(key);
                if self.list[key].proc.master.is_some() {
                    self.finish(key);
                }
            }
            self.arm(key);
        }
    }

    /// Drives sessions that yielded.
    pub fn on_pending(&mut self, now: Instant) {
        if self.link.as_ref().is_some_and(|l| l.has_pending()) {
            self.on_supervisor(now);
        }
        for key in self.take_pending() {
            self.pump(key);
        }
    }

    pub(super) fn arm(&mut self, key: usize) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_where_its_payload_would_be_too_long() {
        for text in [
            "x".repeat(super::super::MAX_OUTPUT_BYTES),
            "\u{1}".repeat(super::super::MAX_OUTPUT_BYTES),
            "\u{1b}[31mé\u{1b}[0m\r\n".repeat(3000),
        ] {
            let mut pieces = String::new();
            let mut events = 0;
            output_payloads(&text, &mut |payload, len| {
                assert!(payload.len() < super::super::MAX_PAYLOAD_JSON_BYTES);
                let data = record::payload_data(&payload).unwrap();
                assert_eq!(data.len(), len);
                pieces.push_str(&data);
                events += 1;
            });
            assert_eq!(pieces, text);
            assert!(events <= 16, "{events}");
        }
    }
}
