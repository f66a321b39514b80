//! Every JSON shape on the wire, and the only serde derives in the crate.
//! Field names follow CONTRACT.md exactly (camelCase, except session and
//! event records, which are snake_case).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Serializes `value` onto `body`. Our own types cannot fail to serialize;
/// if one ever did, the body becomes a bare internal-error envelope.
pub fn write_json<T: Serialize + ?Sized>(body: &mut Vec<u8>, value: &T) {
    let start = body.len();
    if serde_json::to_writer(&mut *body, value).is_err() {
        body.truncate(start);
        body.extend_from_slice(
            br#"{"error":{"code":"internal_error","message":"Response could not be encoded."}}"#,
        );
    }
}

#[derive(Serialize, Debug)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Serialize, Debug)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersion {
    pub api_version: &'static str,
    pub supported_api_versions: [&'static str; 1],
}

/// `daemon` in health, and the content of `<COVEN_HOME>/daemon.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: String,
    pub socket: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Health<'a> {
    pub ok: bool,
    pub api_version: &'static str,
    pub coven_version: &'static str,
    pub capabilities: HealthCapabilities,
    pub daemon: Option<&'a DaemonInfo>,
    pub stats: HealthStats,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HealthCapabilities {
    pub sessions: bool,
    pub events: bool,
    pub event_cursor: &'static str,
    pub structured_errors: bool,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HealthStats {
    pub open_connections: usize,
    pub accepted_connections: u64,
    pub refused_connections: u64,
    pub requests: u64,
}

#[derive(Serialize, Debug)]
pub struct Capabilities<'a> {
    pub capabilities: &'a [Capability],
}

#[derive(Serialize, Debug)]
pub struct Capability {
    pub id: &'static str,
    pub label: &'static str,
    pub adapter: &'static str,
    pub status: &'static str,
    pub policy: &'static str,
    pub actions: &'static [&'static str],
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ActionEvent<'a> {
    pub kind: &'static str,
    pub action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<&'a str>,
    pub payload: Value,
}

#[derive(Serialize, Debug)]
pub struct ActionAccepted<'a> {
    pub ok: bool,
    pub accepted: bool,
    pub action: &'a str,
    pub status: &'static str,
    pub event: ActionEvent<'a>,
}

#[derive(Serialize, Debug)]
pub struct ActionRejected<'a> {
    pub ok: bool,
    pub accepted: bool,
    pub action: Option<&'a str>,
    pub status: &'static str,
    pub reason: &'a str,
    pub error: ErrorBody<'a>,
}
