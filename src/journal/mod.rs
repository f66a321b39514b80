//! A session's durable event journal: append-only segment files of
//! checksummed records, plus the session's metadata file.
//!
//! Layout: `<dir>/meta.json` (replaced atomically: temp file, fsync,
//! rename) and `<dir>/<first seq, 20 digits>.log` segments of at most
//! `SEGMENT_BYTES`. A record is
//!
//! ```text
//! len: u32 LE | crc32(body): u32 LE | body (len bytes) | len: u32 LE
//! body = seq: u64 LE | kind: u8 | created_at | payload literal
//! ```
//!
//! `created_at` is RFC 3339 text with milliseconds (24 bytes), flagged by
//! the kind byte's high bit; records written before event times had
//! milliseconds have 20 bytes of whole seconds and no flag, and are read
//! (and served) as they were.
//!
//! The checksum catches a torn or corrupt record; the trailing length lets
//! the newest record be found from the end of a file without a scan, so
//! opening a journal reads a few bytes, never its payloads. The body is the
//! ring's event byte for byte, so a page read from disk is identical to the
//! page the ring served. The journal stores what it is told and decides no
//! policy: retention and syncing are the caller's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ring::{Event, EventRef, Kind};

mod files;
pub use files::{
    append_size, read_exit, read_meta, read_sizes, reserve_exit, size_fits, write_atomic,
    write_exit, Size, EXIT_FILE, MAX_TERMINAL_SIDE, SIZES_FILE,
};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// A sparse index entry at most every this many bytes of a segment.
const INDEX_STRIDE_BYTES: u64 = 16 * 1024;
/// A scan's first read; the buffer grows only for a larger record.
const SCAN_CHUNK_BYTES: usize = 16 * 1024;
const HEAD_BYTES: usize = 8;
const FOOT_BYTES: usize = 4;
/// The smallest body: seq, kind and a whole-seconds time.
const BODY_FIXED_BYTES: usize = 8 + 1 + 20;
/// The kind byte's flag for a 24-byte (millisecond) time.
const MILLIS_FLAG: u8 = 0x80;
/// A record body larger than this is corrupt (an output event is < 64 KB).
const MAX_BODY_BYTES: usize = 1024 * 1024;

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Output => 1,
        Kind::Input => 2,
        Kind::Kill => 3,
        Kind::Exit => 4,
        Kind::OutputTruncated => 5,
    }
}

fn byte_kind(b: u8) -> Option<Kind> {
    Some(match b {
        1 => Kind::Output,
        2 => Kind::Input,
        3 => Kind::Kill,
        4 => Kind::Exit,
        5 => Kind::OutputTruncated,
        _ => return None,
    })
}

/// Appends the encoded record of `e` to `out`.
pub fn encode(e: &Event, out: &mut Vec<u8>) {
    let stamp = e.stamp();
    let len = (8 + 1 + stamp.len() + e.payload.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&e.seq.to_le_bytes());
    let flag = if stamp.len() == 24 { MILLIS_FLAG } else { 0 };
    out.push(kind_byte(e.kind) | flag);
    out.extend_from_slice(stamp);
    out.extend_from_slice(&e.payload);
    let crc = crc32fast::hash(&out[start + HEAD_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

/// Decodes one record at the start of `buf`: the event and the record's
/// size, `Ok(None)` if `buf` holds only part of it, `Err` if it is corrupt.
pub fn decode(buf: &[u8]) -> Result<Option<(Event, usize)>, &'static str> {
    Ok(decode_ref(buf)?.map(|(e, n)| (e.to_event(), n)))
}

/// `decode`, with the event borrowed from `buf` (nothing copied).
pub fn decode_ref(buf: &[u8]) -> Result<Option<(EventRef<'_>, usize)>, &'static str> {
    if buf.len() < HEAD_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(BODY_FIXED_BYTES..=MAX_BODY_BYTES).contains(&len) {
        return Err("bad record length");
    }
    let total = HEAD_BYTES + len + FOOT_BYTES;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[HEAD_BYTES..HEAD_BYTES + len];
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc || buf[HEAD_BYTES + len..total] != buf[0..4] {
        return Err("checksum mismatch");
    }
    let kind = byte_kind(body[8] & !MILLIS_FLAG).ok_or("bad event kind")?;
    let stamp_len = if body[8] & MILLIS_FLAG != 0 { 24 } else { 20 };
    if body.len() < 9 + stamp_len {
        return Err("bad record length");
    }
    let stamp = &body[9..9 + stamp_len];
    // A whole-seconds time ends at byte 19 and a millisecond one does not
    // (`ring::stamp_bytes` tells them apart that way).
    if (stamp[19] == b'Z') != (stamp_len == 20) {
        return Err("bad event time");
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    Ok(Some((
        EventRef::new(seq, kind, stamp, &body[9 + stamp_len..]),
        total,
    )))
}

/// A record's seq and size from its framing alone (no checksum, nothing
/// copied): for skipping records a read does not return. `decode` checks
/// whatever is returned.
fn peek(buf: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    if buf.len() < HEAD_BYTES + 8 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(BODY_FIXED_BYTES..=MAX_BODY_BYTES).contains(&len) {
        return Err("bad record length");
    }
    let total = HEAD_BYTES + len + FOOT_BYTES;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[HEAD_BYTES + len..total] != buf[0..4] {
        return Err("bad record framing");
    }
    let seq = u64::from_le_bytes(buf[HEAD_BYTES..HEAD_BYTES + 8].try_into().expect("8 bytes"));
    Ok(Some((seq, total)))
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    /// Seq of its newest record (0 while empty).
    last_seq: u64,
    len: u64,
    /// `(seq, offset)` of a record at least every `INDEX_STRIDE_BYTES`,
    /// built on the first read of the segment.
    index: Option<Vec<(u64, u64)>>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// One session's journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Open for appending to the last segment (live sessions only).
    file: Option<File>,
    /// A segment file was created since `take_fresh_segment` was last
    /// asked: the directory needs an fsync for it to survive a power cut.
    fresh_segment: bool,
    bytes: u64,
}

thread_local! {
    /// Where records are encoded before their write: one per thread (the
    /// loop's), not one per journal, so that a session that printed once
    /// does not keep a buffer the size of its largest record while idle.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What reading journals keeps between reads, owned by their caller: the
/// buffer records are read into, and the last segment file opened for
/// reading (a page after a page of the same session opens nothing).
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// The journal directory and segment (its first seq) `file` is.
    open: Option<(PathBuf, u64, File)>,
}

impl Reader {
    /// The segment `first_seq` of the journal in `dir`, opened (or kept).
    fn segment(&mut self, dir: &Path, first_seq: u64) -> io::Result<(&File, &mut Vec<u8>)> {
        let kept = matches!(&self.open, Some((d, seq, _)) if *seq == first_seq && d == dir);
        if !kept {
            self.open = None;
            let file = File::open(dir.join(segment_name(first_seq)))?;
            self.open = Some((dir.to_owned(), first_seq, file));
        }
        let (_, _, file) = self.open.as_ref().expect("opened");
        Ok((file, &mut self.buf))
    }

    /// Lets go of the segment kept open: one about to be removed frees its
    /// space only once no descriptor holds it.
    pub fn close(&mut self) {
        self.open = None;
    }
}

/// Things found wrong while opening, for the caller to log.
pub type Warnings = Vec<String>;

impl Journal {
    /// Creates the directory of a new session's journal.
    pub fn create(dir: PathBuf) -> io::Result<Journal> {
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Journal {
            dir,
            segments: Vec::new(),
            file: None,
            fresh_segment: false,
            bytes: 0,
        })
    }

    /// Opens an existing journal, cutting a torn or corrupt tail back to
    /// the last whole record (`ftruncate`, which waits on no disk; making
    /// the cut durable is the caller's, through the writer: the segments
    /// cut are returned). Unreadable segments are skipped with a warning.
    pub fn open(dir: PathBuf) -> io::Result<(Journal, Warnings, Vec<File>)> {
        let mut cut = Vec::new();
        let mut warnings = Vec::new();
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&first| first > 0)
            else {
                continue;
            };
            match entry.file_type() {
                Ok(t) if t.is_file() => firsts.push(first),
                _ => warnings.push(format!(
                    "{}: not a regular file, skipped",
                    entry.path().display()
                )),
            }
        }
        firsts.sort_unstable();
        let mut journal = Journal {
            dir,
            segments: Vec::new(),
            file: None,
            fresh_segment: false,
            bytes: 0,
        };
        for first in firsts {
            let path = journal.dir.join(segment_name(first));
            match Self::open_segment(&path, first) {
                Ok((segment, warning)) => {
                    if let Some((warning, file)) = warning {
                        warnings.push(warning);
                        cut.push(file);
                    }
                    if segment.len > 0 {
                        journal.bytes += segment.len;
                        journal.segments.push(segment);
                    }
                }
                Err(e) => warnings.push(format!("{}: {e}; skipped", path.display())),
            }
        }
        // Fill in each closed segment's last seq from its successor.
        for i in 1..journal.segments.len() {
            let next_first = journal.segments[i].first_seq;
            let s = &mut journal.segments[i - 1];
            if s.last_seq == 0 {
                s.last_seq = next_first.saturating_sub(1);
            }
        }
        Ok((journal, warnings, cut))
    }

    /// Reads a segment's newest record through its trailing length; if that
    /// fails (a crash mid-append), scans and truncates to the last good one
    /// (and gives back the file, whose cut is not yet durable).
    fn open_segment(path: &Path, first: u64) -> io::Result<(Segment, Option<(String, File)>)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let mut segment = Segment {
            first_seq: first,
            last_seq: 0,
            len,
            index: None,
        };
        if len == 0 {
            return Ok((segment, None));
        }
        if let Some(seq) = Self::tail_seq(&file, len) {
            // A segment's records are never older than its name says.
            if seq < first {
                return Err(io::Error::other(format!(
                    "its last record ({seq}) is older than its name"
                )));
            }
            segment.last_seq = seq;
            return Ok((segment, None));
        }
        let (good, last_seq) = Self::scan_valid(&file, len)?;
        file.set_len(good)?;
        segment.len = good;
        segment.last_seq = last_seq;
        let warning = format!(
            "{}: cut {} bytes of torn or corrupt records (kept {good})",
            path.display(),
            len - good
        );
        Ok((segment, Some((warning, file))))
    }

    /// The seq of the record ending at `len`, if it is whole and valid.
    fn tail_seq(file: &File, len: u64) -> Option<u64> {
        let mut foot = [0u8; 4];
        file.read_exact_at(&mut foot, len.checked_sub(4)?).ok()?;
        let body_len = u32::from_le_bytes(foot) as u64;
        // A length read from disk is checked before anything is allocated
        // for it.
        if !(BODY_FIXED_BYTES as u64..=MAX_BODY_BYTES as u64).contains(&body_len) {
            return None;
        }
        let total = HEAD_BYTES as u64 + body_len + FOOT_BYTES as u64;
        let start = len.checked_sub(total)?;
        let mut rec = vec![0u8; total as usize];
        file.read_exact_at(&mut rec, start).ok()?;
        match decode(&rec) {
            Ok(Some((e, n))) if n == rec.len() => Some(e.seq),
            _ => None,
        }
    }

    /// Scans from the start: the length of the valid prefix and its last seq.
    fn scan_valid(file: &File, len: u64) -> io::Result<(u64, u64)> {
        let mut good = 0u64;
        let mut last_seq = 0;
        Self::scan(file, len, 0, |e, off, _| {
            last_seq = e.seq;
            good = off;
            true
        })?;
        Ok((good, last_seq))
    }

    /// Calls `f(event, end offset, start offset)` for each valid record
    /// from `from`, until it returns false, the file ends or a record is bad.
    fn scan(
        file: &File,
        len: u64,
        from: u64,
        mut f: impl FnMut(Event, u64, u64) -> bool,
    ) -> io::Result<()> {
        let mut stop = false;
        Self::walk(file, len, from, |record, _, start| {
            match decode(record) {
                Ok(Some((e, n))) => stop = !f(e, start + n as u64, start),
                _ => stop = true,
            }
            !stop
        })
    }

    /// Calls `f(record, seq, offset)` for each framed record from offset
    /// `from`, until it returns false or a record is not whole. Reads with
    /// `pread` into one buffer that grows only for a record larger than it.
    fn walk(
        file: &File,
        len: u64,
        from: u64,
        f: impl FnMut(&[u8], u64, u64) -> bool,
    ) -> io::Result<()> {
        Self::walk_in(&mut Vec::new(), file, len, from, f)
    }

    /// `walk`, reading into `buf` (a caller's buffer, kept between reads:
    /// its contents are overwritten, its size only grows).
    fn walk_in(
        buf: &mut Vec<u8>,
        file: &File,
        len: u64,
        from: u64,
        mut f: impl FnMut(&[u8], u64, u64) -> bool,
    ) -> io::Result<()> {
        let first = SCAN_CHUNK_BYTES.min(len.saturating_sub(from) as usize);
        if buf.len() < first {
            buf.resize(first, 0);
        }
        // `buf[head..end]` holds the file from offset `at` on.
        let (mut head, mut end) = (0usize, 0usize);
        let mut at = from;
        loop {
            match peek(&buf[head..end]) {
                Ok(Some((seq, n))) => {
                    if !f(&buf[head..head + n], seq, at) {
                        return Ok(());
                    }
                    head += n;
                    at += n as u64;
                }
                Ok(None) => {
                    let read_to = at + (end - head) as u64;
                    if read_to >= len {
                        return Ok(());
                    }
                    buf.copy_within(head..end, 0);
                    end -= head;
                    head = 0;
                    if end == buf.len() {
                        // A record larger than the buffer: room for it.
                        let grown = (buf.len() * 2).max(SCAN_CHUNK_BYTES);
                        buf.resize(grown.min(HEAD_BYTES + MAX_BODY_BYTES + FOOT_BYTES), 0);
                        if end == buf.len() {
                            return Ok(());
                        }
                    }
                    // A block at a time (a caller's buffer may be larger),
                    // or the rest of a record larger than that.
                    let partial = match buf[..end].first_chunk::<4>() {
                        Some(l) => HEAD_BYTES + u32::from_le_bytes(*l) as usize + FOOT_BYTES,
                        None => 0,
                    };
                    let want = (buf.len() - end)
                        .min((len - read_to) as usize)
                        .min(SCAN_CHUNK_BYTES.max(partial.saturating_sub(end)));
                    let n = file.read_at(&mut buf[end..end + want], read_to)?;
                    if n == 0 {
                        return Ok(());
                    }
                    end += n;
                }
                Err(_) => return Ok(()),
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.segments.first().map(|s| s.first_seq)
    }

    /// Where reading must start to cover about the newest `bytes` of the
    /// journal, at a segment's start (the newest segment at least): the
    /// seq before that segment's first (0: from the beginning).
    pub fn tail_start(&self, bytes: u64) -> u64 {
        let mut kept = 0;
        let mut start = None;
        for s in self.segments.iter().rev() {
            kept += s.len;
            if kept > bytes && start.is_some() {
                break;
            }
            start = Some(s.first_seq.saturating_sub(1));
        }
        start.unwrap_or(0)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.segments.last().map(|s| s.last_seq)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends one event; `sync` makes it durable before returning (never
    /// on the loop: there the writer syncs). Returns the bytes added.
    pub fn append(&mut self, e: &Event, sync: bool) -> io::Result<u64> {
        if sync {
            crate::on_loop::assert_off_loop("a journal append with sync");
        }
        let roll = self.segments.last().is_none_or(|s| s.len >= SEGMENT_BYTES);
        if roll || self.file.is_none() {
            if roll {
                self.fresh_segment = true;
                self.segments.push(Segment {
                    first_seq: e.seq,
                    last_seq: 0,
                    len: 0,
                    index: Some(Vec::new()),
                });
            }
            let path = self.dir.join(segment_name(
                self.segments.last().expect("pushed").first_seq,
            ));
            self.file = Some(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)?,
            );
        }
        let file = self.file.as_mut().expect("opened");
        let written = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode(e, buf);
            let n = buf.len() as u64;
            let result = file.write_all(buf);
            if buf.capacity() > 2 * MAX_BODY_BYTES {
                *buf = Vec::new();
            }
            result.map(|()| n)
        });
        let n = match written {
            Ok(n) => n,
            Err(err) => {
                // Leave no partial record behind to confuse later appends.
                let seg = self.segments.last().expect("a segment");
                let _ = file.set_len(seg.len);
                return Err(err);
            }
        };
        // The record is in the file from here on, whether or not the sync
        // below works: account for it first.
        let synced = if sync { file.sync_data() } else { Ok(()) };
        let seg = self.segments.last_mut().expect("a segment");
        if let Some(index) = &mut seg.index {
            if index
                .last()
                .is_none_or(|&(_, off)| seg.len - off >= INDEX_STRIDE_BYTES)
            {
                index.push((e.seq, seg.len));
            }
        }
        seg.len += n;
        seg.last_seq = e.seq;
        self.bytes += n;
        synced.map(|()| n)
    }

    /// Makes everything appended so far durable (never on the loop).
    pub fn sync(&mut self) -> io::Result<()> {
        crate::on_loop::assert_off_loop("a journal sync");
        match &self.file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Another handle on the segment being appended to, for syncing it
    /// elsewhere (the writer thread).
    pub fn sync_handle(&self) -> Option<io::Result<File>> {
        match &self.file {
            Some(file) => Some(file.try_clone()),
            // Closed (the session is over): its newest segment, read-only,
            // which fsync accepts as well.
            None => {
                let last = self.segments.last()?;
                Some(File::open(self.dir.join(segment_name(last.first_seq))))
            }
        }
    }

    /// Whether a segment file was created since the last call.
    pub fn take_fresh_segment(&mut self) -> bool {
        std::mem::take(&mut self.fresh_segment)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the append handle (the session is over).
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Lets go of the oldest segment: it is no longer read, and its file is
    /// the caller's to remove (through the writer). Returns its path and
    /// the bytes freed, or None if nothing may be dropped (a live session's
    /// only segment).
    pub fn drop_oldest(&mut self) -> Option<(PathBuf, u64)> {
        if self.segments.len() <= 1 && self.file.is_some() {
            return None;
        }
        let seg = (!self.segments.is_empty()).then(|| self.segments.remove(0))?;
        if self.segments.is_empty() {
            self.file = None;
        }
        self.bytes -= seg.len;
        Some((self.dir.join(segment_name(seg.first_seq)), seg.len))
    }

    /// Builds a segment's sparse index with one scan of its headers.
    fn index_of(&mut self, i: usize) -> io::Result<&[(u64, u64)]> {
        if self.segments[i].index.is_none() {
            let path = self.dir.join(segment_name(self.segments[i].first_seq));
            let file = File::open(path)?;
            let len = self.segments[i].len;
            let mut index: Vec<(u64, u64)> = Vec::new();
            Self::walk(&file, len, 0, |_, seq, start| {
                if index
                    .last()
                    .is_none_or(|&(_, off)| start - off >= INDEX_STRIDE_BYTES)
                {
                    index.push((seq, start));
                }
                true
            })?;
            self.segments[i].index = Some(index);
        }
        Ok(self.segments[i].index.as_deref().expect("built"))
    }

    /// Events with `after < seq < before`, oldest first, at most `limit` of
    /// them and stopping once `max_bytes` of payload are collected.
    pub fn read(
        &mut self,
        after: u64,
        before: u64,
        limit: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<Event>> {
        let mut out = Vec::new();
        if limit == 0 || max_bytes == 0 {
            return Ok(out);
        }
        let mut bytes = 0usize;
        self.visit(&mut Reader::default(), after, before, |e| {
            bytes += e.payload.len();
            out.push(e.to_event());
            out.len() < limit && bytes < max_bytes
        })?;
        Ok(out)
    }

    /// Calls `f` with each event with `after < seq < before`, oldest first,
    /// borrowed from `reader`'s buffer, until it returns false. Only the
    /// records `f` is given are checked and decoded; the ones before
    /// `after` in the same block are skipped by their framing. Returns
    /// whether `f` stopped the walk.
    pub fn visit(
        &mut self,
        reader: &mut Reader,
        after: u64,
        before: u64,
        mut f: impl FnMut(EventRef<'_>) -> bool,
    ) -> io::Result<bool> {
        // The newest seq walked so far, across segments: a segment whose
        // records overlap an earlier one's (damaged or crafted files) has
        // those records skipped, so what is read is always in order.
        let mut prev = 0;
        let mut stopped = false;
        let start = self
            .segments
            .partition_point(|s| s.last_seq <= after && s.last_seq != 0);
        for i in start..self.segments.len() {
            if self.segments[i].first_seq >= before {
                break;
            }
            let from = {
                let index = self.index_of(i)?;
                let at = index.partition_point(|&(seq, _)| seq <= after);
                if at == 0 {
                    0
                } else {
                    index[at - 1].1
                }
            };
            let (file, buf) = reader.segment(&self.dir, self.segments[i].first_seq)?;
            let len = self.segments[i].len;
            let mut done = false;
            let mut walked = false;
            Self::walk_in(buf, file, len, from, |record, seq, _| {
                if seq >= before || (seq <= prev && walked) {
                    // Past the range, or out of order within this segment
                    // (a damaged file): stop.
                    done = true;
                    return false;
                }
                if seq <= prev {
                    // Already read from an earlier segment.
                    return true;
                }
                walked = true;
                prev = seq;
                if seq > after {
                    let Ok(Some((e, _))) = decode_ref(record) else {
                        done = true;
                        return false;
                    };
                    if !f(e) {
                        stopped = true;
                        return false;
                    }
                }
                true
            })?;
            if done || stopped {
                break;
            }
        }
        Ok(stopped)
    }

    /// Whether an event with this seq is in the journal.
    pub fn contains(&mut self, seq: u64) -> bool {
        matches!(self.read(seq.saturating_sub(1), seq + 1, 1, usize::MAX), Ok(v) if v.first().is_some_and(|e| e.seq == seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use files::EXIT_FILE_BYTES;

    fn ev(seq: u64, payload: &str) -> Event {
        Event {
            seq,
            kind: if seq.is_multiple_of(2) {
                Kind::Output
            } else {
                Kind::Input
            },
            created_at: *b"2026-11-27T08:00:00.125Z",
            payload: payload.as_bytes().into(),
        }
    }

    #[test]
    fn lengths_on_disk_are_checked_before_they_are_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path().join("s")).unwrap();
        j.append(&ev(1, "\"a\""), false).unwrap();
        let seg = dir.path().join("s").join(segment_name(1));
        // A tail whose trailing length says 4 GiB: not a record, and no
        // allocation of that size (the segment is scanned and cut back).
        let mut bytes = std::fs::read(&seg).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&[0xff; 4]);
        std::fs::write(&seg, &bytes).unwrap();
        let file = File::open(&seg).unwrap();
        assert_eq!(Journal::tail_seq(&file, bytes.len() as u64), None);
        let (j, warnings, _) = Journal::open(dir.path().join("s")).unwrap();
        assert_eq!((j.bytes(), j.last_seq()), (good as u64, Some(1)));
        assert_eq!(warnings.len(), 1);
        // Sizes past what the API accepts are skipped.
        std::fs::write(
            dir.path().join(SIZES_FILE),
            "0 1 80 24\n0 2 65535 65535\n0 3 1000 1000\n0 4 1001 5\n",
        )
        .unwrap();
        let sizes: Vec<(u16, u16)> = read_sizes(dir.path())
            .iter()
            .map(|s| (s.cols, s.rows))
            .collect();
        assert_eq!(sizes, vec![(80, 24), (1000, 1000)]);
    }

    #[test]
    fn the_exit_record_takes_its_reserved_place() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_exit(dir.path()).is_empty());
        reserve_exit(dir.path()).unwrap();
        let reserved = fs::metadata(dir.path().join(EXIT_FILE)).unwrap();
        assert_eq!(reserved.len(), EXIT_FILE_BYTES as u64);
        assert!(read_exit(dir.path()).is_empty(), "zeros are no record");
        let exit = Event {
            seq: 9,
            kind: Kind::Exit,
            created_at: *b"2026-11-27T08:00:00.125Z",
            payload: br#""{\"status\":\"failed\",\"exitCode\":3}""#[..].into(),
        };
        write_exit(dir.path(), std::slice::from_ref(&exit)).unwrap();
        assert_eq!(read_exit(dir.path()), vec![exit.clone()]);
        // A gap's marker before it.
        let gap = Event {
            seq: 8,
            kind: Kind::OutputTruncated,
            ..exit.clone()
        };
        write_exit(dir.path(), &[gap.clone(), exit.clone()]).unwrap();
        assert_eq!(read_exit(dir.path()), vec![gap, exit]);
        // In place: the file did not grow.
        let after = fs::metadata(dir.path().join(EXIT_FILE)).unwrap();
        assert_eq!(after.len(), EXIT_FILE_BYTES as u64);
        // Only records that end with an exit count.
        write_exit(dir.path(), &[ev(10, "\"x\""), ev(11, "\"y\"")]).unwrap();
        assert!(read_exit(dir.path()).is_empty());
    }

    #[test]
    fn tail_start_covers_the_newest_bytes_from_a_segment_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path().join("s")).unwrap();
        assert_eq!(j.tail_start(1), 0);
        let payload = "x".repeat(256 * 1024);
        for seq in 1..=40 {
            j.append(&ev(seq, &payload), false).unwrap();
        }
        let firsts: Vec<u64> = j.segments.iter().map(|s| s.first_seq).collect();
        assert!(firsts.len() >= 3, "{firsts:?}");
        // Everything fits: from the start.
        assert_eq!(j.tail_start(u64::MAX), 0);
        // The newest segment alone fits in its own length.
        let last = j.segments.last().unwrap();
        assert_eq!(j.tail_start(last.len), last.first_seq - 1);
        // Less than the newest segment: still that segment (reads start
        // at a segment).
        assert_eq!(j.tail_start(1), last.first_seq - 1);
        let two = j.segments[j.segments.len() - 2..]
            .iter()
            .map(|s| s.len)
            .sum::<u64>();
        assert_eq!(j.tail_start(two), firsts[firsts.len() - 2] - 1);
    }

    #[test]
    fn sizes_round_trip_and_skip_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_sizes(dir.path()).is_empty());
        let a = Size {
            after: 0,
            unix_ms: 1,
            cols: 80,
            rows: 24,
        };
        let b = Size {
            after: 9,
            unix_ms: 2,
            cols: 132,
            rows: 50,
        };
        append_size(dir.path(), a).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(SIZES_FILE))
            .unwrap()
            .write_all(b"garbage\n1 2 0 5\n")
            .unwrap();
        append_size(dir.path(), b).unwrap();
        assert_eq!(read_sizes(dir.path()), vec![a, b]);
    }

    #[test]
    fn whole_second_records_read_as_written() {
        // A record from before event times had milliseconds.
        let mut old = ev(7, "\"{}\"");
        old.created_at = *b"2026-11-27T08:00:00Z\0\0\0\0";
        let mut buf = Vec::new();
        encode(&old, &mut buf);
        assert_eq!(buf.len(), HEAD_BYTES + BODY_FIXED_BYTES + 4 + FOOT_BYTES);
        let (back, _) = decode(&buf).unwrap().unwrap();
        assert_eq!(back, old);
        assert_eq!(back.stamp(), b"2026-11-27T08:00:00Z");
        // The new form is four bytes longer and flagged.
        let mut new = Vec::new();
        encode(&ev(8, "\"{}\""), &mut new);
        assert_eq!(new.len(), buf.len() + 4);
        assert_eq!(new[HEAD_BYTES + 8] & MILLIS_FLAG, MILLIS_FLAG);
    }

    #[test]
    fn record_round_trip_and_corruption() {
        let e = ev(42, "\"{\\\"data\\\":\\\"hi\\\"}\"");
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(decode(&buf), Ok(Some((e.clone(), buf.len()))));
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Ok(None), "cut {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                !matches!(decode(&bad), Ok(Some((d, _))) if d == e),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn append_read_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("s");
        let mut j = Journal::create(jdir.clone()).unwrap();
        let big = "x".repeat(50_000);
        for seq in 1..=200u64 {
            j.append(&ev(seq * 3, &big), false).unwrap();
        }
        assert!(j.segment_count() > 1, "rolled into segments");
        let all = j.read(0, u64::MAX, 10_000, usize::MAX).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=200).map(|s| s * 3).collect::<Vec<_>>()
        );
        let page = j.read(300, 330, 100, usize::MAX).unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [303, 306, 309, 312, 315, 318, 321, 324, 327]
        );
        assert_eq!(j.read(0, u64::MAX, 3, usize::MAX).unwrap().len(), 3);
        assert!(j.contains(300) && !j.contains(301));
        let bytes = j.bytes();
        drop(j);
        let (mut j, warnings, _) = Journal::open(jdir).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(j.bytes(), bytes);
        assert_eq!((j.first_seq(), j.last_seq()), (Some(3), Some(600)));
        assert_eq!(j.read(0, u64::MAX, 10_000, usize::MAX).unwrap(), all);
        let (path, freed) = j.drop_oldest().unwrap();
        assert!(freed > 0 && path.exists());
        assert!(j.first_seq().unwrap() > 3);
    }

    /// One `Reader` across journals, as the daemon keeps it: a segment of
    /// another journal with the same first seq is never read for this one,
    /// and a buffer grown by a large record still reads small ones whole.
    #[test]
    fn a_kept_reader_reads_each_journal_as_a_fresh_one_would() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [10, 70_000, 5, 16_000, 1, 40_000];
        let payload =
            |tag: &str, seq: u64| format!("\"{tag}{}\"", "z".repeat(sizes[seq as usize % 6]));
        let mut journals = Vec::new();
        for tag in ["a", "b"] {
            let mut j = Journal::create(dir.path().join(tag)).unwrap();
            for seq in 1..=30u64 {
                j.append(&ev(seq, &payload(tag, seq)), false).unwrap();
            }
            journals.push((tag, j));
        }
        let mut reader = Reader::default();
        for after in 0..30u64 {
            for (tag, j) in &mut journals {
                let mut got = Vec::new();
                let stopped = j
                    .visit(&mut reader, after, u64::MAX, |e| {
                        got.push((e.seq, e.payload.to_vec()));
                        got.len() < 4
                    })
                    .unwrap();
                let want: Vec<(u64, Vec<u8>)> = (after + 1..=(after + 4).min(30))
                    .map(|seq| (seq, payload(tag, seq).into_bytes()))
                    .collect();
                assert_eq!(got, want, "journal {tag} after {after}");
                assert_eq!(stopped, after + 4 <= 30);
            }
        }
    }

    /// Reads from every index point and at every size: records smaller and
    /// larger than a scan's first read (which must grow for them), and a
    /// middle record damaged, which ends a read that reaches it, and only
    /// that one.
    #[test]
    fn reads_of_mixed_sizes_and_a_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("s");
        let mut j = Journal::create(jdir.clone()).unwrap();
        let sizes = [10, 70_000, 5, 16_000, 300_000, 1, 40_000, 17_000];
        let payload = |seq: u64| format!("\"{}\"", "y".repeat(sizes[seq as usize % sizes.len()]));
        for seq in 1..=40u64 {
            j.append(&ev(seq, &payload(seq)), false).unwrap();
        }
        for after in 0..40u64 {
            let got = j.read(after, u64::MAX, 3, usize::MAX).unwrap();
            let want: Vec<u64> = (after + 1..=(after + 3).min(40)).collect();
            assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
            for e in &got {
                assert_eq!(e.payload, payload(e.seq).into_bytes().into());
            }
        }
        // Damage record 20's payload: reads before it are whole, a read
        // through it stops there, reads after it are unaffected.
        drop(j);
        let seg = jdir.join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        let (mut j, _, _) = Journal::open(jdir.clone()).unwrap();
        let mut at = 0;
        for seq in 1..20u64 {
            let mut rec = Vec::new();
            encode(&ev(seq, &payload(seq)), &mut rec);
            at += rec.len();
        }
        bytes[at + HEAD_BYTES + BODY_FIXED_BYTES] ^= 1;
        fs::write(&seg, &bytes).unwrap();
        let got = j.read(15, u64::MAX, 100, usize::MAX).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [16, 17, 18, 19]
        );
        let got = j.read(20, u64::MAX, 2, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [21, 22]);
    }

    #[test]
    fn torn_and_garbage_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("s");
        let mut j = Journal::create(jdir.clone()).unwrap();
        for seq in 1..=10 {
            j.append(&ev(seq, "\"payload\""), true).unwrap();
        }
        drop(j);
        let seg = jdir.join(segment_name(1));
        let whole = fs::read(&seg).unwrap();
        // Torn: half of a new record.
        let mut torn = whole.clone();
        let mut rec = Vec::new();
        encode(&ev(11, "\"more\""), &mut rec);
        torn.extend_from_slice(&rec[..rec.len() / 2]);
        fs::write(&seg, &torn).unwrap();
        let (mut j, warnings, _) = Journal::open(jdir.clone()).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(j.last_seq(), Some(10));
        assert_eq!(
            fs::read(&seg).unwrap(),
            whole,
            "cut back to the last whole record"
        );
        // Appending after recovery continues cleanly.
        j.append(&ev(11, "\"more\""), true).unwrap();
        drop(j);
        let (mut j, warnings, _) = Journal::open(jdir.clone()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(j.read(0, u64::MAX, 100, usize::MAX).unwrap().len(), 11);
        // Garbage from the start: nothing valid survives.
        fs::write(&seg, vec![0xA5; 5000]).unwrap();
        let (j, warnings, _) = Journal::open(jdir).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(j.is_empty());
    }
}
