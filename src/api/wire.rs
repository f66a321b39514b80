//! Every JSON shape of the API. Field names follow CONTRACT.md exactly
//! (camelCase, except session and event records, which are snake_case).
//! The shapes kept on disk are their owners': a session's `meta.json` and
//! event payloads (`session::record`), `daemon.json` (`home`), the live
//! restart's document (`handover`), a screen checkpoint's head
//! (`api::screen`).

use serde::Serialize;
use serde_json::Value;

pub use crate::home::DaemonInfo;
pub use crate::session::record::{
    data_payload, exit_payload, exit_status_of, kill_payload, payload_data, truncated_of,
    truncated_payload, SessionMeta,
};

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

/// The answer to an accepted shutdown request.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownAccepted<'a> {
    pub ok: bool,
    pub api_version: &'static str,
    pub capabilities: StructuredErrors,
    pub daemon: &'a DaemonInfo,
}

/// The answer to an accepted restart request.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RestartAccepted<'a> {
    pub ok: bool,
    pub api_version: &'static str,
    pub daemon: &'a DaemonInfo,
    /// The program the daemon is about to become.
    pub build: &'a str,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StructuredErrors {
    pub structured_errors: bool,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HealthHead<'a> {
    pub ok: bool,
    pub api_version: &'static str,
    pub coven_version: &'static str,
    /// The build's tag (`handover::build`): which program serves, after a
    /// live restart into another build.
    pub build: &'a str,
    pub capabilities: HealthCapabilities,
    pub daemon: Option<&'a DaemonInfo>,
}

/// Health's `storage`: the disk under the journals.
#[derive(Debug)]
pub struct Storage {
    /// `ok`, `warning` (free space under the floor), `degraded` (refused
    /// writes being made good) or `critical` (writes fail).
    pub status: &'static str,
    pub free_disk_bytes: Option<u64>,
    pub journal_bytes: u64,
}

/// Writes the members of health that change, `"stats":{…},"storage":{…}}`,
/// which close the object `HealthHead` opened (`meta::on_health` joins the
/// two). Written by hand, not through serde: they are numbers and one
/// fixed word, and serde's escaping of every key was most of what a health
/// request cost the daemon's own code.
pub fn write_health_tail(out: &mut Vec<u8>, stats: &HealthStats, storage: &Storage) {
    let mut num = itoa::Buffer::new();
    let mut member = |out: &mut Vec<u8>, key: &[u8], n: u64| {
        out.extend_from_slice(key);
        out.extend_from_slice(num.format(n).as_bytes());
    };
    member(
        out,
        b"\"stats\":{\"openConnections\":",
        stats.open_connections as u64,
    );
    member(
        out,
        b",\"acceptedConnections\":",
        stats.accepted_connections,
    );
    member(out, b",\"refusedConnections\":", stats.refused_connections);
    member(out, b",\"requests\":", stats.requests);
    member(out, b",\"liveSessions\":", stats.live_sessions as u64);
    member(out, b",\"sessions\":", stats.sessions as u64);
    member(
        out,
        b",\"sessionsInMemory\":",
        stats.sessions_in_memory as u64,
    );
    member(out, b",\"ringBytes\":", stats.ring_bytes as u64);
    member(out, b",\"journalBytes\":", stats.journal_bytes);
    member(out, b",\"sessionsOnDisk\":", stats.sessions_on_disk as u64);
    member(out, b",\"liveRestarts\":", stats.live_restarts);
    // `status` is one of four plain words: nothing to escape.
    debug_assert!(storage.status.bytes().all(|b| b.is_ascii_lowercase()));
    out.extend_from_slice(b"},\"storage\":{\"status\":\"");
    out.extend_from_slice(storage.status.as_bytes());
    match storage.free_disk_bytes {
        Some(n) => member(out, b"\",\"freeDiskBytes\":", n),
        None => out.extend_from_slice(b"\",\"freeDiskBytes\":null"),
    }
    member(out, b",\"journalBytes\":", storage.journal_bytes);
    out.extend_from_slice(b"}}");
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HealthCapabilities {
    pub sessions: bool,
    pub events: bool,
    pub event_cursor: &'static str,
    pub structured_errors: bool,
    pub event_wait: bool,
    pub event_stream: bool,
    pub session_resize: bool,
    pub session_signals: bool,
    pub persistence: bool,
    /// Sessions outlive restarts of the daemon (live restart, crash).
    pub live_restart: bool,
}

#[derive(Debug)]
pub struct HealthStats {
    pub open_connections: usize,
    pub accepted_connections: u64,
    pub refused_connections: u64,
    pub requests: u64,
    pub live_sessions: usize,
    pub sessions: usize,
    /// Sessions held in memory: the live ones, and finished ones in use.
    pub sessions_in_memory: usize,
    pub ring_bytes: usize,
    pub journal_bytes: u64,
    pub sessions_on_disk: usize,
    /// Live restarts of the serving process (its program replaced).
    pub live_restarts: u64,
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

/// A session record, snake_case as the contract has it.
#[derive(Serialize, Debug)]
pub struct SessionRecord<'a> {
    pub id: &'a str,
    pub project_root: &'a str,
    pub harness: &'a str,
    pub title: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub archived_at: Option<&'a str>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub cwd: &'a str,
    pub pid: Option<i32>,
}

/// One page of the paged session list.
#[derive(Serialize, Debug)]
pub struct SessionPage<'a> {
    pub sessions: Vec<SessionRecord<'a>>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct HarnessInfo<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub executable: String,
    pub available: bool,
}

#[derive(Serialize, Debug)]
pub struct Harnesses<'a> {
    pub harnesses: Vec<HarnessInfo<'a>>,
}

#[derive(Serialize, Debug)]
pub struct Accepted {
    pub ok: bool,
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_tail_is_the_json_it_stands_for() {
        let stats = HealthStats {
            open_connections: 1,
            accepted_connections: 2,
            refused_connections: 3,
            requests: u64::MAX,
            live_sessions: 5,
            sessions: 6,
            sessions_in_memory: 7,
            ring_bytes: 8,
            journal_bytes: 9,
            sessions_on_disk: 0,
            live_restarts: 12,
        };
        for (free, status) in [(Some(11), "warning"), (None, "ok")] {
            let mut out = b"{".to_vec();
            let storage = Storage {
                status,
                free_disk_bytes: free,
                journal_bytes: 10,
            };
            write_health_tail(&mut out, &stats, &storage);
            let got: Value = serde_json::from_slice(&out).unwrap();
            let want = serde_json::json!({
                "stats": {
                    "openConnections": 1, "acceptedConnections": 2,
                    "refusedConnections": 3, "requests": u64::MAX,
                    "liveSessions": 5, "sessions": 6, "sessionsInMemory": 7,
                    "ringBytes": 8, "journalBytes": 9, "sessionsOnDisk": 0,
                    "liveRestarts": 12,
                },
                "storage": {"status": status, "freeDiskBytes": free, "journalBytes": 10},
            });
            assert_eq!(got, want);
        }
    }
}
