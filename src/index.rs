//! The session index: `<home>/sessions.idx`, one fixed-size entry per
//! session in creation order (which is id order: ids begin with the
//! creation time and only grow), so that the daemon can list, page, count
//! and age out sessions without holding finished ones in memory.
//!
//! ```text
//! header (64 bytes): "COVENIDX" | version u32 LE | zeroes
//! entry  (64 bytes): id (32 bytes, NUL-padded) | status u8 | flags u8 |
//!                    reserved (2) | crc32 of the other 60 bytes (u32 LE) |
//!                    last_seq u64 | finished_secs u64 | journal_bytes u64
//! ```
//!
//! The index is a cache of what `meta.json` files and journals say: it is
//! written without fsync and rebuilt from them when it is missing or
//! damaged (`Sessions::rebuild_index`). Like the journal it stores what it
//! is told and decides no policy.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ENTRY_BYTES: usize = 64;
const HEADER_BYTES: u64 = 64;
const MAGIC: &[u8; 8] = b"COVENIDX";
const VERSION: u32 = 1;
/// The longest id an entry holds (this daemon's are 22 bytes).
pub const MAX_ID_BYTES: usize = 32;
/// Entries read per `pread` when scanning.
pub const CHUNK_ENTRIES: usize = 256;

const FLAG_ARCHIVED: u8 = 1;
/// `status` of a deleted session's entry (its place is kept, so positions
/// and ids stay in order).
const DELETED: u8 = 0xff;

/// One session as the index knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// The session's status as a number (`session::Status::code`), or
    /// `None` when the session was deleted.
    pub status: Option<u8>,
    pub archived: bool,
    /// Its newest event's seq, as of the last update.
    pub last_seq: u64,
    /// When it finished (Unix seconds); 0 while it runs.
    pub finished_secs: u64,
    pub journal_bytes: u64,
}

fn entry_crc(b: &[u8; ENTRY_BYTES]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..36]);
    h.update(&b[40..]);
    h.finalize()
}

impl Entry {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        let id = self.id.as_bytes();
        b[..id.len().min(MAX_ID_BYTES)].copy_from_slice(&id[..id.len().min(MAX_ID_BYTES)]);
        b[32] = self.status.unwrap_or(DELETED);
        b[33] = if self.archived { FLAG_ARCHIVED } else { 0 };
        b[40..48].copy_from_slice(&self.last_seq.to_le_bytes());
        b[48..56].copy_from_slice(&self.finished_secs.to_le_bytes());
        b[56..64].copy_from_slice(&self.journal_bytes.to_le_bytes());
        let crc = entry_crc(&b);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The entry, or `None` if its checksum or id is bad.
    pub fn decode(b: &[u8; ENTRY_BYTES]) -> Option<Entry> {
        let crc = u32::from_le_bytes(b[36..40].try_into().ok()?);
        if crc != entry_crc(b) {
            return None;
        }
        let len = b[..MAX_ID_BYTES]
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(MAX_ID_BYTES);
        let id = std::str::from_utf8(&b[..len]).ok()?.to_owned();
        if id.is_empty() {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        Some(Entry {
            id,
            status: (b[32] != DELETED).then_some(b[32]),
            archived: b[33] & FLAG_ARCHIVED != 0,
            last_seq: u64_at(40),
            finished_secs: u64_at(48),
            journal_bytes: u64_at(56),
        })
    }

    pub fn is_deleted(&self) -> bool {
        self.status.is_none()
    }
}

/// Where the entries live: the file, or memory for a daemon without a home
/// on disk (tests, benches, fuzzing).
#[derive(Debug)]
enum Backing {
    File(File),
    Memory(Vec<u8>),
}

impl Backing {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        match self {
            Backing::File(f) => f.read_exact_at(buf, at),
            Backing::Memory(m) => {
                let at = at as usize;
                let src = m
                    .get(at..at + buf.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    fn write_all_at(&mut self, buf: &[u8], at: u64) -> io::Result<()> {
        match self {
            Backing::File(f) => f.write_all_at(buf, at),
            Backing::Memory(m) => {
                let at = at as usize;
                if m.len() < at + buf.len() {
                    m.resize(at + buf.len(), 0);
                }
                m[at..at + buf.len()].copy_from_slice(buf);
                Ok(())
            }
        }
    }
}

/// The open index. Positions count entries from 0.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    file: Backing,
    len: u64,
}

fn header() -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn offset(pos: u64) -> u64 {
    HEADER_BYTES + pos * ENTRY_BYTES as u64
}

impl Index {
    /// Opens an existing index; `Err` if it is missing or not an index
    /// (the caller rebuilds it then). A torn last entry is cut off.
    pub fn open(path: &Path) -> io::Result<Index> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut h = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut h, 0)?;
        if h != header() {
            return Err(io::Error::other("not a session index of this version"));
        }
        let bytes = file.metadata()?.len() - HEADER_BYTES;
        let len = bytes / ENTRY_BYTES as u64;
        if !bytes.is_multiple_of(ENTRY_BYTES as u64) {
            file.set_len(offset(len))?;
        }
        Ok(Index {
            path: path.to_owned(),
            file: Backing::File(file),
            len,
        })
    }

    /// An index held in memory only.
    pub fn in_memory() -> Index {
        Index {
            path: PathBuf::new(),
            file: Backing::Memory(header().to_vec()),
            len: 0,
        }
    }

    /// Writes a whole new index (temp file, fsync, rename) and opens it.
    pub fn create(path: &Path, entries: &[Entry]) -> io::Result<Index> {
        let mut out = Vec::with_capacity(HEADER_BYTES as usize + entries.len() * ENTRY_BYTES);
        out.extend_from_slice(&header());
        for e in entries {
            out.extend_from_slice(&e.encode());
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(io::Error::other(
                "an index path needs a directory and a name",
            ));
        };
        crate::journal::write_atomic(dir, name, &out, true)?;
        Index::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries, deleted ones included.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Another handle on the index file, for syncing it elsewhere (the
    /// writer); `None` for an index in memory.
    pub fn sync_handle(&self) -> Option<io::Result<File>> {
        match &self.file {
            Backing::File(f) => Some(f.try_clone()),
            Backing::Memory(_) => None,
        }
    }

    /// Appends an entry; returns its position.
    pub fn append(&mut self, e: &Entry) -> io::Result<u64> {
        let pos = self.len;
        self.file.write_all_at(&e.encode(), offset(pos))?;
        self.len += 1;
        Ok(pos)
    }

    /// Replaces the entry at `pos`.
    pub fn write(&mut self, pos: u64, e: &Entry) -> io::Result<()> {
        debug_assert!(pos < self.len);
        self.file.write_all_at(&e.encode(), offset(pos))
    }

    /// Entries `from..to` (clamped to the index), `None` where one is
    /// damaged.
    pub fn read_range(&self, from: u64, to: u64) -> io::Result<Vec<Option<Entry>>> {
        let to = to.min(self.len);
        if from >= to {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (to - from) as usize * ENTRY_BYTES];
        self.file.read_exact_at(&mut buf, offset(from))?;
        Ok(buf
            .chunks_exact(ENTRY_BYTES)
            .map(|c| Entry::decode(c.try_into().expect("64 bytes")))
            .collect())
    }

    pub fn read(&self, pos: u64) -> io::Result<Option<Entry>> {
        Ok(self.read_range(pos, pos + 1)?.pop().flatten())
    }

    /// The number of entries whose id is less than `id` (ids are in
    /// ascending order): the position of `id` if it is there.
    pub fn lower_bound(&self, id: &str) -> io::Result<u64> {
        let (mut lo, mut hi) = (0u64, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let less = match self.read(mid)? {
                Some(e) => e.id.as_str() < id,
                // A damaged entry: treat as smaller, which keeps the
                // search going (a rebuild at the next start fixes it).
                None => true,
            };
            if less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The position of the entry with this id, if any.
    pub fn find(&self, id: &str) -> io::Result<Option<(u64, Entry)>> {
        let pos = self.lower_bound(id)?;
        Ok(self.read(pos)?.filter(|e| e.id == id).map(|e| (pos, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(id: &str, status: u8) -> Entry {
        Entry {
            id: id.into(),
            status: Some(status),
            last_seq: 7,
            finished_secs: 1_700_000_000,
            journal_bytes: 4096,
            ..Entry::default()
        }
    }

    #[test]
    fn entries_round_trip_and_damage_is_seen() {
        let e = Entry {
            archived: true,
            ..entry("1700000000000-0badcafe", 3)
        };
        let b = e.encode();
        assert_eq!(Entry::decode(&b), Some(e.clone()));
        let deleted = Entry { status: None, ..e };
        assert!(Entry::decode(&deleted.encode()).unwrap().is_deleted());
        for i in 0..ENTRY_BYTES {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert_eq!(Entry::decode(&bad), None, "byte {i}");
        }
    }

    #[test]
    fn append_write_search_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.idx");
        let mut idx = Index::create(&path, &[entry("a1", 1), entry("a3", 1)]).unwrap();
        assert_eq!(idx.append(&entry("a5", 0)).unwrap(), 2);
        idx.write(
            1,
            &Entry {
                status: None,
                ..entry("a3", 1)
            },
        )
        .unwrap();
        assert_eq!(idx.lower_bound("a0").unwrap(), 0);
        assert_eq!(idx.lower_bound("a3").unwrap(), 1);
        assert_eq!(idx.lower_bound("a4").unwrap(), 2);
        assert_eq!(idx.lower_bound("a9").unwrap(), 3);
        assert_eq!(idx.find("a5").unwrap().unwrap().0, 2);
        assert!(idx.find("a4").unwrap().is_none());
        drop(idx);
        // A torn append is cut off; the rest reads back.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.len(), 3);
        let all = idx.read_range(0, 10).unwrap();
        assert!(all[1].as_ref().unwrap().is_deleted());
        assert_eq!(all[2].as_ref().unwrap().id, "a5");
        std::fs::write(&path, b"not an index").unwrap();
        assert!(Index::open(&path).is_err());
    }
}
