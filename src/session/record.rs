//! A session as it is kept on disk: its `meta.json` (`SessionMeta`), and
//! the payloads of the events the daemon records (each stored as the JSON
//! string literal a response copies: `payload_json`). The journal keeps
//! these bytes as they are; `api` shows them.

use serde::{Deserialize, Serialize};

/// Encodes `payload` as the value of an event's `payload_json`: the payload
/// object serialized, then that text as a JSON string literal (quotes
/// included), ready to copy into a response.
fn payload_literal<T: Serialize>(payload: &T) -> Box<[u8]> {
    let inner = serde_json::to_string(payload).unwrap_or_else(|_| "{}".to_owned());
    serde_json::to_vec(&inner)
        .unwrap_or_else(|_| b"\"{}\"".to_vec())
        .into_boxed_slice()
}

/// `{ data }`, for `output` and `input` events.
pub fn data_payload(data: &str) -> Box<[u8]> {
    #[derive(Serialize)]
    struct Data<'a> {
        data: &'a str,
    }
    payload_literal(&Data { data })
}

/// The `data` of an `output` or `input` event's stored payload (the
/// `payload_json` string literal that `data_payload` makes).
pub fn payload_data(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        data: std::borrow::Cow<'a, str>,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let d: Data<'_> = serde_json::from_str(&json).ok()?;
    Some(d.data.into_owned())
}

/// The status and exit code an `exit` event's payload records.
pub fn exit_status_of(payload: &[u8]) -> Option<(String, Option<i32>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Exit {
        status: String,
        exit_code: Option<i32>,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let e: Exit = serde_json::from_str(&json).ok()?;
    Some((e.status, e.exit_code))
}

/// `{ status: "killed" }`, for `kill` events.
pub fn kill_payload() -> Box<[u8]> {
    payload_literal(&serde_json::json!({ "status": "killed" }))
}

/// `{ droppedEvents, droppedBytes }`, for `output_truncated` events.
pub fn truncated_payload(events: u64, bytes: u64) -> Box<[u8]> {
    payload_literal(&serde_json::json!({ "droppedEvents": events, "droppedBytes": bytes }))
}

/// What an `output_truncated` payload counts: events and bytes.
pub fn truncated_of(payload: &[u8]) -> Option<(u64, u64)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Gap {
        dropped_events: u64,
        dropped_bytes: u64,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let g: Gap = serde_json::from_str(&json).ok()?;
    Some((g.dropped_events, g.dropped_bytes))
}

/// `{ status, exitCode, signal?, error? }`, for `exit` events.
pub fn exit_payload(
    status: &str,
    exit: Option<crate::sys::process::ExitStatus>,
    error: Option<&str>,
) -> Box<[u8]> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Exit<'a> {
        status: &'a str,
        exit_code: Option<i32>,
        /// The name of the signal that ended it, when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<&'a str>,
        /// Its number, named or not.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal_number: Option<i32>,
        /// The raw `waitpid` status.
        #[serde(skip_serializing_if = "Option::is_none")]
        wait_status: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    let signal_number = exit.and_then(|e| e.signal());
    payload_literal(&Exit {
        status,
        exit_code: exit.and_then(|e| e.code()),
        signal: signal_number.and_then(crate::sys::process::signal_name),
        signal_number,
        wait_status: exit.map(|e| e.raw),
        error,
    })
}

/// `meta.json` of a session on disk.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    pub id: String,
    pub project_root: String,
    pub cwd: String,
    pub harness: String,
    pub title: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
    /// When it was archived; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Retention removed the oldest part of the history.
    #[serde(default)]
    pub history_cut: bool,
    /// Seq of the session's newest event when it finished (0 if unknown).
    #[serde(default)]
    pub last_seq: u64,
}

pub fn encode_meta(meta: &SessionMeta) -> Vec<u8> {
    serde_json::to_vec_pretty(meta).unwrap_or_default()
}

pub fn decode_meta(bytes: &[u8]) -> Result<SessionMeta, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}
