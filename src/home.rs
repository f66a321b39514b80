//! `COVEN_HOME` on disk: the private directory, the one-daemon lock, the
//! socket, and `daemon.json`. Everything here runs once at start or stop.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{umask, Mode};

/// `daemon.json`, and health's `daemon`: who serves this home.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: String,
    pub socket: String,
}

/// Creates `home` with mode 0700, or tightens an existing one to 0700.
/// Refuses a home owned by another user.
pub fn prepare(home: &Path) -> io::Result<()> {
    match fs::metadata(home) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = home.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::DirBuilder::new().mode(0o700).create(home)?;
            // The umask may have cleared bits we want; make it exact.
            fs::set_permissions(home, fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
        Err(e) => Err(e),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(io::Error::other(format!(
                    "{} exists and is not a directory",
                    home.display()
                )));
            }
            if meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(io::Error::other(format!(
                    "{} is owned by uid {}, not by this user",
                    home.display(),
                    meta.uid()
                )));
            }
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                fs::set_permissions(home, fs::Permissions::from_mode(0o700))?;
                log::warn!(
                    "{} had mode {:o}; tightened it to 700",
                    home.display(),
                    mode
                );
            }
            Ok(())
        }
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another daemon holds it; what its `daemon.json` says, if readable.
    Held(Option<DaemonInfo>),
    Io(io::Error),
}

/// Takes the exclusive lock on `<home>/coven.lock`, held for as long as the
/// returned file stays open.
pub fn lock(home: &Path) -> Result<Flock<File>, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(home.join("coven.lock"))
        .map_err(LockError::Io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held(read_info(home))),
        Err((_, e)) => Err(LockError::Io(e.into())),
    }
}

pub fn info_path(home: &Path) -> PathBuf {
    home.join("daemon.json")
}

pub fn read_info(home: &Path) -> Option<DaemonInfo> {
    let text = fs::read(info_path(home)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes `daemon.json` atomically: a temporary file, then a rename.
pub fn write_info(home: &Path, info: &DaemonInfo) -> io::Result<()> {
    let text = serde_json::to_vec(info).map_err(io::Error::other)?;
    crate::journal::write_atomic(home, "daemon.json", &text, true)
}

/// Binds the listening socket at `path` with mode 0600 from the first
/// instant (the umask is narrowed around `bind`, so there is no
/// bind-then-chmod window). A stale socket is replaced: the caller holds
/// the lock, so no live daemon owns it.
pub fn bind(path: &Path) -> io::Result<mio::net::UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            )))
        }
        Ok(_) => {
            log::info!("removing stale socket {}", path.display());
            fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The umask is process-wide; this runs before any other thread or child
    // exists, and the old mask is restored for the harnesses we spawn later.
    let old = umask(Mode::from_bits_truncate(0o177));
    let result = mio::net::UnixListener::bind(path);
    umask(old);
    let listener = result?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
