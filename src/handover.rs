//! A live restart: the serving process replaces its program (`execve`, so
//! the pid, the supervisor's link, the listener and every PTY stay), and
//! hands the new program what only memory held.

/// This build's handover format, kept in the binary as text so that a
/// build's own bytes say what it takes (`coven daemon _handover` prints
/// it; tests make an incompatible build by changing these digits).
#[used]
static HANDOVER_MARK: [u8; 26] = *b"coven-handover-version:001";
/// A free-form tag of this build, kept the same way (tests make a second
/// build by changing it); `dev` unless changed.
#[used]
static BUILD_MARK: [u8; 40] = *b"coven-build:dev\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Reads a marker through a volatile load, so that the bytes in the
/// binary, not a value the compiler folded in, are what count.
fn read_mark<const N: usize>(mark: &'static [u8; N]) -> [u8; N] {
    // SAFETY: a valid, aligned reference to a static array.
    unsafe { std::ptr::read_volatile(mark) }
}

/// The handover format this build writes and reads.
pub fn version() -> u32 {
    let mark = read_mark(&HANDOVER_MARK);
    mark[23..]
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d.wrapping_sub(b'0') % 10))
}

/// This build's tag.
pub fn build() -> String {
    let mark = read_mark(&BUILD_MARK);
    let tag = &mark[b"coven-build:".len()..];
    let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
    String::from_utf8_lossy(&tag[..end]).into_owned()
}

/// What `coven daemon _handover` prints: one line of JSON.
pub fn describe() -> String {
    serde_json::json!({
        "handover": version(),
        "protocol": crate::supervisor::proto::PROTOCOL,
        "version": env!("CARGO_PKG_VERSION"),
        "build": build(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_read_back() {
        assert_eq!(super::version(), 1);
        assert_eq!(super::build(), "dev");
    }
}
