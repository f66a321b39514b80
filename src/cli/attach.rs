//! `coven attach`, and `coven run`, which launches and then attaches: the
//! local terminal wired to a session through the socket API.
//!
//! One thread and one wait (`sys::term::wait_readable`: `poll(2)`, or
//! `select(2)` on macOS, whose `poll` refuses terminals) over three
//! descriptors: the terminal's input, the session's event stream, and a
//! self-pipe for signals. Not mio, because stdin may be a regular file or
//! `/dev/null`, which epoll refuses.
//!
//! The way through: raw mode on (when stdin is a terminal), the terminal size
//! sent, the session's screen drawn from its snapshot (`/screen?format=ansi`,
//! whatever the length of its history; when stdout is not a terminal, the
//! history replayed from the paged events route instead), then the stream
//! followed from the event the snapshot (or the replay) showed last. Keystrokes go to
//! `POST /input`; `SIGWINCH` becomes `POST /resize`; Ctrl-] detaches. Every
//! way out returns through `attach`, which restores the terminal (the raw-mode
//! guard also restores it while a panic unwinds).

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::termios::{self, SetArg, Termios};
use serde_json::{json, Value};

use super::args::RunArgs;
use super::client::{Client, ClientError, SseDecoder};

/// The byte Ctrl-] sends: it detaches, as it escapes telnet.
pub const DETACH_KEY: u8 = 0x1d;

/// How long the replay's stale terminal replies may take to arrive (see
/// `Sync`). A terminal answers in milliseconds; one that never answers
/// (and does not call itself `dumb`) costs this once.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// How long a keystroke is retried while the session's input queue is full.
const INPUT_RETRY: Duration = Duration::from_secs(10);

/// How an attachment ended.
#[derive(Debug)]
pub enum End {
    /// Ctrl-]; the session keeps running.
    Detached,
    /// The session ended: its `exit` event's payload.
    Exited(Value),
    /// The stream broke without an `exit` event.
    DaemonGone(String),
    /// A signal told this client to stop; the session keeps running.
    Signalled(i32),
}

impl End {
    /// The exit status of `coven attach` / `coven run`: the session's own,
    /// as `docker run` and `ssh` pass theirs on.
    pub fn exit_code(&self) -> u8 {
        match self {
            End::Detached => 0,
            End::Exited(p) => match (p["exitCode"].as_i64(), signal_of(p)) {
                (Some(code), _) => code.clamp(0, 255) as u8,
                (None, Some(n)) => 128u8.saturating_add(n),
                (None, None) => 1,
            },
            End::DaemonGone(_) => 1,
            End::Signalled(sig) => 128u8.saturating_add(*sig as u8),
        }
    }

    fn message(&self, id: &str) -> String {
        match self {
            End::Detached => format!("detached from {id} (coven attach {id} returns to it)"),
            End::Exited(p) => {
                let status = p["status"].as_str().unwrap_or("ended");
                match (p["exitCode"].as_i64(), p["signal"].as_str(), signal_of(p)) {
                    (Some(code), ..) => format!("session {id} {status} (exit code {code})"),
                    (None, Some(sig), _) => format!("session {id} {status} (signal {sig})"),
                    (None, None, Some(n)) => format!("session {id} {status} (signal {n})"),
                    (None, None, None) => format!("session {id} {status}"),
                }
            }
            End::DaemonGone(why) => format!("lost the daemon ({why}); session {id}"),
            End::Signalled(sig) => format!("stopped by signal {sig}; session {id} keeps running"),
        }
    }
}

/// The number of the signal that ended the session: `signalNumber`, or
/// (from a daemon that did not send it) the number of its `signal` name.
fn signal_of(exit: &serde_json::Value) -> Option<u8> {
    if let Some(n) = exit["signalNumber"].as_u64() {
        return u8::try_from(n).ok();
    }
    let name = exit["signal"].as_str()?;
    let full = format!("SIG{}", name.trim_start_matches("SIG"));
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32 as u8)
}

/// `coven run`: launch, then attach unless `--detach`. Returns the exit
/// status.
pub fn run(
    client: &Client,
    args: &RunArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<u8, ClientError> {
    let io =
        |what: &str, e: io::Error| ClientError::failed("client_failed", format!("{what}: {e}"));
    let here = std::env::current_dir().map_err(|e| io("the current directory", e))?;
    let root = match &args.root {
        Some(r) => here.join(r),
        None => here.clone(),
    };
    let mut body = json!({
        "projectRoot": root,
        "harness": args.harness,
        "prompt": args.prompt,
    });
    if let Some(t) = &args.title {
        body["title"] = json!(t);
    }
    match (&args.cwd, default_cwd(&root, &here)) {
        (Some(c), _) => body["cwd"] = json!(c),
        (None, Some(c)) => body["cwd"] = json!(c),
        (None, None) => {}
    }
    if let Some((cols, rows)) = window_size() {
        body["cols"] = json!(cols);
        body["rows"] = json!(rows);
    }
    let record = client.call("POST", "/api/v1/sessions", Some(&body))?;
    let id = record["id"].as_str().unwrap_or_default().to_owned();
    if args.detach {
        let written = if json {
            writeln!(out, "{record}")
        } else {
            writeln!(out, "{id}")
        };
        written.map_err(ClientError::Output)?;
        return Ok(0);
    }
    // A new session's queries (cursor position and the like) are live and
    // must be answered, so no replies are dropped here.
    attach(client, &id, false)
}

/// The current directory as the session's cwd when it lies strictly inside
/// the root (as git runs from a subdirectory); else the root itself.
fn default_cwd(root: &std::path::Path, here: &std::path::Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let here = here.canonicalize().ok()?;
    (here != root && here.starts_with(&root)).then_some(here)
}

/// `coven attach <id>` (a resolved id). Returns the exit status, after the
/// terminal is restored and the way it ended is printed on stderr.
///
/// `drop_replies`: a replayed history (from a daemon without screens)
/// holds the harness's old terminal
/// queries (cursor position, colours); the local terminal answers them,
/// and those answers must not reach the live harness as typed input.
pub fn attach(client: &Client, id: &str, drop_replies: bool) -> Result<u8, ClientError> {
    let signals = SignalPipe::install()
        .map_err(|e| ClientError::failed("client_failed", format!("signal handlers: {e}")))?;
    let raw = RawMode::enter();
    let mut screen = Screen::default();
    let result = follow(
        client,
        id,
        &signals,
        &mut screen,
        drop_replies && raw.is_some(),
    );
    screen.restore(io::stdout().is_terminal());
    drop(raw);
    let end = result?;
    let lead = if screen.at_line_start { "" } else { "\n" };
    eprintln!("{lead}coven: {}", end.message(id));
    Ok(end.exit_code())
}

fn follow(
    client: &Client,
    id: &str,
    signals: &SignalPipe,
    screen: &mut Screen,
    drop_replies: bool,
) -> Result<End, ClientError> {
    let mut size = window_size();
    if let Some((cols, rows)) = size {
        resize(client, id, cols, rows)?;
    }

    // On a terminal, draw the screen as it is now, then follow from the
    // event it shows last: however long the history, one small answer. A
    // file or pipe gets the output as it was, from the start.
    let drawn = if io::stdout().is_terminal() {
        snapshot(client, id)?
    } else {
        None
    };
    let cursor = match drawn {
        Some((cursor, redraw)) => {
            screen.track(&redraw);
            screen.write(&redraw)?;
            cursor
        }
        None => {
            // A daemon without screens: replay what is recorded so far.
            let (cursor, end) = client.events(id, 0, |e| {
                if let Some(sig) = signals.stop() {
                    return Ok(Some(End::Signalled(sig)));
                }
                screen.show(e)
            })?;
            if let Some(end) = end {
                return Ok(end);
            }
            cursor
        }
    };
    screen.flush()?;
    let mut sync = Sync::None;
    if drop_replies && screen.replayed {
        // Device status report: the terminal answers ESC [ 0 n after every
        // reply to what it was shown before, so what precedes it is stale.
        screen.write(b"\x1b[5n")?;
        screen.flush()?;
        sync = Sync::Until(Instant::now() + SYNC_WAIT);
    }

    let (mut stream, body) =
        client.open_stream(&format!("/api/v1/sessions/{id}/stream?afterSeq={cursor}"))?;
    stream
        .set_nonblocking(true)
        .map_err(ClientError::Unreachable)?;
    let mut frames = SseDecoder::default();
    frames.feed(&body);
    let mut typed = Typed::default();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(record) = frames.next_record() {
            if let Some(end) = screen.show(&record?)? {
                return Ok(end);
            }
        }
        screen.flush()?;
        if let Some(sig) = signals.stop() {
            return Ok(End::Signalled(sig));
        }
        if signals.winch.swap(false, Ordering::Relaxed) {
            let now = window_size();
            if let (Some((cols, rows)), true) = (now, now != size) {
                resize(client, id, cols, rows)?;
            }
            size = now;
        }

        let timeout = match sync {
            Sync::Until(t) => Some(t.saturating_duration_since(Instant::now())),
            Sync::None => None,
        };
        let stdin = io::stdin();
        let (stream_ready, stdin_ready) = {
            let mut fds = vec![signals.read.as_fd(), stream.as_fd()];
            if stdin_open {
                fds.push(stdin.as_fd());
            }
            let ready = match crate::sys::term::wait_readable(&fds, timeout) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Unreachable(e)),
            };
            signals.drain();
            (ready[1], ready.get(2).copied().unwrap_or(false))
        };
        if let Sync::Until(t) = sync {
            if Instant::now() >= t {
                sync = Sync::None;
            }
        }

        if stream_ready {
            // Bounded, so that a fast session is shown as it is read rather
            // than gathered here.
            for _ in 0..16 {
                let gone = match stream.read(&mut buf) {
                    Ok(0) => "the stream ended before the session did".to_owned(),
                    Ok(n) => {
                        frames.feed(&buf[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => e.to_string(),
                };
                // What arrived before the end may hold the exit event.
                while let Some(record) = frames.next_record() {
                    if let Some(end) = screen.show(&record?)? {
                        return Ok(end);
                    }
                }
                return Ok(ended_without_exit(client, id, gone));
            }
        }

        if stdin_ready {
            let n = match stdin.lock().read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ClientError::failed(
                        "client_failed",
                        format!("reading input: {e}"),
                    ))
                }
            };
            if n == 0 {
                // Input from a file or pipe ran out: keep following output.
                stdin_open = false;
                continue;
            }
            let mut bytes = &buf[..n];
            if let Sync::Until(_) = sync {
                match sync_reply_end(bytes) {
                    Some(end) => {
                        bytes = &bytes[end..];
                        sync = Sync::None;
                    }
                    None => continue,
                }
            }
            let detach = memchr::memchr(DETACH_KEY, bytes);
            let send = &bytes[..detach.unwrap_or(bytes.len())];
            if let Some(text) = typed.text(send) {
                if let Some(end) = send_input(client, id, &text)? {
                    return Ok(end);
                }
            }
            if detach.is_some() {
                return Ok(End::Detached);
            }
        }
    }
}

/// The session's screen as bytes that redraw it, and the newest event it
/// reflects (`Coven-Seq`); `None` from a daemon that has no screen route.
fn snapshot(client: &Client, id: &str) -> Result<Option<(u64, Vec<u8>)>, ClientError> {
    let path = format!("/api/v1/sessions/{id}/screen?format=ansi");
    match client.fetch("GET", &path, None, Duration::from_secs(120)) {
        Ok((head, body)) => {
            let seq = head
                .lines()
                .find_map(|l| l.strip_prefix("coven-seq:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ClientError::Protocol("a screen without Coven-Seq".into()))?;
            Ok(Some((seq, body)))
        }
        Err(ClientError::Api { code, .. }) if code == "not_found" => Ok(None),
        Err(e) => Err(e),
    }
}

/// The stream ended with no `exit` event: a session that failed to spawn
/// or was orphaned by a crash has none, so its record says how it ended.
/// If the daemon cannot say, it is gone.
fn ended_without_exit(client: &Client, id: &str, why: String) -> End {
    match client.call("GET", &format!("/api/v1/sessions/{id}"), None) {
        Ok(s) if s["status"] != "running" => End::Exited(json!({
            "status": s["status"],
            "exitCode": s["exit_code"],
        })),
        _ => End::DaemonGone(why),
    }
}

/// Whether input is being discarded until the terminal's status report.
#[derive(Clone, Copy)]
enum Sync {
    None,
    Until(Instant),
}

/// Where the terminal's answer to `ESC [ 5 n` ends in `bytes`, if it is
/// there: `ESC [ 0 n` (ok) or `ESC [ 3 n` (malfunction).
fn sync_reply_end(bytes: &[u8]) -> Option<usize> {
    [b"\x1b[0n", b"\x1b[3n"]
        .iter()
        .filter_map(|reply| memchr::memmem::rfind(bytes, *reply).map(|at| at + reply.len()))
        .max()
}

/// Sends typed text. A full input queue is retried for a while; a session
/// that is no longer live is not an error (its exit event is on the way).
fn send_input(client: &Client, id: &str, text: &str) -> Result<Option<End>, ClientError> {
    let path = format!("/api/v1/sessions/{id}/input");
    let body = json!({ "data": text });
    let start = Instant::now();
    loop {
        match client.call("POST", &path, Some(&body)) {
            Ok(_) => return Ok(None),
            Err(ClientError::Api { status: 409, .. }) => return Ok(None),
            Err(ClientError::Api { status: 503, .. }) if start.elapsed() < INPUT_RETRY => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(ClientError::Unreachable(e)) => return Ok(Some(End::DaemonGone(e.to_string()))),
            Err(e) => return Err(e),
        }
    }
}

/// Sends the window size; a session that has ended refuses it, which is fine.
fn resize(client: &Client, id: &str, cols: u16, rows: u16) -> Result<(), ClientError> {
    let body = json!({ "cols": cols, "rows": rows });
    match client.call(
        "POST",
        &format!("/api/v1/sessions/{id}/resize"),
        Some(&body),
    ) {
        Ok(_) | Err(ClientError::Api { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub use crate::sys::term::window_size;

/// Typed bytes to the `data` string the input route takes: a UTF-8
/// character split across reads is carried to the next one.
#[derive(Default)]
struct Typed {
    carry: Vec<u8>,
}

impl Typed {
    fn text(&mut self, bytes: &[u8]) -> Option<String> {
        self.carry.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            // An incomplete character at the end waits for its rest.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.carry.len(),
        };
        if valid == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&self.carry[..valid]).into_owned();
        self.carry.drain(..valid);
        Some(text)
    }
}

/// The session's output on the local terminal, and what restoring it needs.
struct Screen {
    out: io::Stdout,
    /// The last output switched to the alternate screen and has not left it.
    alternate: bool,
    at_line_start: bool,
    /// Whether the replay printed anything.
    replayed: bool,
}

impl Default for Screen {
    fn default() -> Screen {
        Screen {
            out: io::stdout(),
            alternate: false,
            at_line_start: true,
            replayed: false,
        }
    }
}

impl Screen {
    /// Shows one event record; an `exit` ends the attachment.
    fn show(&mut self, e: &Value) -> Result<Option<End>, ClientError> {
        let payload = super::client::payload(e);
        match e["kind"].as_str() {
            Some("output") => {
                let data = payload["data"].as_str().unwrap_or("").as_bytes();
                self.track(data);
                self.write(data)?;
                self.replayed = true;
                Ok(None)
            }
            Some("exit") => Ok(Some(End::Exited(payload))),
            _ => Ok(None),
        }
    }

    fn track(&mut self, data: &[u8]) {
        let enter = memchr::memmem::rfind(data, b"\x1b[?1049h");
        let leave = memchr::memmem::rfind(data, b"\x1b[?1049l");
        match (enter, leave) {
            (Some(a), Some(b)) => self.alternate = a > b,
            (Some(_), None) => self.alternate = true,
            (None, Some(_)) => self.alternate = false,
            (None, None) => {}
        }
        if let Some(&last) = data.last() {
            self.at_line_start = last == b'\n';
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.out.write_all(bytes).map_err(ClientError::Output)
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        self.out.flush().map_err(ClientError::Output)
    }

    /// Undoes the modes a harness may have left the terminal in: the
    /// alternate screen, hidden cursor, mouse reporting, bracketed paste,
    /// colours. Only for a terminal; a file gets the output as it was.
    fn restore(&mut self, terminal: bool) {
        if !terminal {
            let _ = self.out.flush();
            return;
        }
        if self.alternate {
            let _ = self.out.write_all(b"\x1b[?1049l");
            self.at_line_start = true;
        }
        let _ = self
            .out
            .write_all(b"\x1b[0m\x1b[?25h\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l");
        let _ = self.out.flush();
    }
}

/// The terminal in raw mode for as long as this lives.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// None when stdin is not a terminal.
    fn enter() -> Option<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Signals as flags plus a byte on a socket pair that wakes `poll`.
struct SignalPipe {
    read: UnixStream,
    winch: Arc<AtomicBool>,
    /// The number of the last stop signal, 0 for none.
    stop: Arc<AtomicUsize>,
}

impl SignalPipe {
    fn install() -> io::Result<SignalPipe> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let pipe = SignalPipe {
            read,
            winch: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicUsize::new(0)),
        };
        signal_hook::flag::register(SIGWINCH, Arc::clone(&pipe.winch))?;
        signal_hook::low_level::pipe::register(SIGWINCH, write.try_clone()?)?;
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] {
            signal_hook::flag::register_usize(sig, Arc::clone(&pipe.stop), sig as usize)?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(pipe)
    }

    fn stop(&self) -> Option<i32> {
        match self.stop.load(Ordering::Relaxed) {
            0 => None,
            sig => Some(sig as i32),
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_carries_split_characters() {
        let mut t = Typed::default();
        let e = "é".as_bytes();
        assert_eq!(t.text(&[b'a', e[0]]).as_deref(), Some("a"));
        assert_eq!(t.text(&[e[1]]).as_deref(), Some("é"));
        assert_eq!(t.text(&[0xff, b'b']).as_deref(), Some("\u{fffd}b"));
        assert_eq!(t.text(&[]), None);
    }

    #[test]
    fn sync_reply_is_found_after_stale_replies() {
        assert_eq!(sync_reply_end(b"\x1b[12;1R\x1b[0nab"), Some(11));
        assert_eq!(sync_reply_end(b"\x1b[12;1R"), None);
    }

    #[test]
    fn exit_codes_follow_the_session() {
        assert_eq!(End::Detached.exit_code(), 0);
        assert_eq!(End::Exited(json!({"exitCode": 3})).exit_code(), 3);
        assert_eq!(
            End::Exited(json!({"exitCode": null, "signal": "KILL"})).exit_code(),
            137
        );
        assert_eq!(End::DaemonGone(String::new()).exit_code(), 1);
        assert_eq!(End::Signalled(15).exit_code(), 143);
    }
}
