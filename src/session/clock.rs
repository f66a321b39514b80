//! The clock every event's time comes from: the wall clock read once at
//! start, advanced by the monotonic clock, so that within a run times never
//! go backwards and a recording's pauses are the real ones; and the record's
//! timestamps (RFC 3339, fixed width).

use std::time::{Instant, SystemTime};

pub fn stamp_str(stamp: &[u8; 20]) -> &str {
    std::str::from_utf8(stamp).unwrap_or("1970-01-01T00:00:00Z")
}

/// The daemon's time: the wall clock read once, then advanced by the
/// monotonic clock, so that event times never go backwards within a run
/// (a recording's pauses are real pauses even if the wall clock is set).
/// RFC 3339 text, formatted once per millisecond at most.
pub(super) struct Clock {
    wall: SystemTime,
    mono: Instant,
    /// Unix milliseconds of `text`.
    ms: u64,
    text: [u8; 24],
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
            ms: u64::MAX,
            text: [0; 24],
        }
    }
}

impl Clock {
    pub(super) fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }

    /// Unix milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        unix_ms(self.now())
    }

    /// An event's time: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub(super) fn event_stamp(&mut self) -> [u8; 24] {
        let now = self.now();
        let ms = unix_ms(now);
        if ms != self.ms {
            let text = humantime::format_rfc3339_millis(now).to_string();
            if text.len() == 24 {
                self.text.copy_from_slice(text.as_bytes());
                self.ms = ms;
            }
        }
        self.text
    }

    /// A record's time, to the second: `YYYY-MM-DDTHH:MM:SSZ`.
    pub(super) fn stamp(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..19].copy_from_slice(&self.event_stamp()[..19]);
        out[19] = b'Z';
        out
    }
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
