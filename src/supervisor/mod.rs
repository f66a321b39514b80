//! The supervisor: the process `coven daemon serve` runs as. It holds what
//! must outlive the serving process — the lock, the listening socket, and
//! every harness — and little else.
//!
//! - It starts the serving process (`coven daemon _server`, the same
//!   binary), giving it the lock, the listener and one end of a socket pair
//!   (`proto`), and starts it again at once if it dies.
//! - It starts every harness on the server's request (`Spawn`): the
//!   harnesses are its children, so their exit statuses are its to collect
//!   on every platform, whatever happens to the server. It keeps a copy of
//!   each PTY's master and slave, so a harness keeps its terminal, and its
//!   unread output, while no server runs; it passes copies to the server.
//! - It reports each harness's raw wait status (`Exited`), and forgets the
//!   session when the server says it is done with it (`Release`).
//! - A new server gets the sessions it holds (`Held`), statuses included.
//!
//! Nothing here runs on a timer but one: it sleeps in `poll` with no
//! timeout while all is well, and wakes for a launch, an exit, a signal, or
//! a server's death; 5 s after such a wake-up it gives back the memory the
//! work faulted in (as the server does), once. It never reads a request, a
//! config file or a journal.

pub mod link;
pub mod proto;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use proto::{Channel, Msg, SpawnRequest, PROTOCOL};

use crate::sys::process::{reap_any, signal, ExitStatus};

pub use crate::handover::SERVER_FDS_ENV;
/// A server that dies before it is ready this many times in a row, with no
/// session to keep, ends the supervisor.
const MAX_FAILED_STARTS: u32 = 10;
/// The longest pause between two starts of a server that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After this long without a wake-up, what the supervisor's work faulted in
/// (code pages, free heap) is given back, once, on one timer.
const QUIET_RELEASE: Duration = Duration::from_secs(5);

/// What the supervisor is given by `daemon::serve`.
pub struct Setup {
    pub exe: PathBuf,
    pub home: PathBuf,
    pub socket: PathBuf,
    pub listener: OwnedFd,
    pub lock: OwnedFd,
}

/// A harness it started.
struct Held {
    id: String,
    master: OwnedFd,
    /// None where the platform must not keep one (`sys::pty::KEEP_SLAVE`).
    slave: Option<OwnedFd>,
    /// Its raw wait status, once reaped.
    status: Option<i32>,
}

/// The serving process.
struct Server {
    pid: i32,
    link: Channel,
    /// It said it serves.
    ready: bool,
}

struct Flags {
    child: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    restart: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

struct Supervisor {
    setup: Setup,
    held: HashMap<i32, Held>,
    server: Option<Server>,
    /// Some server has been ready once: a later death is a crash to recover
    /// from, not a failed start.
    ever_ready: bool,
    /// Servers that died before they were ready, in a row.
    failed_starts: u32,
    /// When to start the next server (none runs).
    start_at: Option<Instant>,
    /// A stop signal came: the server is told, and its exit ends us.
    stopping: bool,
    /// When it last did something, if what that faulted in was not given
    /// back since (`QUIET_RELEASE`).
    busy_since: Option<Instant>,
    signals: UnixStream,
    flags: Flags,
}

/// Runs the supervisor until the daemon stops; returns the exit code.
pub fn run(setup: Setup) -> i32 {
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR2};
    let flags = Flags {
        child: Arc::default(),
        stop: Arc::default(),
        restart: Arc::default(),
        hangup: Arc::default(),
    };
    let read = match crate::sys::process::signal_pipe(&[
        (SIGCHLD, &flags.child),
        (SIGTERM, &flags.stop),
        (SIGINT, &flags.stop),
        (SIGUSR2, &flags.restart),
        (SIGHUP, &flags.hangup),
    ]) {
        Ok(read) => read,
        Err(e) => {
            log::error!("supervisor: signal handlers: {e}");
            return 1;
        }
    };
    let mut s = Supervisor {
        setup,
        held: HashMap::new(),
        server: None,
        ever_ready: false,
        failed_starts: 0,
        start_at: Some(Instant::now()),
        stopping: false,
        busy_since: Some(Instant::now()),
        signals: read,
        flags,
    };
    let code = s.serve();
    // Whatever the server left, nobody else owns these now (we hold the
    // lock until we exit).
    let _ = std::fs::remove_file(&s.setup.socket);
    let _ = std::fs::remove_file(crate::home::info_path(&s.setup.home));
    code
}

impl Supervisor {
    fn serve(&mut self) -> i32 {
        loop {
            if let Some(code) = self.turn() {
                return code;
            }
        }
    }

    /// One wait and what follows it; `Some(code)` when it is time to exit.
    fn turn(&mut self) -> Option<i32> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        if self.server.is_none() && self.start_at.is_some_and(|t| t <= Instant::now()) {
            self.start_at = None;
            if let Err(e) = self.start_server() {
                log::error!("supervisor: cannot start the server: {e}");
                if !self.ever_ready {
                    return Some(1);
                }
                self.schedule_start();
            }
        }
        let now = Instant::now();
        let quiet_at = self.busy_since.map(|t| t + QUIET_RELEASE);
        // Quiet since its last work: what the work faulted in goes back
        // (the heap's free memory now, the code pages last thing before
        // sleeping), once; no timer again until something happens.
        let release = quiet_at.is_some_and(|t| t <= now);
        if release {
            self.busy_since = None;
            crate::sys::trim_heap();
        }
        let pages = release.then(crate::sys::CodePages::find);
        let next = [
            self.start_at.filter(|_| self.server.is_none()),
            quiet_at.filter(|_| !release),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match next {
            Some(t) => {
                let ms = t.saturating_duration_since(now).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let link_flags = match &self.server {
            Some(s) if s.link.wants_write() => PollFlags::POLLIN | PollFlags::POLLOUT,
            Some(_) => PollFlags::POLLIN,
            None => PollFlags::empty(),
        };
        // A link at EOF is not polled (it would report so for ever); the
        // server's exit, when it comes, is reaped.
        let link_fd = self
            .server
            .as_ref()
            .filter(|s| !s.link.eof)
            .map(|s| s.link.socket().as_fd());
        let signals = PollFd::new(self.signals.as_fd(), PollFlags::POLLIN);
        let mut fds = [signals.clone(), signals];
        let n = match link_fd {
            Some(fd) => {
                fds[1] = PollFd::new(fd, link_flags);
                2
            }
            None => 1,
        };
        if let Some(pages) = &pages {
            pages.release();
        }
        match poll(&mut fds[..n], timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => self.busy_since = Some(Instant::now()),
            Err(e) => {
                log::error!("supervisor: poll: {e}");
                return Some(1);
            }
        }
        self.drain_signal_pipe();
        if self.flags.hangup.swap(false, Ordering::SeqCst) {
            log::info!("supervisor: SIGHUP ignored");
        }
        if self.flags.stop.swap(false, Ordering::SeqCst) {
            self.stopping = true;
            match &self.server {
                Some(server) => {
                    log::info!("supervisor: stopping the server (pid {})", server.pid);
                    signal(server.pid, Signal::SIGTERM);
                }
                None => return Some(0),
            }
        }
        if self.flags.restart.swap(false, Ordering::SeqCst) {
            if let Some(server) = &self.server {
                log::info!(
                    "supervisor: SIGUSR2: the server (pid {}) restarts",
                    server.pid
                );
                signal(server.pid, Signal::SIGUSR2);
            }
        }
        self.on_link();
        if self.flags.child.swap(false, Ordering::SeqCst) {
            if let Some(code) = self.reap() {
                return Some(code);
            }
        }
        None
    }

    fn drain_signal_pipe(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.signals.read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Collects every child that ended: harnesses (reported to the server)
    /// and the server itself.
    fn reap(&mut self) -> Option<i32> {
        while let Some((pid, status)) = reap_any() {
            if self.server.as_ref().is_some_and(|s| s.pid == pid) {
                if let Some(code) = self.on_server_exit(status) {
                    return Some(code);
                }
                continue;
            }
            let Some(held) = self.held.get_mut(&pid) else {
                continue;
            };
            held.status = Some(status);
            log::debug!("supervisor: harness {pid} of session {} ended", held.id);
            self.tell(&Msg::Exited { pid, status }, Vec::new());
        }
        None
    }

    /// The server ended: the daemon stops with it if it was asked to (or
    /// never got going); otherwise a new one takes over at once.
    fn on_server_exit(&mut self, raw: i32) -> Option<i32> {
        let server = self.server.take()?;
        let status = ExitStatus::from_raw(raw);
        if status.code() == Some(0) || self.stopping {
            return Some(status.code().unwrap_or(1));
        }
        if !self.ever_ready {
            // Its own message (a bad config, a busy home) is on stderr.
            return Some(status.code().unwrap_or(1));
        }
        match status.signal() {
            Some(sig) => log::error!(
                "supervisor: the server (pid {}) died by signal {sig}; starting a new one ({} session(s) kept)",
                server.pid,
                self.held.len()
            ),
            None => log::error!(
                "supervisor: the server (pid {}) exited with {}; starting a new one ({} session(s) kept)",
                server.pid,
                status.code().unwrap_or(-1),
                self.held.len()
            ),
        }
        if !server.ready {
            self.failed_starts += 1;
            if self.failed_starts >= MAX_FAILED_STARTS && self.held.is_empty() {
                log::error!("supervisor: the server keeps failing at start; giving up");
                return Some(1);
            }
            self.schedule_start();
        } else {
            self.start_at = Some(Instant::now());
        }
        None
    }

    /// The next start after a failed one, later each time.
    fn schedule_start(&mut self) {
        let shift = self.failed_starts.min(6);
        let pause = (Duration::from_millis(100) * (1 << shift)).min(MAX_BACKOFF);
        self.start_at = Some(Instant::now() + pause);
    }

    /// Starts a serving process and tells it what it holds.
    fn start_server(&mut self) -> io::Result<()> {
        let (mine, theirs) = UnixStream::pair()?;
        let passed: [RawFd; 3] = [
            theirs.as_raw_fd(),
            self.setup.listener.as_raw_fd(),
            self.setup.lock.as_raw_fd(),
        ];
        let mut cmd = Command::new(&self.setup.exe);
        cmd.args(["daemon", "_server"])
            .env(
                SERVER_FDS_ENV,
                format!("{},{},{}", passed[0], passed[1], passed[2]),
            )
            .stdin(Stdio::null());
        // The three descriptors survive the exec, nothing else does; the
        // server gets a process group of its own, so that a terminal's
        // Ctrl-C reaches the supervisor alone, which passes one stop on
        // (not two, which would mean "at once").
        crate::sys::process::pass_on_exec(&mut cmd, passed, true);
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // Reaped with waitpid(-1) like every child; the handle only drops.
        drop(child);
        drop(theirs);
        let mut link = Channel::new(mine)?;
        let _ = link.send(
            &Msg::Hello {
                protocol: PROTOCOL,
                pid: std::process::id(),
            },
            Vec::new(),
        );
        for (&pid, held) in &self.held {
            let slave = held.slave.as_ref().map(OwnedFd::try_clone).transpose();
            let fds = match (held.master.try_clone(), slave) {
                (Ok(m), Ok(s)) => std::iter::once(m).chain(s).collect(),
                _ => continue,
            };
            let msg = Msg::Held {
                id: held.id.clone(),
                pid,
                status: held.status,
            };
            let _ = link.send(&msg, fds);
        }
        let _ = link.send(&Msg::HeldEnd, Vec::new());
        log::info!(
            "supervisor: started the server (pid {pid}) with {} session(s)",
            self.held.len()
        );
        self.server = Some(Server {
            pid,
            link,
            ready: false,
        });
        Ok(())
    }

    /// Sends to the server, if one is connected (a message to a server
    /// that is gone is dropped: the next one gets the state in `Held`).
    fn tell(&mut self, msg: &Msg, fds: Vec<OwnedFd>) {
        if let Some(server) = &mut self.server {
            if let Err(e) = server.link.send(msg, fds) {
                log::warn!("supervisor: writing to the server: {e}");
            }
        }
    }

    /// Reads and acts on what the server sent.
    fn on_link(&mut self) {
        let Some(server) = &mut self.server else {
            return;
        };
        let _ = server.link.flush();
        if let Err(e) = server.link.receive() {
            log::warn!("supervisor: reading from the server: {e}");
            server.link.eof = true;
        }
        loop {
            let Some(server) = &mut self.server else {
                return;
            };
            let msg = match server.link.next_message() {
                Ok(Some((msg, _fds))) => msg,
                Ok(None) => break,
                Err(e) => {
                    log::error!(
                        "supervisor: the server sent garbage ({e}); ignoring it from now on"
                    );
                    server.link.eof = true;
                    break;
                }
            };
            match msg {
                Msg::Spawn(req) => self.spawn(req),
                Msg::Release { pid } => {
                    self.held.remove(&pid);
                }
                Msg::Ready { pid } => {
                    log::debug!("supervisor: the server (pid {pid}) is ready");
                    if let Some(server) = &mut self.server {
                        server.ready = true;
                    }
                    self.ever_ready = true;
                    self.failed_starts = 0;
                }
                other => log::warn!("supervisor: unexpected {other:?}"),
            }
        }
    }

    /// Starts a harness in a new PTY; the server gets the master and the
    /// slave, and we keep copies.
    fn spawn(&mut self, req: SpawnRequest) {
        let args: Vec<OsString> = req
            .args
            .iter()
            .map(|a| OsStr::from_bytes(a).to_owned())
            .collect();
        let env: Vec<(OsString, OsString)> = req
            .env
            .iter()
            .map(|(k, v)| {
                (
                    OsStr::from_bytes(k).to_owned(),
                    OsStr::from_bytes(v).to_owned(),
                )
            })
            .collect();
        let launch = crate::sys::pty::Launch {
            exe: Path::new(OsStr::from_bytes(&req.exe)),
            arg0: OsStr::from_bytes(&req.arg0),
            args: &args,
            cwd: Path::new(OsStr::from_bytes(&req.cwd)),
            env: &env,
            cols: req.cols,
            rows: req.rows,
        };
        let spawned = crate::sys::pty::spawn(&launch).and_then(|sp| {
            let slave = sp.slave.as_ref().map(OwnedFd::try_clone).transpose()?;
            let copies: Vec<OwnedFd> = std::iter::once(sp.master.try_clone()?)
                .chain(slave)
                .collect();
            Ok((sp, copies))
        });
        match spawned {
            Ok((sp, copies)) => {
                self.held.insert(
                    sp.pid,
                    Held {
                        id: req.id.clone(),
                        master: sp.master,
                        slave: sp.slave,
                        status: None,
                    },
                );
                self.tell(
                    &Msg::Spawned {
                        id: req.id,
                        pid: sp.pid,
                    },
                    copies,
                );
            }
            Err(e) => self.tell(
                &Msg::SpawnFailed {
                    id: req.id,
                    error: e.to_string(),
                },
                Vec::new(),
            ),
        }
    }
}
