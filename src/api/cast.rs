//! `GET /api/v1/sessions/:id/cast`: the session as an asciicast v2
//! recording (`application/x-asciicast`), the format asciinema's players
//! and sites read: a header line, then one `[time, code, data]` line per
//! output (`o`), input (`i`) and resize (`r`, `"COLSxROWS"`).
//!
//! It is streamed like an event stream (`HoldKind::Cast`): each fill reads
//! at most the connection's stream budget from the journal, so a recording
//! of any length costs a bounded buffer. It covers the events recorded when
//! it was asked for, then ends. Times are the events' `created_at`
//! (milliseconds, from the daemon's monotonic clock), counted from the
//! launch; sizes come from the session's sizes file.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde_json::json;

use super::error::ApiError;
use super::query::{bad_query, query_param};
use super::sessions::find;
use super::Api;
use crate::http::{Fill, Hold, HoldKind, HoldState, Reply};
use crate::journal::{self, Size};
use crate::ring::Kind;

/// The longest `idleLimit`, in seconds (a day).
const MAX_IDLE_LIMIT_SECS: f64 = 86_400.0;

/// A recording being sent, in `Api::casts` (by its hold's `limit`).
pub struct Cast {
    /// Unix ms the recording's times count from (the launch).
    start_ms: Option<u64>,
    /// The previous line's wall time, and its time in the recording
    /// (pauses cut to `idle_limit_ms`).
    last_ms: u64,
    at_ms: u64,
    idle_limit_ms: Option<u64>,
    sizes: VecDeque<Size>,
    /// The header, until it is sent.
    header: Option<Vec<u8>>,
    /// The newest event when it was asked for: it ends there.
    end_seq: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn stamp_ms(stamp: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stamp).ok()?;
    humantime::parse_rfc3339(text).ok().map(unix_ms)
}

impl Cast {
    /// The recording's time for something that happened at `ms`: the
    /// clock never runs backwards, and pauses longer than the idle limit
    /// count as the limit.
    fn time(&mut self, ms: u64) -> u64 {
        let start = *self.start_ms.get_or_insert(ms);
        if self.last_ms == 0 {
            self.last_ms = start;
        }
        let mut delta = ms.saturating_sub(self.last_ms);
        if let Some(limit) = self.idle_limit_ms {
            delta = delta.min(limit);
        }
        self.last_ms = self.last_ms.max(ms);
        self.at_ms += delta;
        self.at_ms
    }

    fn line(&mut self, out: &mut Vec<u8>, ms: u64, code: &str, data: &str) {
        let t = self.time(ms);
        out.push(b'[');
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(t / 1000).as_bytes());
        out.push(b'.');
        let frac = t % 1000;
        out.extend_from_slice(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        out.extend_from_slice(b", \"");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\", ");
        let _ = serde_json::to_writer(&mut *out, data);
        out.extend_from_slice(b"]\n");
    }

    /// Resize lines for the sizes that took effect before event `seq`.
    fn sizes_before(&mut self, out: &mut Vec<u8>, seq: u64) {
        while let Some(size) = self.sizes.front().copied().filter(|s| s.after < seq) {
            self.sizes.pop_front();
            let text = format!("{}x{}", size.cols, size.rows);
            self.line(out, size.unix_ms, "r", &text);
        }
    }
}

pub fn on_cast(
    api: &mut Api,
    id: &str,
    query: &[u8],
    _out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let idle_limit = match query_param(query, "idleLimit")? {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= MAX_IDLE_LIMIT_SECS => {
                Some((s * 1000.0).round().max(1.0) as u64)
            }
            _ => {
                return Err(bad_query(
                    "idleLimit",
                    &v,
                    "`idleLimit` must be a number of seconds above 0 and at most 86400.",
                ))
            }
        },
    };
    let (key, s) = find(&mut api.sessions, id)?;
    let mut sizes: VecDeque<Size> = s.dir().map(journal::read_sizes).unwrap_or_default().into();
    let (cols, rows, start_ms) = match sizes.front() {
        Some(first) if first.after == 0 => {
            let first = sizes.pop_front().expect("front");
            (first.cols, first.rows, Some(first.unix_ms))
        }
        _ => (80, 24, None),
    };
    // Sessions from before sizes were kept start at their record's time.
    let start_ms = start_ms.or_else(|| stamp_ms(s.created_at().as_bytes()));
    let mut header = json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": start_ms.unwrap_or(0) / 1000,
        "title": s.title(),
        "env": { "TERM": "xterm-256color" },
    });
    if let Some(limit) = idle_limit {
        header["idle_time_limit"] = json!(limit as f64 / 1000.0);
    }
    let mut header = serde_json::to_vec(&header).unwrap_or_default();
    header.push(b'\n');
    let serial = s.serial;
    let end_seq = s.last_seq();
    let slot = api.casts.insert(Cast {
        start_ms,
        last_ms: 0,
        at_ms: 0,
        idle_limit_ms: idle_limit,
        sizes,
        header: Some(header),
        end_seq,
    });
    Ok(Reply {
        hold: Some(Hold {
            kind: HoldKind::Cast,
            topic: key,
            tag: serial,
            cursor: 0,
            state: HoldState::Slot(slot),
            until: None,
        }),
        content_type: "application/x-asciicast",
        ..Reply::new(200)
    })
}

/// Appends the recording's next lines, about `budget` bytes of them.
pub fn stream(api: &mut Api, hold: &mut Hold, out: &mut Vec<u8>, budget: usize) -> Fill {
    let Api {
        casts, sessions, ..
    } = api;
    let Some(cast) = casts.get_mut(super::slot_of(hold)) else {
        return Fill::End;
    };
    if sessions
        .get(hold.topic)
        .is_none_or(|s| s.serial != hold.tag)
    {
        // Deleted under the download: it ends where it got to.
        casts.remove(super::slot_of(hold));
        return Fill::End;
    }
    if let Some(header) = cast.header.take() {
        out.extend_from_slice(&header);
    }
    let start = out.len();
    let mut cursor = hold.cursor;
    let mut past_end = false;
    let stopped = sessions.visit(hold.topic, hold.cursor, usize::MAX, budget, |_, e| {
        if e.seq > cast.end_seq {
            past_end = true;
            return false;
        }
        if out.len() - start >= budget {
            return false;
        }
        cast.sizes_before(out, e.seq);
        let code = match e.kind {
            Kind::Output => "o",
            Kind::Input => "i",
            _ => {
                cursor = e.seq;
                return true;
            }
        };
        if let (Some(ms), Some(text)) = (stamp_ms(e.stamp()), super::wire::payload_data(e.payload))
        {
            cast.line(out, ms, code, &text);
        }
        cursor = e.seq;
        true
    });
    hold.cursor = cursor;
    if stopped && !past_end {
        return Fill::Full;
    }
    // Resizes after the last event.
    cast.sizes_before(out, u64::MAX);
    casts.remove(super::slot_of(hold));
    Fill::End
}

/// Forgets a recording whose connection went away before its end.
pub fn release(api: &mut Api, hold: &Hold) {
    api.casts.try_remove(super::slot_of(hold));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(idle: Option<u64>) -> Cast {
        Cast {
            start_ms: Some(10_000),
            last_ms: 0,
            at_ms: 0,
            idle_limit_ms: idle,
            sizes: VecDeque::new(),
            header: None,
            end_seq: 0,
        }
    }

    #[test]
    fn times_count_from_the_start_and_pauses_are_cut() {
        let mut c = cast(None);
        let mut out = Vec::new();
        c.line(&mut out, 10_250, "o", "a\u{1b}[1m");
        c.line(&mut out, 15_000, "i", "b");
        // A clock that went backwards does not run the recording back.
        c.line(&mut out, 14_000, "o", "c");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[0.250, \"o\", \"a\\u001b[1m\"]\n[5.000, \"i\", \"b\"]\n[5.000, \"o\", \"c\"]\n"
        );
        let mut c = cast(Some(500));
        let mut out = Vec::new();
        c.line(&mut out, 10_100, "o", "a");
        c.line(&mut out, 20_000, "o", "b");
        c.line(&mut out, 20_300, "o", "c");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[0.100, \"o\", \"a\"]\n[0.600, \"o\", \"b\"]\n[0.900, \"o\", \"c\"]\n"
        );
    }
}
