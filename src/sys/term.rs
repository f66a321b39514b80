//! The client's terminal: its size, and waiting on it beside sockets.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The local terminal's size (of stdout, stdin or stderr, the first that
/// is a terminal), clamped to what the API accepts.
pub fn window_size() -> Option<(u16, u16)> {
    [1, 0, 2].into_iter().find_map(|fd| {
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0)
            .then(|| (ws.ws_col.min(1000), ws.ws_row.min(1000)))
    })
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes
/// (None: no limit); which ones are. `Interrupted` if a signal came.
///
/// Linux and FreeBSD: `poll`. macOS: `select`, because its `poll` does not
/// support terminal devices: on a stdin that is `/dev/tty` it reports
/// `POLLNVAL` at once (poll(2), BUGS), and a client would then only see
/// output when a key is pressed. `select` works there; the client's few
/// descriptors are far below `FD_SETSIZE`.
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match timeout {
        Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    poll(&mut polled, timeout)?;
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    use nix::sys::select::{select, FdSet};
    use nix::sys::time::{TimeVal, TimeValLike};
    let mut set = FdSet::new();
    for fd in fds {
        set.insert(*fd);
    }
    let mut tv = timeout.map(|t| TimeVal::microseconds(t.as_micros().min(i64::MAX as u128) as i64));
    select(None, Some(&mut set), None, None, tv.as_mut())?;
    Ok(fds.iter().map(|fd| set.contains(*fd)).collect())
}
