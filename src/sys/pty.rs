//! Opening a PTY and starting a harness in it; resizing and signalling.
//!
//! What becomes of a harness's last output, not yet read when it exits,
//! differs, and so does what the daemon does to keep it (`KEEP_SLAVE`):
//!
//! - macOS (xnu `ptsclose`/`ttyclose`): the last close of the slave flushes
//!   what the master has not read. The daemon keeps its own descriptor of
//!   the slave until the harness has been reaped and the master read dry
//!   (`Spawned::slave`), so the harness's exit is never the last close.
//! - FreeBSD (`sys/kern/tty.c`, `ttydev_close`): when a session leader
//!   exits, its controlling terminal is revoked, and a close made by that
//!   revoke flushes the output queue — unless it is the last close, which
//!   the exit's own closes make first when nobody else holds the slave.
//!   So there the daemon keeps no slave: the harness's own last close is
//!   the last one, and the master reads the tail, then EOF.
//! - Linux keeps the output either way; the slave is kept there as on
//!   macOS, one code path with the one the tests run.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::pty::{openpty, Winsize};

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn cloexec(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// What to start.
pub struct Launch<'a> {
    pub exe: &'a Path,
    /// `argv[0]` as the harness names its command.
    pub arg0: &'a OsStr,
    pub args: &'a [OsString],
    pub cwd: &'a Path,
    pub env: &'a [(OsString, OsString)],
    pub cols: u16,
    pub rows: u16,
}

pub struct Spawned {
    /// Non-blocking, close-on-exec.
    pub master: OwnedFd,
    /// The daemon's own slave descriptor (close-on-exec): close it once the
    /// harness is reaped and the master reads `EAGAIN`, so that the master
    /// reports EOF when the last other holder lets go. None where
    /// `KEEP_SLAVE` is false.
    pub slave: Option<OwnedFd>,
    pub pid: i32,
}

/// Starts the harness as a session leader with the PTY's slave as its
/// controlling terminal and stdio.
pub fn spawn(launch: &Launch<'_>) -> io::Result<Spawned> {
    let pty = openpty(Some(&winsize(launch.cols, launch.rows)), None)?;
    // openpty does not set O_CLOEXEC. The loop is single-threaded, so no
    // other fork can happen between openpty and here.
    cloexec(&pty.master)?;
    cloexec(&pty.slave)?;
    let flags = OFlag::from_bits_truncate(fcntl(&pty.master, FcntlArg::F_GETFL)?);
    fcntl(&pty.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut cmd = Command::new(launch.exe);
    cmd.arg0(launch.arg0)
        .args(launch.args)
        .current_dir(launch.cwd)
        .env("TERM", "xterm-256color")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?));
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (setsid, ioctl, sigprocmask, signal).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The daemon ignores SIGPIPE and handles others; a harness
            // starts with every signal at its default and none blocked.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The child is reaped with waitpid(-1) by the session registry; the
    // std handle is only dropped (which neither waits nor kills).
    let pid = child.id() as i32;
    drop(child);
    Ok(Spawned {
        master: pty.master,
        slave: KEEP_SLAVE.then_some(pty.slave),
        pid,
    })
}

/// Whether the daemon keeps a descriptor of each harness's slave (see the
/// module's comment): everywhere but FreeBSD.
pub const KEEP_SLAVE: bool = !cfg!(target_os = "freebsd");

/// What a read of a PTY master gave.
#[derive(Debug)]
pub enum Got {
    Data(usize),
    /// Every holder of the slave let go: Linux says `EIO`, macOS and
    /// FreeBSD a read of 0 bytes.
    End,
    WouldBlock,
    Interrupted,
    Failed(io::Error),
}

/// Reads a non-blocking PTY master.
pub fn read_master(master: impl std::os::fd::AsFd, buf: &mut [u8]) -> Got {
    match nix::unistd::read(master, buf) {
        Ok(0) | Err(nix::errno::Errno::EIO) => Got::End,
        Ok(n) => Got::Data(n),
        Err(nix::errno::Errno::EAGAIN) => Got::WouldBlock,
        Err(nix::errno::Errno::EINTR) => Got::Interrupted,
        Err(e) => Got::Failed(e.into()),
    }
}

/// Writes to a non-blocking PTY master: `Data(n)` bytes written; `End` if
/// nobody reads the terminal any more (`EIO`).
pub fn write_master(master: impl std::os::fd::AsFd, buf: &[u8]) -> Got {
    match nix::unistd::write(master, buf) {
        Ok(n) => Got::Data(n),
        Err(nix::errno::Errno::EIO) => Got::End,
        Err(nix::errno::Errno::EAGAIN) => Got::WouldBlock,
        Err(nix::errno::Errno::EINTR) => Got::Interrupted,
        Err(e) => Got::Failed(e.into()),
    }
}

/// Sets the window size; the kernel sends SIGWINCH to the foreground group.
pub fn resize(master: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = winsize(cols, rows);
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer we pass.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Signals a whole process group. A group already gone is not an error.
pub fn signal_group(pgid: i32, signal: nix::sys::signal::Signal) {
    // 0 is the caller's own group and 1 init's: never a harness's (a
    // session not yet started has no group).
    if pgid <= 1 {
        return;
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}
