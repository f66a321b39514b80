//! The other files of a session's directory, beside its segments:
//! `meta.json` (replaced atomically), `sizes` (the terminal's size over
//! time, appended) and `exit` (the final records' reserved place).
//! Nothing read from them is trusted: sizes outside the API's bounds are
//! skipped, lengths are checked before anything is allocated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{decode, encode};
use crate::ring::{Event, Kind};

/// A session's terminal sizes over time live beside its journal, in
/// `<dir>/sizes`: one line per size it was given (at launch, then at each
/// resize), `<seq of the newest event before it> <unix ms> <cols> <rows>`.
/// Sizes are not events (clients see no new event kind); screens and
/// recordings read them back.
pub const SIZES_FILE: &str = "sizes";
/// At most this much of the sizes file is read back, its newest part (a
/// client resizing without end cannot make reading it unbounded): some
/// 30,000 sizes.
const MAX_SIZES_BYTES: u64 = 1024 * 1024;

/// The largest terminal side, in cells, a size may have: what the API
/// accepts (launch and resize), and so the most a file on disk may say; a
/// larger one was not written by this daemon.
pub const MAX_TERMINAL_SIDE: u16 = 1000;

/// Whether a terminal size is one the daemon could have given.
pub fn size_fits(cols: u16, rows: u16) -> bool {
    (1..=MAX_TERMINAL_SIDE).contains(&cols) && (1..=MAX_TERMINAL_SIDE).contains(&rows)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// The newest event before it took effect (0: before the first).
    pub after: u64,
    pub unix_ms: u64,
    pub cols: u16,
    pub rows: u16,
}

/// Appends a size to `<dir>/sizes` (a few bytes; not synced: a size lost in
/// a crash only makes a redraw of old output less faithful).
///
/// Every launch does this, so it allocates nothing: line and path are built
/// on the stack (a transient allocation between a session's long-lived ones
/// leaves a hole in the heap for as long as the session lives).
pub fn append_size(dir: &Path, size: Size) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut line = [0u8; 80];
    let mut len = 0;
    let mut digits = itoa::Buffer::new();
    for (n, sep) in [
        (size.after, b' '),
        (size.unix_ms, b' '),
        (u64::from(size.cols), b' '),
        (u64::from(size.rows), b'\n'),
    ] {
        let text = digits.format(n).as_bytes();
        line[len..len + text.len()].copy_from_slice(text);
        len += text.len();
        line[len] = sep;
        len += 1;
    }
    let mut path = [0u8; 256];
    let dir = dir.as_os_str().as_bytes();
    let name = SIZES_FILE.as_bytes();
    let owned;
    let full = if dir.len() + 1 + name.len() <= path.len() {
        path[..dir.len()].copy_from_slice(dir);
        path[dir.len()] = b'/';
        path[dir.len() + 1..dir.len() + 1 + name.len()].copy_from_slice(name);
        Path::new(std::ffi::OsStr::from_bytes(
            &path[..dir.len() + 1 + name.len()],
        ))
    } else {
        owned = Path::new(std::ffi::OsStr::from_bytes(dir)).join(SIZES_FILE);
        &owned
    };
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(full)?
        .write_all(&line[..len])
}

/// The sizes recorded in `<dir>` (the newest `MAX_SIZES_BYTES` of them),
/// oldest first; lines that do not parse are skipped.
pub fn read_sizes(dir: &Path) -> Vec<Size> {
    let Ok(file) = File::open(dir.join(SIZES_FILE)) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(MAX_SIZES_BYTES);
    let mut buf = vec![0u8; (len - from) as usize];
    if file.read_exact_at(&mut buf, from).is_err() {
        return Vec::new();
    }
    let mut text = &buf[..];
    if from > 0 {
        // Started mid-line: skip to the next.
        text = memchr::memchr(b'\n', text).map_or(&[][..], |at| &text[at + 1..]);
    }
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let mut f = line.split(' ');
            let size = Size {
                after: f.next()?.parse().ok()?,
                unix_ms: f.next()?.parse().ok()?,
                cols: f.next()?.parse().ok()?,
                rows: f.next()?.parse().ok()?,
            };
            (f.next().is_none() && size_fits(size.cols, size.rows)).then_some(size)
        })
        .collect()
}

/// Replaces `<dir>/<name>` atomically (a 0600 temp file, then a rename);
/// `sync` also makes it durable (file and directory fsynced).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
    crate::on_loop::assert_off_loop("an atomic write");
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub fn read_meta(dir: &Path) -> io::Result<Vec<u8>> {
    fs::read(dir.join("meta.json"))
}

/// A session's final record has its place before it is needed:
/// `<dir>/exit`, `EXIT_FILE_BYTES` of zeros written at launch (blocks the
/// file system has allocated, not a hole), overwritten in place with the
/// `exit` event's record when the session ends. Overwriting allocated
/// blocks takes no new space on file systems that write in place (ext4,
/// XFS, APFS without snapshots, UFS, tmpfs), so a session that ends on a
/// full disk still leaves its true status; a copy-on-write file system
/// (btrfs, ZFS) may refuse it like any other write.
pub const EXIT_FILE: &str = "exit";
pub(super) const EXIT_FILE_BYTES: usize = 4096;

/// Reserves the final record's place; returns the file for syncing.
pub fn reserve_exit(dir: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(EXIT_FILE))?;
    file.write_all(&[0u8; EXIT_FILE_BYTES])?;
    Ok(file)
}

/// Writes a session's last records into its reserved place: the
/// `output_truncated` event of a gap not yet declared, if any, then the
/// `exit` event (records that do not fit are refused; nothing is
/// appended). Returns the file for syncing.
pub fn write_exit(dir: &Path, events: &[Event]) -> io::Result<File> {
    let mut records = Vec::with_capacity(256);
    for e in events {
        encode(e, &mut records);
    }
    if records.len() > EXIT_FILE_BYTES {
        return Err(io::Error::other("the exit record does not fit its place"));
    }
    let file = OpenOptions::new().write(true).open(dir.join(EXIT_FILE))?;
    file.write_all_at(&records, 0)?;
    Ok(file)
}

/// The records written into the reserved place, if its last one is the
/// `exit` event (else none: it was never written, or is damaged).
pub fn read_exit(dir: &Path) -> Vec<Event> {
    let Ok(file) = File::open(dir.join(EXIT_FILE)) else {
        return Vec::new();
    };
    let mut buf = vec![0u8; EXIT_FILE_BYTES];
    let Ok(n) = file.read_at(&mut buf, 0) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let mut at = 0;
    while let Ok(Some((e, len))) = decode(&buf[at..n]) {
        at += len;
        let last = e.kind == Kind::Exit;
        events.push(e);
        if last {
            return events;
        }
    }
    Vec::new()
}
