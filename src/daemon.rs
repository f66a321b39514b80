//! `coven daemon serve`: prepares `COVEN_HOME`, takes the lock, binds the
//! socket, runs the reactor, and cleans up after it.

use std::fmt;
use std::io;

use crate::api::wire::DaemonInfo;
use crate::api::Api;
use crate::config::Config;
use crate::home::{self, LockError};
use crate::reactor::Reactor;
use crate::session::{harness, Sessions};

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

pub fn serve(config: &Config) -> Result<(), ServeError> {
    crate::sys::cloexec_inherited();
    let home = &config.home;
    let socket = config.socket_path();
    let max = crate::sys::max_socket_path_bytes();
    if socket.as_os_str().len() > max {
        return Err(ServeError::SocketPathTooLong { path: socket, max });
    }
    home::prepare(home).map_err(|e| ServeError::Io("preparing COVEN_HOME", e))?;
    let _lock = match home::lock(home) {
        Ok(lock) => lock,
        Err(LockError::Held(info)) => return Err(ServeError::AlreadyRunning(info)),
        Err(LockError::Io(e)) => return Err(ServeError::Io("taking the lock", e)),
    };
    raise_fd_limit();
    let listener = home::bind(&socket).map_err(|e| ServeError::Io("binding the socket", e))?;
    let info = DaemonInfo {
        pid: std::process::id(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        socket: socket.display().to_string(),
    };
    let mut sessions = Sessions::new(
        config.limits.sessions(),
        harness::registry(&config.harnesses),
        config.path.clone(),
    );
    let started = std::time::Instant::now();
    sessions
        .load(home.join("sessions"))
        .map_err(|e| ServeError::Io("loading sessions", e))?;
    log::info!(
        "loaded {} session(s), {} journal bytes, in {} ms",
        sessions.count(),
        sessions.journal_bytes(),
        started.elapsed().as_millis()
    );
    let result = (|| {
        home::write_info(home, &info).map_err(|e| ServeError::Io("writing daemon.json", e))?;
        let mut reactor = Reactor::new(
            listener,
            socket.clone(),
            &config.limits,
            Api::new(Some(info.clone()), sessions),
            sync_delay(),
        )
        .map_err(|e| ServeError::Io("starting the event loop", e))?;
        log::info!(
            "coven daemon {} listening on {} (pid {})",
            env!("CARGO_PKG_VERSION"),
            info.socket,
            info.pid
        );
        // Start-up code runs once: give its pages back before serving.
        crate::sys::release_code_pages();
        reactor.run().map_err(|e| ServeError::Io("event loop", e))
    })();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(home::info_path(home));
    if result.is_ok() {
        log::info!("coven daemon stopped");
    }
    result
}
