//! `GET /events` and `GET /sessions/:id/events`: pages of a session's
//! events after a cursor. Records are written by hand from the ring's
//! ready-encoded parts, so a page costs little more than a copy.

use serde_json::json;

use super::error::ApiError;
use super::router::query_param;
use super::sessions::find;
use super::Api;
use crate::http::Reply;
use crate::ring::Event;
use crate::session::Sessions;

pub const DEFAULT_LIMIT: u64 = 500;
pub const MAX_LIMIT: u64 = 10_000;
/// A page ends before its body would pass this.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;
/// Room kept for the page's closing fields.
const PAGE_TAIL_BYTES: usize = 128;

fn bad_query(field: &str, value: &str, message: &str) -> ApiError {
    ApiError::invalid(message).with_details(json!({ "field": field, field: value }))
}

fn number(query: &[u8], field: &str) -> Result<Option<u64>, ApiError> {
    match query_param(query, field)? {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if !v.starts_with('+') => Ok(Some(n)),
            _ => Err(bad_query(
                field,
                &v,
                &format!("`{field}` must be a non-negative integer."),
            )),
        },
    }
}

/// An event id as this daemon makes them: `e<seq>`.
pub fn event_id_seq(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('e')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn on_events(
    api: &mut Api,
    path_id: Option<&str>,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
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
    let (key, _) = find(&api.sessions, &id)?;
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
    let limit = number(query, "limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT) as usize;
    write_page(&mut api.sessions, key, after, limit, out);
    Ok(Reply {
        status: 200,
        allow: None,
    })
}

/// Appends one event record.
pub fn write_event(out: &mut Vec<u8>, session_id: &str, e: &Event) {
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
    out.extend_from_slice(&e.payload);
    out.extend_from_slice(b",\"created_at\":\"");
    out.extend_from_slice(&e.created_at);
    out.extend_from_slice(b"\"}");
}

/// `{ events, nextCursor, hasMore }` (+ `firstAvailableSeq` when events
/// the cursor asked for are gone). Events older than the ring come from the
/// journal, the rest straight from the ring.
pub fn write_page(
    sessions: &mut Sessions,
    key: usize,
    after: u64,
    limit: usize,
    out: &mut Vec<u8>,
) {
    let floor = sessions.get(key).expect("found").ring.dropped_through();
    let mut disk = Vec::new();
    let mut disk_cut = false;
    if after < floor {
        // One more than the limit, to know whether more exist.
        disk = sessions.read_journal(key, after, floor + 1, limit + 1, MAX_PAGE_BYTES);
        let bytes: usize = disk.iter().map(|e| e.payload.len()).sum();
        disk_cut = disk.len() > limit || bytes >= MAX_PAGE_BYTES;
    }
    let s = sessions.get(key).expect("found");
    let ring = (!disk_cut)
        .then(|| s.ring.after(after.max(floor)))
        .into_iter()
        .flatten();
    let mut events = disk.iter().chain(ring).peekable();
    let start = out.len();
    out.extend_from_slice(b"{\"events\":[");
    let mut last = None;
    let mut count = 0;
    let mut has_more = false;
    while let Some(e) = events.peek() {
        if count == limit {
            has_more = true;
            break;
        }
        let mark = out.len();
        if count > 0 {
            out.push(b',');
        }
        write_event(out, &s.id, e);
        if count > 0 && out.len() - start + PAGE_TAIL_BYTES > MAX_PAGE_BYTES {
            out.truncate(mark);
            has_more = true;
            break;
        }
        last = Some(e.seq);
        count += 1;
        events.next();
    }
    has_more |= disk_cut && events.peek().is_none();
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
}
