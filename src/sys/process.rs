//! Processes and descriptors between the daemon's own processes: passing
//! descriptors over a Unix socket (`SCM_RIGHTS`), reaping children with
//! their raw wait status, and what such a status says.
//!
//! The status is kept raw (an `int` from `waitpid`) and read with the
//! POSIX macros, so that a death by a signal nix has no name for (Linux's
//! real-time signals 32–64, FreeBSD's 65–126) is a number, never an error.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Descriptors one message may carry at most (below Linux's `SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 8;
/// Descriptors one `recv_with_fds` can take in (several messages may come
/// in one read).
const MAX_FDS_PER_READ: usize = 64;

/// Sends `bytes` with `fds` attached (they arrive with the first byte).
/// Returns the bytes sent, which may be fewer: the rest goes without fds.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads into `buf`; descriptors that came along are appended to `fds`,
/// close-on-exec. `Ok(0)` is the peer's EOF.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]);
    let mut iov = [io::IoSliceMut::new(buf)];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    // macOS has no MSG_CMSG_CLOEXEC: the flag is set just after (the
    // daemon's processes are single-threaded where they receive, so no
    // fork can come between).
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let flags = MsgFlags::empty();
    let msg = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags) {
            Ok(msg) => break msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel just gave us this descriptor; nothing
                // else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                set_cloexec(fd.as_raw_fd(), true);
                fds.push(fd);
            }
        }
    }
    let n = msg.bytes;
    if truncated {
        return Err(io::Error::other("descriptors were lost (MSG_CTRUNC)"));
    }
    Ok(n)
}

/// Sets or clears a descriptor's close-on-exec flag (cleared: it survives
/// an `execve`, as a handover needs).
/// The child `cmd` starts leads a new session, with no controlling
/// terminal: a daemon started from a shell is not sent the terminal's
/// signals (hang-up, Ctrl-C) nor stopped by its job control.
pub fn new_session_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: runs in the child between fork and exec; setsid is
    // async-signal-safe. Its failure (already a group leader) is harmless.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            libc::setsid();
            Ok(())
        });
    }
}

/// The child `cmd` starts keeps `fds` open across its exec (and nothing
/// else that is close-on-exec); with `own_group`, it leads a process group
/// of its own.
pub fn pass_on_exec<const N: usize>(
    cmd: &mut std::process::Command,
    fds: [RawFd; N],
    own_group: bool,
) {
    // SAFETY: between fork and exec, only fcntl and setpgid, which are
    // async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if own_group {
                libc::setpgid(0, 0);
            }
            Ok(())
        });
    }
}

/// Whether `fd` is an open descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on a number only asks whether it is open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

pub fn set_cloexec(fd: RawFd, on: bool) {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: setting a descriptor flag; a bad fd only yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flag) };
}

/// One child that has ended, and its raw wait status; `None` when no child
/// has (or there are none).
pub fn reap_any() -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int through the pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            // Stopped or continued children are not ends (we do not ask
            // for them, but a status that is neither is skipped).
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Some((pid, status));
            }
            continue;
        }
        if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// A raw wait status and what it says: the exit code, or the signal's
/// number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// As `waitpid` gave it.
    pub raw: i32,
}

impl ExitStatus {
    pub fn from_raw(raw: i32) -> ExitStatus {
        ExitStatus { raw }
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        libc::WIFEXITED(self.raw).then(|| libc::WEXITSTATUS(self.raw))
    }

    /// The signal that ended it, if one did.
    pub fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.raw).then(|| libc::WTERMSIG(self.raw))
    }
}

/// A signal's name without `SIG` (`TERM`), when this system names it.
pub fn signal_name(number: i32) -> Option<&'static str> {
    let sig = nix::sys::signal::Signal::try_from(number).ok()?;
    let s = sig.as_str();
    Some(s.strip_prefix("SIG").unwrap_or(s))
}

/// Reads `from` until EOF, at most `max` bytes, giving up after `timeout`
/// (a child's pipe: the child may hang).
pub fn read_with_timeout(
    mut from: impl std::io::Read + std::os::fd::AsFd,
    out: &mut Vec<u8>,
    max: usize,
    timeout: std::time::Duration,
) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if out.len() + n > max => return Err(io::Error::other("too much output")),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A self-pipe for signals: each signal in `flags` sets its flag, then
/// writes a byte (signal-hook does both, in that order); returns the
/// non-blocking read end to wait on.
pub fn signal_pipe(
    flags: &[(i32, &std::sync::Arc<std::sync::atomic::AtomicBool>)],
) -> io::Result<std::os::unix::net::UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    for &(sig, flag) in flags {
        signal_hook::flag::register(sig, std::sync::Arc::clone(flag))?;
        signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
    }
    Ok(read)
}

/// Sends a signal to one process; a process already gone is not an error.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Ends this process as a write to a closed pipe does by default: killed
/// by SIGPIPE (which Rust's runtime ignores, so that writes fail instead).
/// A shell then sees status 141, as for `yes | head -1`, and prints nothing.
pub fn die_of_sigpipe() -> ! {
    use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
    // SAFETY: restoring a default disposition installs no handler.
    unsafe {
        let _ = signal::signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = signal::raise(Signal::SIGPIPE);
    std::process::exit(128 + Signal::SIGPIPE as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_cross_a_socket_with_their_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        let n = send_with_fds(a.as_fd_ref(), b"one", &[x.as_raw_fd()]).unwrap();
        assert_eq!(n, 3);
        send_with_fds(a.as_fd_ref(), b"two", &[]).unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = recv_with_fds(b.as_fd_ref(), &mut buf, &mut fds).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got, b"onetwo");
        assert_eq!(fds.len(), 1);
        // The descriptor is a working copy of `x`, close-on-exec.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        assert_eq!(
            crate::sys::peer_uid(&fds[0]).unwrap(),
            nix::unistd::geteuid().as_raw()
        );
    }

    trait AsFdRef {
        fn as_fd_ref(&self) -> BorrowedFd<'_>;
    }
    impl AsFdRef for UnixStream {
        fn as_fd_ref(&self) -> BorrowedFd<'_> {
            std::os::fd::AsFd::as_fd(self)
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn statuses_keep_unnamed_signals() {
        // Built the way the kernel builds them (the POSIX macros read them
        // back whatever the encoding). A real-time signal: unnamed. (Under
        // qemu-user, which CI's aarch64 run uses, real-time signals are
        // renumbered, and 34 and 35 are qemu's own: 40 is one either way.)
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -40 $$"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut raw = 0;
        // SAFETY: waiting for our own child.
        let got = unsafe { libc::waitpid(pid, &mut raw, 0) };
        assert_eq!(got, pid);
        let st = ExitStatus::from_raw(raw);
        assert_eq!(st.code(), None);
        let sig = st.signal().expect("a death by a signal");
        assert!(sig >= 32, "{sig}");
        assert_eq!(signal_name(sig), None);
        let _ = child.try_wait();
        assert_eq!(signal_name(15), Some("TERM"));
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!((exited.code(), exited.signal()), (Some(3), None));
    }
}
