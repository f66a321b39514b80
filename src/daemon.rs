//! Starting the daemon: `coven daemon serve` prepares `COVEN_HOME`, takes
//! the lock, binds the socket and becomes the supervisor (`supervisor`),
//! which starts the serving process, `coven daemon _server`: it takes the
//! supervisor's descriptors, loads the sessions, runs the reactor, and
//! cleans up after it.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::api::{Api, Program};
use crate::config::Config;
use crate::handover::{self, Handover};
use crate::home::DaemonInfo;
use crate::home::{self, LockError};
use crate::reactor::{Outcome, Reactor};
use crate::session::{harness, Sessions};
use crate::supervisor::{
    self,
    link::{HeldSession, Link},
};

/// How long a new server waits for the supervisor's hello.
const SUPERVISOR_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ServeError {
    /// Another daemon holds the home's lock.
    AlreadyRunning(Option<DaemonInfo>),
    /// The socket's path is longer than Unix sockets take on this system.
    SocketPathTooLong {
        path: std::path::PathBuf,
        max: usize,
    },
    /// Any other start or run failure, with what was being done.
    Io(&'static str, io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::AlreadyRunning(Some(info)) => write!(
                f,
                "a coven daemon is already running (pid {}, socket {})",
                info.pid, info.socket
            ),
            ServeError::AlreadyRunning(None) => {
                write!(f, "a coven daemon is already running for this COVEN_HOME")
            }
            ServeError::SocketPathTooLong { path, max } => write!(
                f,
                "the socket path {} is {} bytes long, but Unix sockets on this \
                 system take at most {max}: set COVEN_HOME to a shorter directory",
                path.display(),
                path.as_os_str().len()
            ),
            ServeError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// A test hook: `COVEN_TEST_SYNC_DELAY_MS` makes every job of the writer
/// (each fsync and metadata write) wait that long first, to show that a
/// slow disk never stalls the loop.
fn sync_delay() -> std::time::Duration {
    std::env::var("COVEN_TEST_SYNC_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis)
}

/// `coven daemon serve`: prepares the home, takes the lock, binds the
/// socket, and runs the supervisor, which starts the serving process and
/// keeps the harnesses. Returns the exit code.
pub fn serve(home: &Path) -> Result<i32, ServeError> {
    crate::sys::cloexec_inherited();
    let socket = home.join(crate::config::SOCKET_NAME);
    let max = crate::sys::max_socket_path_bytes();
    if socket.as_os_str().len() > max {
        return Err(ServeError::SocketPathTooLong { path: socket, max });
    }
    let exe = std::env::current_exe().map_err(|e| ServeError::Io("finding this program", e))?;
    home::prepare(home).map_err(|e| ServeError::Io("preparing COVEN_HOME", e))?;
    let lock = match home::lock(home) {
        Ok(lock) => lock,
        Err(LockError::Held(info)) => return Err(ServeError::AlreadyRunning(info)),
        Err(LockError::Io(e)) => return Err(ServeError::Io("taking the lock", e)),
    };
    // Each client and each session costs descriptors.
    match crate::sys::raise_fd_limit() {
        Ok(n) => log::debug!("descriptor limit: {n}"),
        Err(e) => log::warn!("raising the descriptor limit: {e}"),
    }
    let listener = home::bind(&socket).map_err(|e| ServeError::Io("binding the socket", e))?;
    // SAFETY: the listener's descriptor, owned from here on.
    let listener = unsafe { OwnedFd::from_raw_fd(listener.into_raw_fd()) };
    let lock_fd = lock
        .try_clone()
        .map_err(|e| ServeError::Io("taking the lock", e))?;
    // Start-up code runs once: give its pages back before waiting.
    crate::sys::release_code_pages();
    let code = supervisor::run(supervisor::Setup {
        exe,
        home: home.to_owned(),
        socket,
        listener,
        lock: lock_fd.into(),
    });
    drop(lock);
    Ok(code)
}

/// The descriptors the supervisor gives the serving process.
struct Given {
    link: UnixStream,
    listener: mio::net::UnixListener,
    /// A copy of the supervisor's locked descriptor: the home stays locked
    /// while either process lives.
    lock: OwnedFd,
}

/// Takes the descriptors named in `COVEN_SERVER_FDS` (and removes it from
/// the environment, which harnesses do not get from us anyway).
fn given() -> Result<Given, ServeError> {
    let bad = || {
        ServeError::Io(
            "starting the server",
            io::Error::other(format!(
                "{} is not set: `coven daemon _server` is started by `coven daemon serve`",
                supervisor::SERVER_FDS_ENV
            )),
        )
    };
    let value = std::env::var(supervisor::SERVER_FDS_ENV).map_err(|_| bad())?;
    let fds: Vec<RawFd> = value
        .split(',')
        .map(|f| f.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [link, listener, lock] = fds[..] else {
        return Err(bad());
    };
    for fd in [link, listener, lock] {
        if !crate::sys::process::is_open(fd) {
            return Err(bad());
        }
        crate::sys::process::set_cloexec(fd, true);
    }
    // SAFETY: the supervisor passed these three open descriptors to this
    // process alone; each is owned once from here on.
    let (link, listener, lock) = unsafe {
        (
            UnixStream::from_raw_fd(link),
            std::os::unix::net::UnixListener::from_raw_fd(listener),
            OwnedFd::from_raw_fd(lock),
        )
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| ServeError::Io("the listening socket", e))?;
    Ok(Given {
        link,
        listener: mio::net::UnixListener::from_std(listener),
        lock,
    })
}

/// What a new server takes over from the one before it.
struct Taken {
    held: Vec<HeldSession>,
    /// The previous program's document, after a live restart.
    doc: Option<Handover>,
}

/// The sessions this server takes over: from the previous program's
/// document after a live restart, else from the supervisor's hello.
fn take_over(link: &mut Link) -> Result<Taken, ServeError> {
    let doc = handover::take().map_err(|e| ServeError::Io("reading the handover", e))?;
    let Some(doc) = doc else {
        let held = link
            .greet(SUPERVISOR_WAIT)
            .map_err(|e| ServeError::Io("the supervisor's link", e))?;
        return Ok(Taken { held, doc: None });
    };
    let mut held = Vec::new();
    for c in &doc.sessions {
        let Some(live) = &c.live else { continue };
        let take = |fd: RawFd| {
            crate::sys::process::set_cloexec(fd, true);
            // SAFETY: the previous program handed this descriptor over for
            // this session alone; it is owned once, here.
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        held.push(HeldSession {
            id: c.id.clone(),
            pid: live.pgid,
            status: live.exit,
            master: take(live.master),
            slave: live.slave.map(take),
            carried: Some(live.clone()),
        });
    }
    Ok(Taken {
        held,
        doc: Some(doc),
    })
}

/// `coven daemon _server`: the serving process. Takes over what the
/// supervisor holds (or what the previous program handed over), loads the
/// sessions, runs the reactor, and cleans up or restarts.
pub fn serve_server(config: &Config) -> Result<(), ServeError> {
    let given = given()?;
    let home = &config.home;
    let socket = config.socket_path();
    let mut link = Link::new(given.link).map_err(|e| ServeError::Io("the supervisor's link", e))?;
    let taken = take_over(&mut link)?;
    let restarted = taken.doc.is_some();
    let (info, program) = match &taken.doc {
        Some(doc) => (
            doc.daemon.clone(),
            Program {
                exe: doc.exe.clone(),
                protocol: doc.protocol,
            },
        ),
        None => (
            None,
            Program {
                exe: std::env::current_exe()
                    .map_err(|e| ServeError::Io("finding this program", e))?,
                protocol: crate::supervisor::proto::PROTOCOL,
            },
        ),
    };
    // The identity clients know: the same through a live restart.
    let info = info.unwrap_or_else(|| DaemonInfo {
        pid: std::process::id(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        socket: socket.display().to_string(),
    });
    let mut sessions = Sessions::new(
        config.limits.sessions(),
        harness::registry(&config.harnesses),
        config.path.clone(),
    );
    sessions.attach_link(link);
    let started = std::time::Instant::now();
    let adopted = taken.held.len();
    sessions
        .load(home.join("sessions"), taken.held)
        .map_err(|e| ServeError::Io("loading sessions", e))?;
    if let Some(doc) = &taken.doc {
        sessions.restore(&doc.sessions, doc.next_seq);
    }
    log::info!(
        "loaded {} session(s), {} journal bytes, {} live one(s) taken up, in {} ms",
        sessions.count(),
        sessions.journal_bytes(),
        adopted,
        started.elapsed().as_millis()
    );
    if let Err(e) = home::write_info(home, &info) {
        // Clients find the daemon through its socket and health; a full
        // disk must not keep it from taking its sessions up.
        log::error!("writing daemon.json: {e}");
    }
    let mut api = Api::new(Some(info.clone()), sessions);
    api.web = crate::api::web::Web::load(home.clone(), config.web);
    api.program = Some(program);
    api.test_hooks = std::env::var_os("COVEN_TEST_HOOKS").is_some();
    if let Some(doc) = &taken.doc {
        api.stats.accepted_connections = doc.accepted_connections;
        api.stats.refused_connections = doc.refused_connections;
        api.stats.requests = doc.requests;
        api.stats.live_restarts = doc.live_restarts + 1;
    }
    let mut reactor = Reactor::new(
        given.listener,
        socket.clone(),
        &config.limits,
        api,
        sync_delay(),
    )
    .map_err(|e| ServeError::Io("starting the event loop", e))?;
    if let Some(doc) = &taken.doc {
        let conns = doc
            .conns
            .iter()
            .map(|&fd| {
                crate::sys::process::set_cloexec(fd, true);
                // SAFETY: a client socket the previous program handed over.
                mio::net::UnixStream::from_std(unsafe { UnixStream::from_raw_fd(fd) })
            })
            .collect();
        reactor.adopt_conns(conns);
    }
    reactor.api.sessions.ready();
    if restarted {
        log::info!(
            "coven daemon {} (build {}) took over on {} (pid {})",
            env!("CARGO_PKG_VERSION"),
            handover::build(),
            info.socket,
            info.pid
        );
    } else {
        log::info!(
            "coven daemon {} listening on {} (pid {})",
            env!("CARGO_PKG_VERSION"),
            info.socket,
            info.pid
        );
    }
    // Start-up code runs once: give its pages back before serving.
    crate::sys::release_code_pages();
    let result = loop {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reactor.run()));
        match outcome {
            Ok(Ok(Outcome::Restart)) => {
                let err = live_restart(&mut reactor, home, &given.lock);
                log::error!("the restart failed ({err}); serving on as before");
                let (_, handed) = reactor.take_handed();
                if let Err(e) = reactor.resume_after_failed_restart(handed, sync_delay()) {
                    break Err(ServeError::Io("resuming after a failed restart", e));
                }
            }
            Ok(Ok(Outcome::Stop)) => break Ok(()),
            Ok(Err(e)) => break Err(ServeError::Io("event loop", e)),
            Err(_) => {
                // A panic outside the handlers: the loop's state is not to
                // be trusted, but the sessions' is (each is consistent
                // between two loop steps): they go on in a fresh program.
                log::error!("the event loop panicked: restarting, keeping the sessions");
                reactor.drop_connections();
                let err = live_restart(&mut reactor, home, &given.lock);
                log::error!("the restart after a panic failed ({err}); exiting");
                // The supervisor starts a new server, which takes the
                // sessions up from it.
                std::process::abort();
            }
        }
    };
    // The clients that asked for the stop see their connection close only
    // once the daemon is gone: after everything is written and its files
    // are removed.
    let kept = std::mem::take(&mut reactor.kept);
    drop(reactor);
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(home::info_path(home));
    if result.is_ok() {
        log::info!("coven daemon stopped");
    }
    drop(kept);
    result
}

/// Replaces this program with the one at the daemon's path, handing over
/// every live session, the listener, the idle connections and the lock.
/// Returns only if it failed (the caller serves on).
fn live_restart(reactor: &mut Reactor, home: &Path, lock: &OwnedFd) -> io::Error {
    let Some(program) = reactor.api.program.clone() else {
        return io::Error::other("this daemon cannot restart itself");
    };
    let now = std::time::Instant::now();
    let (sessions, next_seq) = reactor.api.sessions.carry(now);
    let (listener, handed) = reactor.take_handed();
    let conns: Vec<RawFd> = handed.iter().map(|c| c.as_raw_fd()).collect();
    let stats = &reactor.api.stats;
    let doc = Handover {
        version: handover::version(),
        protocol: program.protocol,
        exe: program.exe.clone(),
        daemon: reactor.api.daemon.clone(),
        next_seq,
        accepted_connections: stats.accepted_connections,
        refused_connections: stats.refused_connections,
        requests: stats.requests,
        live_restarts: stats.live_restarts,
        sessions,
        conns: conns.clone(),
    };
    let mut keep = reactor.api.sessions.descriptors();
    keep.extend(listener);
    keep.extend(&conns);
    keep.push(lock.as_raw_fd());
    let file = match handover::write(home, &doc) {
        Ok(file) => file,
        Err(e) => {
            reactor.set_handed(handed);
            return e;
        }
    };
    log::info!(
        "handing over {} session(s) and {} connection(s) to {}",
        doc.sessions.iter().filter(|c| c.live.is_some()).count(),
        conns.len(),
        program.exe.display()
    );
    let err = handover::exec(&program.exe, &file, &keep);
    reactor.set_handed(handed);
    err
}
