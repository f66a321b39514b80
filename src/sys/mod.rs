//! The platform layer: every operating-system call whose availability or
//! behaviour differs between the systems the daemon runs on (Linux, macOS,
//! FreeBSD), behind small functions named for what they do.
//!
//! This is the only module that says `cfg(target_os)` or calls `libc`.
//! Everything else calls these functions and is the same code everywhere.
//! What is left to `nix` and `std` outside this module is POSIX that
//! behaves alike on all of them (termios, `poll` of sockets, `flock`,
//! `kill`).
//!
//! Crates weighed: `rustix` would replace the few raw `libc` calls here
//! (`TIOCSCTTY`, `TIOCGWINSZ`/`TIOCSWINSZ`, `madvise`, `sysctlbyname`,
//! `fcntl` between fork and exec) with safe ones, but it duplicates `nix`,
//! which the rest of this module uses: one crate for the system is kept,
//! and the unsafe calls stay here, each with its reason. `signal-hook-mio`
//! would register the signal pipe with mio for us; `signal_pipe` below is
//! the same few lines over `signal-hook` (already a dependency), and the
//! supervisor, which has no mio, uses it too.

pub mod process;
pub mod pty;
pub mod term;

use std::io;
use std::os::fd::AsFd;

/// Raises the soft descriptor limit as far as the system lets a process
/// go, and returns the limit in force. Each client and each session costs
/// descriptors, and the default soft limit (1,024 on Linux, 256 on macOS)
/// is below the default connection limit plus sessions.
///
/// Linux: up to the hard limit (never infinite for `RLIMIT_NOFILE`).
/// FreeBSD: up to the hard limit, which the kernel clamps to
/// `kern.maxfilesperproc` itself (`kern_proc_setrlimit`).
/// macOS: the hard limit is usually `RLIM_INFINITY`, and a soft limit
/// above `kern.maxfilesperproc` is refused with `EINVAL` (setrlimit(2),
/// COMPATIBILITY: use `min(OPEN_MAX, rlim_max)`; xnu's `dosetrlimit`):
/// up to the smaller of the hard limit and `kern.maxfilesperproc`
/// (`OPEN_MAX`, 10,240, if that cannot be read).
pub fn raise_fd_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let want = hard.min(max_files_per_process());
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard)?;
    }
    let now = getrlimit(Resource::RLIMIT_NOFILE)?.0;
    // rlim_t is u64 on Linux and macOS, i64 on FreeBSD.
    #[allow(clippy::useless_conversion)]
    Ok(u64::try_from(now).unwrap_or(u64::MAX))
}

/// macOS's `OPEN_MAX` (`<sys/syslimits.h>`), which `libc` does not carry.
#[cfg(any(target_os = "macos", target_os = "ios"))]
const OPEN_MAX: libc::rlim_t = 10_240;

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn max_files_per_process() -> libc::rlim_t {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    // SAFETY: the name is NUL-terminated; `value` and `len` describe a
    // buffer of one c_int, which this sysctl writes.
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.maxfilesperproc".as_ptr(),
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 && value > 0 {
        value as libc::rlim_t
    } else {
        OPEN_MAX
    }
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
fn max_files_per_process() -> libc::rlim_t {
    libc::RLIM_INFINITY
}

/// The longest socket path `bind` and `connect` take, in bytes: the size of
/// `sockaddr_un.sun_path` less its terminating NUL (107 on Linux, 103 on
/// macOS and the BSDs).
pub fn max_socket_path_bytes() -> usize {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    std::mem::size_of_val(&addr.sun_path) - 1
}

/// The effective uid of the process at the other end of a connected Unix
/// socket, as the kernel recorded it at `connect`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_uid(sock: &impl AsFd) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    Ok(getsockopt(sock, PeerCredentials)?.uid())
}

/// The effective uid of the process at the other end of a connected Unix
/// socket. macOS and the BSDs have no `SO_PEERCRED`; `getpeereid` reads the
/// credentials the kernel kept from `connect` (`LOCAL_PEERCRED`).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn peer_uid(sock: &impl AsFd) -> io::Result<u32> {
    Ok(nix::unistd::getpeereid(sock)?.0.as_raw())
}

/// Fills `buf` (at most 256 bytes) with random bytes from the kernel; on
/// the unlikely failure the buffer is left as it was.
pub fn random_bytes(buf: &mut [u8]) {
    debug_assert!(buf.len() <= 256);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    unsafe {
        libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: getentropy writes at most `buf.len()` (<= 256) bytes.
    unsafe {
        libc::getentropy(buf.as_mut_ptr().cast(), buf.len());
    }
}

/// Bytes free for an unprivileged writer on the file system holding `path`
/// (`statvfs`: available blocks times the fragment size).
pub fn free_disk_bytes(path: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Where the kernel lists this process's open descriptors, if anywhere.
/// FreeBSD's `/dev/fd` shows only 0–2 unless fdescfs is mounted, so it is
/// not trusted there.
fn fd_dir() -> Option<&'static str> {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        Some("/proc/self/fd")
    } else if cfg!(target_vendor = "apple") {
        Some("/dev/fd")
    } else {
        None
    }
}

/// Marks every descriptor the process inherited (beyond stdio)
/// close-on-exec, so that none reaches a harness: whoever started the
/// daemon may have left some open (a shell's, a build tool's jobserver
/// pipe). Runs once, before anything else is opened.
pub fn cloexec_inherited() {
    fn mark(fd: i32) {
        // SAFETY: setting a descriptor flag; a closed or invalid fd (like
        // the directory handle of the listing) only yields EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    #[cfg(target_os = "freebsd")]
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    if unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) } == 0 {
        return;
    }
    if let Some(Ok(dir)) = fd_dir().map(std::fs::read_dir) {
        let fds: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect();
        fds.into_iter().for_each(mark);
        return;
    }
    // No listing: try every descriptor below the limit (a few thousand
    // cheap calls at most; this runs once).
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    (3..max.clamp(3, 65_536) as i32).for_each(mark);
}

/// Gives back the pages of clean, read-only file mappings (the daemon's
/// code and constants, and the shared libraries'), which the kernel keeps
/// mapped once touched. Start-up code runs once; left resident, it and the
/// neighbours fault-around brought in with it are most of an idle daemon's
/// memory. Pages fault back in, unchanged, from the page cache when next
/// used.
///
/// Linux: `MADV_DONTNEED` on each private mapping without write permission
/// whose pages are all still the file's (`Anonymous: 0` in smaps). That
/// test matters: RELRO pages are read-only now but were written by the
/// loader, and dropping them would bring back unrelocated bytes.
pub fn release_code_pages() {
    CodePages::find().release();
}

/// The mappings `release_code_pages` gives back, found (`find`) apart from
/// the giving back (`release`), so that a caller can inline the latter into
/// the code that runs next: what runs after the `madvise` calls faults back
/// in, with the 64 KiB around each page touched.
pub struct CodePages {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ranges: [(usize, usize); 64],
    #[cfg(any(target_os = "linux", target_os = "android"))]
    count: usize,
}

impl CodePages {
    /// Elsewhere nothing is found, so nothing is given back: macOS's and
    /// FreeBSD's `MADV_DONTNEED` and `MADV_FREE` are hints for anonymous
    /// memory, and there is no cheap way to drop a file mapping's resident
    /// pages. The cost is the code pages that start-up and the first
    /// requests touched (about a megabyte on Linux before this was done),
    /// which stay resident until memory is short.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn find() -> CodePages {
        CodePages {}
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn find() -> CodePages {
        let mut found = CodePages {
            ranges: [(0, 0); 64],
            count: 0,
        };
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return found;
        };
        found.parse(&smaps);
        found
    }

    /// `madvise(MADV_DONTNEED)` on each range; nothing else, and no
    /// allocator call after the first.
    #[inline(always)]
    pub fn release(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        for &(start, end) in &self.ranges[..self.count] {
            // SAFETY: advice on our own read-only, never-written file
            // mapping exactly as the kernel reported it; its pages refault
            // unchanged from the file.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn parse(&mut self, smaps: &str) {
        // Kept in place, and `smaps` freed before the first `madvise`: nothing
        // after it may call the allocator, whose code would come straight
        // back. A process has a handful of such mappings; past the first 64,
        // the rest stay resident.
        let ranges = &mut self.ranges;
        let count = &mut self.count;
        let mut candidate: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else {
                continue;
            };
            if let Some(range) = parse_range(first) {
                // A mapping's header: "start-end perms offset dev inode path".
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                let read_only_private = perms.len() == 4
                    && perms.starts_with('r')
                    && perms.as_bytes()[1] == b'-'
                    && perms.ends_with('p');
                candidate = (read_only_private && path.starts_with('/')).then_some(range);
            } else if first == "Anonymous:" {
                if let Some(range) = candidate.take() {
                    if fields.next() == Some("0") && *count < ranges.len() {
                        ranges[*count] = range;
                        *count += 1;
                    }
                }
            }
        }
    }
}

/// Returns the heap's free memory to the kernel where the allocator keeps
/// it (glibc keeps freed chunks at the top of the heap and in its arenas
/// after a large answer has come and gone).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe { libc::malloc_trim(0) };
}

/// Elsewhere the allocator returns memory itself (musl, macOS's and
/// FreeBSD's mallocs unmap freed runs): nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn parse_range(field: &str) -> Option<(usize, usize)> {
    let (start, end) = field.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_of_a_socket_pair_is_us() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn random_bytes_vary() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        random_bytes(&mut a);
        random_bytes(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn socket_path_limit_is_the_platform_one() {
        let max = max_socket_path_bytes();
        assert!(max == 107 || max == 103, "{max}");
        let dir = tempfile::tempdir().unwrap();
        let room = max - dir.path().as_os_str().len() - 1;
        let fits = dir.path().join("x".repeat(room));
        assert_eq!(fits.as_os_str().len(), max);
        std::os::unix::net::UnixListener::bind(&fits).unwrap();
        let long = dir.path().join("y".repeat(room + 1));
        assert!(std::os::unix::net::UnixListener::bind(&long).is_err());
    }

    #[test]
    fn released_code_still_runs() {
        release_code_pages();
        // Code, constants and relocated data all still work afterwards.
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[99], "63");
        assert!(std::panic::catch_unwind(|| panic!("unwinds")).is_err());
    }
}
