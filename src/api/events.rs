//! `GET /events` and `GET /sessions/:id/events`: pages of a session's
//! events after a cursor. Records are written by hand from the ring's
//! ready-encoded parts, so a page costs little more than a copy.

use serde_json::json;

use super::error::ApiError;
use super::query::{bad_query, number, query_param};
use super::sessions::find;
use super::Api;
use std::time::{Duration, Instant};

use crate::http::{Fill, Hold, HoldKind, HoldState, Reply};
use crate::ring::EventRef;
use crate::session::Sessions;

pub const DEFAULT_LIMIT: u64 = 500;
pub const MAX_LIMIT: u64 = 10_000;
/// A page ends before its body would pass this.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;
/// Room kept for the page's closing fields.
const PAGE_TAIL_BYTES: usize = 128;

/// An event id as this daemon makes them: `e<seq>`.
pub fn event_id_seq(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('e')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The longest a long poll waits.
pub const MAX_WAIT_MS: u64 = 60_000;

/// The session and cursor a request names (path id or `sessionId`, then
/// `afterSeq` / `afterEventId`, or `Last-Event-ID` for streams).
fn locate(
    api: &mut Api,
    path_id: Option<&str>,
    query: &[u8],
    last_event_id: Option<&[u8]>,
) -> Result<(usize, u64), ApiError> {
    let id = match path_id {
        Some(id) => std::borrow::Cow::Borrowed(id),
        None => match query_param(query, "sessionId")? {
            Some(id) if !id.is_empty() => id,
            _ => {
                return Err(ApiError::invalid("`sessionId` is required.")
                    .with_details(json!({ "field": "sessionId" })))
            }
        },
    };
    let (key, _) = find(&mut api.sessions, &id)?;
    let mut after = number(query, "afterSeq")?.unwrap_or(0);
    if let Some(event_id) = query_param(query, "afterEventId")? {
        match event_id_seq(&event_id).filter(|&seq| api.sessions.owns(key, seq)) {
            Some(seq) => after = seq,
            None => {
                return Err(bad_query(
                    "afterEventId",
                    &event_id,
                    "`afterEventId` is not an event of this session.",
                ))
            }
        }
    }
    if let Some(raw) = last_event_id {
        // Streams send `id: <seq>`; a reconnecting client sends it back, and
        // it wins over `afterSeq`.
        let text = std::str::from_utf8(raw).unwrap_or("").trim();
        let seq = text
            .parse::<u64>()
            .ok()
            .filter(|_| !text.starts_with('+'))
            .or_else(|| event_id_seq(text));
        match seq {
            Some(seq) => after = seq,
            None => {
                return Err(bad_query(
                    "Last-Event-ID",
                    text,
                    "`Last-Event-ID` must be an event seq.",
                ))
            }
        }
    }
    Ok((key, after))
}

pub fn on_events(
    api: &mut Api,
    path_id: Option<&str>,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let (key, after) = locate(api, path_id, query, None)?;
    let limit = number(query, "limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT) as usize;
    let wait = number(query, "waitMs")?.unwrap_or(0).min(MAX_WAIT_MS);
    let count = write_page(&mut api.sessions, key, after, limit, out);
    let s = api.sessions.get(key).expect("located");
    if count == 0 && wait > 0 && !s.is_over() {
        out.clear();
        return Ok(Reply {
            hold: Some(Hold {
                kind: HoldKind::LongPoll,
                topic: key,
                tag: s.serial,
                cursor: after,
                state: HoldState::Page { limit },
                until: Some(Instant::now() + Duration::from_millis(wait)),
            }),
            ..Reply::new(200)
        });
    }
    Ok(Reply::new(200))
}

/// The session a held request waits on, unless it went away (deleted; its
/// slab key may belong to another session by now).
fn held<'a>(api: &'a Api, hold: &Hold) -> Option<&'a crate::session::Session> {
    api.sessions
        .get(hold.topic)
        .filter(|s| s.serial == hold.tag)
}

/// A held long poll: the page if it has events now (or must answer anyway).
pub fn resume(api: &mut Api, hold: &Hold, expired: bool, out: &mut Vec<u8>) -> Reply {
    if held(api, hold).is_none() {
        // Deleted while held (only a finished session can be, and a long
        // poll on one answers at once): nothing more will come.
        return ApiError::new(404, "session_not_found", "Session was not found.").write(out);
    }
    let HoldState::Page { limit } = hold.state else {
        return ApiError::internal().write(out);
    };
    let count = write_page(&mut api.sessions, hold.topic, hold.cursor, limit, out);
    let live = api.sessions.get(hold.topic).is_some_and(|s| !s.is_over());
    if count == 0 && live && !expired {
        out.clear();
        return Reply {
            hold: Some(*hold),
            ..Reply::new(200)
        };
    }
    Reply::new(200)
}

pub fn on_stream(
    api: &mut Api,
    path_id: Option<&str>,
    query: &[u8],
    last_event_id: Option<&[u8]>,
) -> Result<Reply, ApiError> {
    let (key, after) = locate(api, path_id, query, last_event_id)?;
    let serial = api.sessions.get(key).expect("located").serial;
    Ok(Reply {
        hold: Some(Hold {
            kind: HoldKind::Stream,
            topic: key,
            tag: serial,
            cursor: after,
            state: HoldState::None,
            until: None,
        }),
        ..Reply::new(200)
    })
}

/// Appends `id` / `event` / `data` frames after the stream's cursor.
pub fn stream(api: &mut Api, hold: &mut Hold, out: &mut Vec<u8>, budget: usize) -> Fill {
    let Some(s) = held(api, hold) else {
        // The session was deleted under the stream: it ends.
        return Fill::End;
    };
    let live = !s.is_over();
    let start = out.len();
    let mut cursor = hold.cursor;
    let mut digits = itoa::Buffer::new();
    let stopped = api
        .sessions
        .visit(hold.topic, hold.cursor, usize::MAX, budget, |sid, e| {
            if out.len() - start >= budget {
                return false;
            }
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(digits.format(e.seq).as_bytes());
            out.extend_from_slice(b"\nevent: ");
            out.extend_from_slice(e.kind.as_str().as_bytes());
            out.extend_from_slice(b"\ndata: ");
            write_event(out, sid, e);
            out.extend_from_slice(b"\n\n");
            cursor = e.seq;
            true
        });
    hold.cursor = cursor;
    if stopped {
        Fill::Full
    } else if live {
        Fill::Idle
    } else {
        // A finished session whose events are all sent: the stream is over.
        Fill::End
    }
}

/// Appends one event record.
pub fn write_event(out: &mut Vec<u8>, session_id: &str, e: &EventRef<'_>) {
    let mut digits = itoa::Buffer::new();
    let seq = digits.format(e.seq);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.as_bytes());
    out.extend_from_slice(b",\"id\":\"e");
    out.extend_from_slice(seq.as_bytes());
    out.extend_from_slice(b"\",\"session_id\":\"");
    // Session ids are [0-9a-f-]: nothing to escape.
    out.extend_from_slice(session_id.as_bytes());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(e.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"payload_json\":");
    out.extend_from_slice(e.payload);
    out.extend_from_slice(b",\"created_at\":\"");
    out.extend_from_slice(e.stamp());
    out.extend_from_slice(b"\"}");
}

/// `{ events, nextCursor, hasMore }` (+ `firstAvailableSeq` when events
/// the cursor asked for are gone). Events older than the ring come from the
/// journal, the rest straight from the ring. Returns the events written.
pub fn write_page(
    sessions: &mut Sessions,
    key: usize,
    after: u64,
    limit: usize,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(b"{\"events\":[");
    let mut last = None;
    let mut count = 0;
    let has_more = sessions.visit(key, after, limit, MAX_PAGE_BYTES, |sid, e| {
        let mark = out.len();
        if count > 0 {
            out.push(b',');
        }
        write_event(out, sid, e);
        if count > 0 && out.len() - start + PAGE_TAIL_BYTES > MAX_PAGE_BYTES {
            out.truncate(mark);
            return false;
        }
        last = Some(e.seq);
        count += 1;
        true
    });
    let s = sessions.get(key).expect("found");
    out.extend_from_slice(b"],\"nextCursor\":");
    let mut digits = itoa::Buffer::new();
    match last {
        Some(seq) => {
            out.extend_from_slice(b"{\"afterSeq\":");
            out.extend_from_slice(digits.format(seq).as_bytes());
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if has_more {
        b",\"hasMore\":true"
    } else {
        b",\"hasMore\":false"
    });
    if s.history_cut() {
        if let Some(first) = s.first_available().filter(|&f| after + 1 < f) {
            out.extend_from_slice(b",\"firstAvailableSeq\":");
            out.extend_from_slice(digits.format(first).as_bytes());
        }
    }
    out.push(b'}');
    count
}
