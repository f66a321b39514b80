//! Starting the daemon: `coven daemon serve` prepares `COVEN_HOME`, takes
//! the lock, binds the socket and becomes the supervisor (`supervisor`),
//! which starts the serving process, `coven daemon _server`: it takes the
//! supervisor's descriptors, loads the sessions, runs the reactor, and
//! cleans up after it.

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::api::wire::DaemonInfo;
use crate::api::Api;
use crate::config::Config;
use crate::home::{self, LockError};
use crate::reactor::Reactor;
use crate::session::{harness, Sessions};
use crate::supervisor::{self, link::Link};

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

/// Raises the soft descriptor limit to the hard one: each client costs a
/// descriptor, and the default soft limit (often 1024) is below the default
/// connection limit plus sessions.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

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
    raise_fd_limit();
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
    _lock: OwnedFd,
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
        // SAFETY: F_GETFD on a number only asks whether it is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
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
        _lock: lock,
    })
}

/// `coven daemon _server`: the serving process. Takes over what the
/// supervisor holds, loads the sessions, runs the reactor, cleans up.
pub fn serve_server(config: &Config) -> Result<(), ServeError> {
    let given = given()?;
    let home = &config.home;
    let socket = config.socket_path();
    let info = DaemonInfo {
        pid: std::process::id(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        socket: socket.display().to_string(),
    };
    let mut link = Link::new(given.link).map_err(|e| ServeError::Io("the supervisor's link", e))?;
    let held = link
        .greet(SUPERVISOR_WAIT)
        .map_err(|e| ServeError::Io("the supervisor's link", e))?;
    let mut sessions = Sessions::new(
        config.limits.sessions(),
        harness::registry(&config.harnesses),
        config.path.clone(),
    );
    sessions.attach_link(link);
    let started = std::time::Instant::now();
    let adopted = held.len();
    sessions
        .load(home.join("sessions"), held)
        .map_err(|e| ServeError::Io("loading sessions", e))?;
    log::info!(
        "loaded {} session(s), {} journal bytes, {} live one(s) taken up, in {} ms",
        sessions.count(),
        sessions.journal_bytes(),
        adopted,
        started.elapsed().as_millis()
    );
    home::write_info(home, &info).map_err(|e| ServeError::Io("writing daemon.json", e))?;
    let mut reactor = Reactor::new(
        given.listener,
        socket.clone(),
        &config.limits,
        Api::new(Some(info.clone()), sessions),
        sync_delay(),
    )
    .map_err(|e| ServeError::Io("starting the event loop", e))?;
    reactor.api.sessions.ready();
    log::info!(
        "coven daemon {} listening on {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        info.socket,
        info.pid
    );
    // Start-up code runs once: give its pages back before serving.
    crate::sys::release_code_pages();
    let result = reactor.run().map_err(|e| ServeError::Io("event loop", e));
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
