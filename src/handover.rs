//! A live restart: the serving process replaces its program (`execve`, so
//! the pid, the supervisor's link, the listener and every PTY stay), and
//! hands the new program what only memory held.
//!
//! Before it lets go, the running server asks the binary now at the path
//! it started from what it can take (`coven daemon _handover`: the
//! handover format and the supervisor protocol it speaks); a binary that
//! cannot take over is refused and nothing changes. Then it writes this
//! document to an unlinked file, clears close-on-exec on the descriptors
//! it names, and execs `coven daemon _server` with the file's descriptor
//! in `COVEN_HANDOVER_FD`. Everything on disk (records, journals, sizes)
//! is read back as at any start; the document carries the rest: each live
//! session's descriptors, queued input, carried UTF-8 tail, kill and drain
//! deadlines and exit status, the sequence, the counters, and the idle
//! client connections, which the new program serves as if nothing
//! happened.

use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::home::DaemonInfo;

/// The environment variable naming the document's descriptor.
pub const HANDOVER_FD_ENV: &str = "COVEN_HANDOVER_FD";
/// How long the new binary has to say what it takes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a live restart hands the new program.
#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Handover {
    /// `version()` of the build that wrote it.
    pub version: u32,
    /// The supervisor's protocol (it said so when this server's line began).
    pub protocol: u32,
    /// The program's path, as the supervisor started it.
    pub exe: PathBuf,
    /// The identity clients know this daemon by: it stays the same.
    pub daemon: Option<DaemonInfo>,
    pub next_seq: u64,
    pub accepted_connections: u64,
    pub refused_connections: u64,
    pub requests: u64,
    /// Live restarts before this one.
    pub live_restarts: u64,
    pub sessions: Vec<Carried>,
    /// Idle client connections (their sockets).
    pub conns: Vec<RawFd>,
}

/// A session's state that only memory held.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Carried {
    pub id: String,
    /// Its harness, if it is live.
    pub live: Option<Live>,
    /// Events the journal refused since the last `output_truncated`.
    pub gap_events: u64,
    pub gap_bytes: u64,
    /// Its `meta.json` or journal sync is behind (a refused write).
    pub meta_dirty: bool,
    pub resync: bool,
    pub history_cut: bool,
}

/// A live session's process and terminal.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// The process group (the harness's pid).
    pub pgid: i32,
    pub master: RawFd,
    /// Our slave descriptor, until the harness is reaped and read dry.
    pub slave: Option<RawFd>,
    pub killed: bool,
    /// Its raw wait status, if it ended.
    pub exit: Option<i32>,
    /// The PTY reported EOF.
    pub eof: bool,
    /// An incomplete UTF-8 sequence read but not yet recorded (hex).
    pub tail: String,
    /// Input not yet written to the PTY (hex).
    pub input: String,
    /// A kill's escalation to SIGKILL, in milliseconds from the handover.
    pub escalate_in_ms: Option<u64>,
    /// When to stop waiting for EOF after the exit, likewise.
    pub drain_in_ms: Option<u64>,
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a binary says it can take over.
#[derive(Deserialize, Debug)]
struct Description {
    handover: u32,
    protocol: u32,
    version: String,
    build: String,
    config: String,
}

/// Asks the binary at `exe` whether it can take over from this one under
/// a supervisor speaking `protocol`; `Ok` names the build, `Err` says why
/// not. Runs it (`coven daemon _handover`), waiting at most a few seconds.
pub fn check(exe: &Path, protocol: u32) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .args(["daemon", "_handover"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove(SERVER_FDS_ENV)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let mut out = Vec::new();
    let read = child.stdout.take().map(|stdout| {
        crate::sys::process::read_with_timeout(stdout, &mut out, 4096, CHECK_TIMEOUT)
    });
    let _ = child.kill();
    let status = child.wait();
    if !matches!(read, Some(Ok(()))) {
        return Err(format!(
            "{} did not say what it takes over in {} s",
            exe.display(),
            CHECK_TIMEOUT.as_secs()
        ));
    }
    let line = String::from_utf8_lossy(&out);
    let Ok(found) = serde_json::from_str::<Description>(line.trim()) else {
        return Err(format!(
            "{} cannot take over a running daemon (it does not know `coven daemon _handover`{})",
            exe.display(),
            match status {
                Ok(s) if !s.success() => format!("; {s}"),
                _ => String::new(),
            }
        ));
    };
    if found.handover != version() {
        return Err(format!(
            "{} (coven {}, build {}) reads handover format {}; this daemon writes {}",
            exe.display(),
            found.version,
            found.build,
            found.handover,
            version()
        ));
    }
    if found.protocol != protocol {
        return Err(format!(
            "{} (coven {}, build {}) speaks supervisor protocol {}; the running supervisor speaks {} \
             (stop and start the daemon to change it)",
            exe.display(),
            found.version,
            found.build,
            found.protocol,
            protocol
        ));
    }
    if found.config != "ok" {
        return Err(format!(
            "{} (coven {}, build {}) would not start: {}",
            exe.display(),
            found.version,
            found.build,
            found.config
        ));
    }
    Ok(format!("coven {}, build {}", found.version, found.build))
}

/// Writes the document into an unlinked file in `dir`; its descriptor.
pub fn write(dir: &Path, doc: &Handover) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(".handover-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    // Encoded first, written in one go (not a system call per field).
    let bytes = serde_json::to_vec(doc).map_err(io::Error::other)?;
    file.write_all(&bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// Reads the document a previous program left (`COVEN_HANDOVER_FD`), and
/// takes the variable out of the environment. `None`: a plain start.
pub fn take() -> io::Result<Option<Handover>> {
    let Some(value) = std::env::var_os(HANDOVER_FD_ENV) else {
        return Ok(None);
    };
    std::env::remove_var(HANDOVER_FD_ENV);
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{HANDOVER_FD_ENV} is not a descriptor")))?;
    if !crate::sys::process::is_open(fd) {
        return Err(io::Error::other(format!(
            "{HANDOVER_FD_ENV}={fd} is not open"
        )));
    }
    // SAFETY: the previous program left this descriptor for us alone.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let doc: Handover = serde_json::from_slice(&text).map_err(io::Error::other)?;
    if doc.version != version() {
        return Err(io::Error::other(format!(
            "handover format {} (this build reads {})",
            doc.version,
            version()
        )));
    }
    Ok(Some(doc))
}

/// Replaces this program with `exe` (`coven daemon _server`), handing it
/// `doc` and every descriptor in `keep`. Returns only if that failed, with
/// the descriptors close-on-exec again.
pub fn exec(exe: &Path, doc: &OwnedFd, keep: &[RawFd]) -> io::Error {
    use std::os::unix::process::CommandExt;
    let all: Vec<RawFd> = keep
        .iter()
        .copied()
        .chain(std::iter::once(doc.as_raw_fd()))
        .collect();
    for &fd in &all {
        crate::sys::process::set_cloexec(fd, false);
    }
    let err = std::process::Command::new(exe)
        .args(["daemon", "_server"])
        .env(HANDOVER_FD_ENV, doc.as_raw_fd().to_string())
        .exec();
    for &fd in &all {
        crate::sys::process::set_cloexec(fd, true);
    }
    err
}

/// This build's handover format, kept in the binary as text so that a
/// build's own bytes say what it takes (`coven daemon _handover` prints
/// it; tests make an incompatible build by changing these digits).
#[used]
static HANDOVER_MARK: [u8; 26] = *b"coven-handover-version:001";
/// A free-form tag of this build, kept the same way (tests make a second
/// build by changing it); `dev` unless changed.
#[used]
static BUILD_MARK: [u8; 40] = *b"coven-build:dev\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Reads a marker through a volatile load, so that the bytes in the
/// binary, not a value the compiler folded in, are what count.
fn read_mark<const N: usize>(mark: &'static [u8; N]) -> [u8; N] {
    // SAFETY: a valid, aligned reference to a static array.
    unsafe { std::ptr::read_volatile(mark) }
}

/// The handover format this build writes and reads.
pub fn version() -> u32 {
    let mark = read_mark(&HANDOVER_MARK);
    mark[23..]
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d.wrapping_sub(b'0') % 10))
}

/// This build's tag.
pub fn build() -> String {
    let mark = read_mark(&BUILD_MARK);
    let tag = &mark[b"coven-build:".len()..];
    let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
    String::from_utf8_lossy(&tag[..end]).into_owned()
}

/// The environment variable that gives a serving process its descriptors:
/// `<link>,<listener>,<lock>`.
pub const SERVER_FDS_ENV: &str = "COVEN_SERVER_FDS";

/// What `coven daemon _handover` prints: one line of JSON. `config` is
/// what this build makes of the home's config.json (`ok`, or the error
/// that would stop it at start).
pub fn describe(config: Result<(), String>, protocol: u32) -> String {
    serde_json::json!({
        "handover": version(),
        "protocol": protocol,
        "version": env!("CARGO_PKG_VERSION"),
        "build": build(),
        "config": config.err().unwrap_or_else(|| "ok".to_owned()),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_read_back() {
        assert_eq!(version(), 1);
        assert_eq!(build(), "dev");
    }

    #[test]
    fn hex_round_trips() {
        for bytes in [&b""[..], b"\x00\xff\xe2\x82", b"hello\n"] {
            assert_eq!(unhex(&hex(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn a_document_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let doc = Handover {
            version: version(),
            next_seq: 42,
            sessions: vec![Carried {
                id: "s".into(),
                live: Some(Live {
                    pgid: 7,
                    master: 9,
                    input: hex(b"queued"),
                    escalate_in_ms: Some(1500),
                    ..Live::default()
                }),
                ..Carried::default()
            }],
            ..Handover::default()
        };
        let fd = write(dir.path(), &doc).unwrap();
        // Nothing is left in the directory: the file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
        let back: Handover = serde_json::from_str(&text).unwrap();
        assert_eq!(back.next_seq, 42);
        assert_eq!(back.sessions, doc.sessions);
    }
}
