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

/// Marks every descriptor the daemon inherited (beyond stdio) close-on-exec,
/// so that none reaches a harness. Whoever started the daemon may have left
/// some open (a shell's, a build tool's jobserver pipe).
fn cloexec_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting a descriptor flag; a closed or invalid fd (like
        // the directory handle just dropped) only yields EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Hands the daemon's code pages back to the kernel once start-up is done.
/// Start-up code (configuration, loading sessions, binding) runs once; left
/// resident, it and the neighbours fault-around mapped with it are most of
/// an idle daemon's memory. The serving path faults its own pages back on
/// first use. Clean file-backed pages only, so nothing is lost; best effort.
fn release_startup_code() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        if !perms.starts_with("r-x") || std::path::Path::new(path) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: advice on our own read-only code mapping exactly as /proc
        // reports it; MADV_PAGEOUT only reclaims clean pages, which fault
        // back in unchanged when executed.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
    }
}

pub fn serve(config: &Config) -> Result<(), ServeError> {
    cloexec_inherited();
    let home = &config.home;
    home::prepare(home).map_err(|e| ServeError::Io("preparing COVEN_HOME", e))?;
    let _lock = match home::lock(home) {
        Ok(lock) => lock,
        Err(LockError::Held(info)) => return Err(ServeError::AlreadyRunning(info)),
        Err(LockError::Io(e)) => return Err(ServeError::Io("taking the lock", e)),
    };
    raise_fd_limit();
    let socket = config.socket_path();
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
        sessions.len(),
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
        )
        .map_err(|e| ServeError::Io("starting the event loop", e))?;
        log::info!(
            "coven daemon {} listening on {} (pid {})",
            env!("CARGO_PKG_VERSION"),
            info.socket,
            info.pid
        );
        release_startup_code();
        reactor.run().map_err(|e| ServeError::Io("event loop", e))
    })();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(home::info_path(home));
    if result.is_ok() {
        log::info!("coven daemon stopped");
    }
    result
}
