//! Session routes: list, get, input, kill, resize, archive, delete, and
//! the harness registry (launches are `launch.rs`'s).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::body::{field_error, object, optional_int};
use super::error::ApiError;
use super::query::{bad_query, number, query_param, query_values};
use super::wire::{self, SessionRecord};
use super::Api;
use crate::http::Reply;
use crate::session::store::Listed;
use crate::session::{
    stamp_str, valid_session_id, DeleteError, Refusal, Session, Sessions, Status,
};

const MAX_DIMENSION: u64 = crate::journal::MAX_TERMINAL_SIDE as u64;
const MAX_GRACE_MS: u64 = 60_000;

fn reply(status: u16) -> Reply {
    Reply::new(status)
}

pub fn record(s: &Session) -> SessionRecord<'_> {
    SessionRecord {
        id: &s.id,
        project_root: s.project_root(),
        harness: s.harness(),
        title: s.title(),
        status: s.status.as_str(),
        exit_code: s.exit_code,
        archived_at: s.archived_at.as_ref().map(stamp_str),
        created_at: s.created_at(),
        updated_at: s.updated_at(),
        cwd: s.cwd(),
        pid: s.proc.pid,
    }
}

fn session_not_found(id: &str) -> ApiError {
    ApiError::new(404, "session_not_found", "Session was not found.")
        .with_details(json!({ "sessionId": id }))
}

fn session_not_live(s: &Session) -> ApiError {
    ApiError::new(409, "session_not_live", "Session is not running.")
        .with_details(json!({ "sessionId": &*s.id, "status": s.status.as_str() }))
}

/// Finds a session by its public id.
/// Finds a session by its public id (loading a finished one from disk).
pub fn find<'a>(sessions: &'a mut Sessions, id: &str) -> Result<(usize, &'a Session), ApiError> {
    let key = sessions.find(id).ok_or_else(|| session_not_found(id))?;
    Ok((key, sessions.get(key).expect("found")))
}

/// Finds a running session.
fn find_live(sessions: &mut Sessions, id: &str) -> Result<usize, ApiError> {
    let (key, s) = find(sessions, id)?;
    if s.status != Status::Running {
        return Err(session_not_live(s));
    }
    Ok(key)
}

/// A listed session's record, from its metadata.
fn listed_record(l: &Listed) -> SessionRecord<'_> {
    let m = &l.meta;
    SessionRecord {
        id: &m.id,
        project_root: &m.project_root,
        harness: &m.harness,
        title: &m.title,
        status: &m.status,
        exit_code: m.exit_code,
        archived_at: m.archived_at.as_deref(),
        created_at: &m.created_at,
        updated_at: &m.updated_at,
        cwd: &m.cwd,
        pid: l.pid,
    }
}

/// The unpaged list (older clients) answers at most this many sessions,
/// the newest: past it, a client must page.
pub const MAX_UNPAGED_SESSIONS: usize = 10_000;

fn storage_error(e: std::io::Error) -> ApiError {
    ApiError::new(
        500,
        "internal_error",
        "The session index could not be read.",
    )
    .with_details(json!({ "reason": e.to_string() }))
}

/// Sessions per page of the paged list, by default and at most.
pub const DEFAULT_PAGE_SESSIONS: u64 = 100;
pub const MAX_PAGE_SESSIONS: u64 = 1000;
/// The query parameters that ask for the paged form of the list.
const PAGING_PARAMS: [&str; 4] = ["limit", "cursor", "includeArchived", "status"];
const STATUSES: [Status; 5] = [
    Status::Running,
    Status::Completed,
    Status::Failed,
    Status::Killed,
    Status::Orphaned,
];

/// A page position as clients carry it: opaque, `[0-9a-f]`, the hex of
/// the id of the last session the previous page covered.
fn encode_cursor(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) || text.is_empty() || text.len() > 2 * 128 {
        return None;
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let id = String::from_utf8(bytes).ok()?;
    valid_session_id(&id).then_some(id)
}

/// `GET /sessions`: without paging parameters, every session that is not
/// archived, as the contract's plain array; with any of them, one page
/// `{ sessions, next_cursor }`.
pub fn on_list(api: &mut Api, query: &[u8], out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let mut paged = false;
    for name in PAGING_PARAMS {
        paged |= query_param(query, name)?.is_some();
    }
    if !paged {
        let page = api
            .sessions
            .page(None, MAX_UNPAGED_SESSIONS, |e| !e.archived)
            .map_err(storage_error)?;
        let records: Vec<SessionRecord<'_>> = page.sessions.iter().map(listed_record).collect();
        wire::write_json(out, &records);
        return Ok(reply(200));
    }
    let limit = number(query, "limit")?.unwrap_or(DEFAULT_PAGE_SESSIONS);
    if !(1..=MAX_PAGE_SESSIONS).contains(&limit) {
        return Err(bad_query(
            "limit",
            &limit.to_string(),
            &format!("`limit` must be an integer from 1 to {MAX_PAGE_SESSIONS}."),
        ));
    }
    let cursor = match query_param(query, "cursor")? {
        None => None,
        Some(c) => Some(decode_cursor(&c).ok_or_else(|| {
            bad_query(
                "cursor",
                &c,
                "`cursor` is not a cursor this daemon gave out.",
            )
        })?),
    };
    let include_archived = match query_param(query, "includeArchived")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad_query(
                "includeArchived",
                other,
                "`includeArchived` must be `true` or `false`.",
            ))
        }
    };
    let mut statuses: Vec<Status> = Vec::new();
    for value in query_values(query, "status")? {
        for name in value.split(',') {
            let status = STATUSES
                .into_iter()
                .find(|s| s.as_str() == name)
                .ok_or_else(|| {
                    bad_query("status", name, "`status` must be one or more of running, completed, failed, killed, orphaned (comma-separated or repeated).")
                        .with_details(json!({ "field": "status", "status": name, "statuses": STATUSES.map(Status::as_str) }))
                })?;
            statuses.push(status);
        }
    }
    let codes: Vec<u8> = statuses.iter().map(|s| s.code()).collect();
    let page = api
        .sessions
        .page(cursor.as_deref(), limit as usize, |e| {
            (include_archived || !e.archived)
                && (codes.is_empty() || e.status.is_some_and(|c| codes.contains(&c)))
        })
        .map_err(storage_error)?;
    wire::write_json(
        out,
        &wire::SessionPage {
            sessions: page.sessions.iter().map(listed_record).collect(),
            next_cursor: page.next_after.as_deref().map(encode_cursor),
        },
    );
    Ok(reply(200))
}

/// `POST /sessions/:id/archive` and `/unarchive`: the updated record.
pub fn on_archive(
    api: &mut Api,
    id: &str,
    archived: bool,
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let (key, _) = find(&mut api.sessions, id)?;
    let from = api.sessions.submitted();
    api.sessions.set_archived(key, archived);
    let s = api.sessions.get(key).expect("found");
    wire::write_json(out, &record(s));
    Ok(api.durable(from, 200, out))
}

/// `DELETE /sessions/:id`: a finished session's record and history.
pub fn on_delete(api: &mut Api, id: &str, out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let (key, s) = find(&mut api.sessions, id)?;
    let status = s.status.as_str();
    let from = api.sessions.submitted();
    match api.sessions.delete(key) {
        Ok(()) => {
            wire::write_json(
                out,
                &json!({ "ok": true, "deleted": true, "sessionId": id }),
            );
            Ok(api.durable(from, 200, out))
        }
        Err(DeleteError::Live) => Err(ApiError::new(
            409,
            "session_live",
            "Session is running; kill it before deleting it.",
        )
        .with_details(json!({ "sessionId": id, "status": status }))),
        Err(DeleteError::Storage(reason)) => Err(ApiError::new(
            500,
            "internal_error",
            "The session's files could not be removed.",
        )
        .with_details(json!({ "sessionId": id, "reason": reason }))),
    }
}

pub fn on_get(api: &mut Api, id: &str, out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let (_, s) = find(&mut api.sessions, id)?;
    wire::write_json(out, &record(s));
    Ok(reply(200))
}

const ACCEPTED: wire::Accepted = wire::Accepted {
    ok: true,
    accepted: true,
};

pub fn on_input(
    api: &mut Api,
    id: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let key = find_live(&mut api.sessions, id)?;
    let obj = object(body, false)?;
    let data = match obj.get("data") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => return Err(field_error("data", "`data` is required.")),
        Some(_) => return Err(field_error("data", "`data` must be a string.")),
    };
    let limit = api.sessions.limits().input_queue_bytes;
    if data.len() > limit {
        // It could never fit, however long the client waits: not a 503.
        return Err(ApiError::new(
            413,
            "input_too_large",
            "The input is larger than the session's input queue can hold.",
        )
        .with_details(json!({ "sessionId": id, "bytes": data.len(), "inputQueueBytes": limit })));
    }
    match api.sessions.input(key, data) {
        Ok(()) => {
            wire::write_json(out, &ACCEPTED);
            Ok(reply(202))
        }
        Err(Refusal::QueueFull { limit }) => Err(ApiError::new(
            503,
            "runtime_unavailable",
            "The session's input queue is full.",
        )
        .with_details(json!({ "sessionId": id, "inputQueueBytes": limit }))),
        Err(Refusal::NotLive) => Err(session_not_live(api.sessions.get(key).expect("found"))),
    }
}

/// `TERM`, `SIGTERM`, `term`… for the four signals a kill may send.
fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    match upper.strip_prefix("SIG").unwrap_or(&upper) {
        "TERM" => Some(Signal::SIGTERM),
        "INT" => Some(Signal::SIGINT),
        "HUP" => Some(Signal::SIGHUP),
        "KILL" => Some(Signal::SIGKILL),
        _ => None,
    }
}

pub fn on_kill(api: &mut Api, id: &str, body: &[u8], out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let key = find_live(&mut api.sessions, id)?;
    let obj = object(body, true)?;
    let signal = match obj.get("signal") {
        None | Some(Value::Null) => Signal::SIGTERM,
        Some(Value::String(s)) => parse_signal(s).ok_or_else(|| {
            ApiError::invalid("`signal` must be one of TERM, INT, HUP, KILL.")
                .with_details(json!({ "field": "signal", "signal": s }))
        })?,
        Some(_) => return Err(field_error("signal", "`signal` must be a string.")),
    };
    let grace = match optional_int(&obj, "graceMs", 0, MAX_GRACE_MS)? {
        Some(ms) => Duration::from_millis(ms),
        None => api.sessions.limits().kill_grace,
    };
    let from = api.sessions.submitted();
    match api.sessions.kill(key, signal, grace, Instant::now()) {
        Ok(()) => {
            wire::write_json(out, &ACCEPTED);
            // 202 once the kill record and the status are durable.
            Ok(api.durable(from, 202, out))
        }
        Err(_) => Err(session_not_live(api.sessions.get(key).expect("found"))),
    }
}

pub fn on_resize(
    api: &mut Api,
    id: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let key = find_live(&mut api.sessions, id)?;
    let obj = object(body, false)?;
    let dim = |field: &str| -> Result<u16, ApiError> {
        optional_int(&obj, field, 1, MAX_DIMENSION)?
            .map(|n| n as u16)
            .ok_or_else(|| field_error(field, &format!("`{field}` is required.")))
    };
    let (cols, rows) = (dim("cols")?, dim("rows")?);
    match api.sessions.resize(key, cols, rows) {
        Ok(()) => {
            let s = api.sessions.get(key).expect("found");
            let size = crate::journal::Size {
                after: s.last_seq(),
                unix_ms: 0,
                cols,
                rows,
            };
            api.screens.resized(key, s.serial, size);
            wire::write_json(out, &ACCEPTED);
            Ok(reply(200))
        }
        Err(_) => Err(session_not_live(api.sessions.get(key).expect("found"))),
    }
}

pub fn on_harnesses(api: &Api, out: &mut Vec<u8>) -> Reply {
    let path = api.sessions.path_var();
    let harnesses = api
        .sessions
        .harnesses()
        .iter()
        .map(|h| {
            let exe = h.resolve(path);
            wire::HarnessInfo {
                id: &h.id,
                label: &h.label,
                available: exe.is_some(),
                executable: exe.map_or_else(|| h.command.clone(), |p| p.display().to_string()),
            }
        })
        .collect();
    wire::write_json(out, &wire::Harnesses { harnesses });
    reply(200)
}
