//! The daemon's self-description: `api-version`, `health`, `capabilities`.

use super::wire::{self, Capability};
use super::Api;
use crate::http::Reply;

pub const API_VERSION: &str = "v1";
pub const CONTRACT: &str = "coven.daemon.v1";

/// The capability catalog, in the contract's order.
pub const CATALOG: &[Capability] = &[
    Capability {
        id: "coven.sessions",
        label: "Project-scoped harness sessions",
        adapter: "coven-daemon",
        status: "available",
        policy: "allow",
        actions: &[],
    },
    Capability {
        id: "coven.control.actions",
        label: "Coven control-plane action router",
        adapter: "coven-daemon",
        status: "available",
        policy: "allow",
        actions: &["coven.capabilities.refresh"],
    },
    Capability {
        id: "desktop.automation",
        label: "Desktop automation adapters",
        adapter: "desktop-use",
        status: "planned",
        policy: "requiresApproval",
        actions: &[],
    },
];

const OK: Reply = Reply::new(200);

pub fn on_api_version(body: &mut Vec<u8>) -> Reply {
    wire::write_json(
        body,
        &wire::ApiVersion {
            api_version: API_VERSION,
            supported_api_versions: [API_VERSION],
        },
    );
    OK
}

/// Health's members that never change while the daemon runs, encoded once
/// (at start) as an object still open: `{"ok":true,…,"daemon":{…}`.
/// Health is what clients poll; this halves the work of answering it.
pub fn health_head(daemon: Option<&wire::DaemonInfo>) -> Box<[u8]> {
    let mut head = Vec::new();
    wire::write_json(
        &mut head,
        &wire::HealthHead {
            ok: true,
            api_version: CONTRACT,
            coven_version: env!("CARGO_PKG_VERSION"),
            build: &crate::handover::build(),
            capabilities: wire::HealthCapabilities {
                sessions: true,
                events: true,
                event_cursor: "sequence",
                structured_errors: true,
                event_wait: true,
                event_stream: true,
                session_resize: true,
                session_signals: true,
                persistence: true,
                live_restart: true,
            },
            daemon,
        },
    );
    debug_assert_eq!(head.last(), Some(&b'}'));
    head.pop();
    head.into_boxed_slice()
}

pub fn on_health(api: &Api, body: &mut Vec<u8>) -> Reply {
    let stats = &api.stats;
    let (storage, free_disk_bytes) = api.sessions.storage();
    body.extend_from_slice(&api.health_head);
    body.push(b',');
    wire::write_health_tail(
        body,
        &wire::HealthStats {
            open_connections: stats.open_connections,
            accepted_connections: stats.accepted_connections,
            refused_connections: stats.refused_connections,
            requests: stats.requests,
            live_sessions: api.sessions.live(),
            sessions: api.sessions.count(),
            sessions_in_memory: api.sessions.in_memory(),
            ring_bytes: api.sessions.ring_bytes(),
            journal_bytes: api.sessions.journal_bytes(),
            sessions_on_disk: api.sessions.on_disk(),
            live_restarts: stats.live_restarts,
        },
        &wire::Storage {
            status: storage,
            free_disk_bytes,
            journal_bytes: api.sessions.journal_bytes(),
        },
    );
    OK
}

pub fn on_capabilities(body: &mut Vec<u8>) -> Reply {
    wire::write_json(
        body,
        &wire::Capabilities {
            capabilities: CATALOG,
        },
    );
    OK
}
