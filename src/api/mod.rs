//! The API: routing, handlers, the error envelope and every JSON shape of
//! the `coven.daemon.v1` contract. Handlers are plain functions over the
//! daemon's state that write a response body; they never touch sockets or
//! file descriptors.

pub mod actions;
pub mod body;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod meta;
pub mod query;
pub mod router;
pub mod sessions;
pub mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::http::{self, Reply, Request, Service};
use crate::session::Sessions;
use error::ApiError;

/// Counters reported under `stats` in health.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub open_connections: usize,
    pub accepted_connections: u64,
    /// Closed at accept: over the connection limit, or another user's peer.
    pub refused_connections: u64,
    pub requests: u64,
}

/// The daemon state handlers see.
pub struct Api {
    /// `None` only when the daemon's metadata is unknown (unit tests).
    pub daemon: Option<wire::DaemonInfo>,
    pub stats: Stats,
    pub sessions: Sessions,
    /// A client asked the daemon to stop (the lifecycle route); the reactor
    /// acts on it after the turn, as on SIGTERM.
    pub stop_requested: bool,
}

impl Api {
    /// An API with default limits, the built-in harnesses and no daemon
    /// metadata: for benches, fuzzing and unit tests.
    pub fn standalone() -> Api {
        let limits = crate::config::Limits::default();
        Api::new(
            None,
            Sessions::new(
                limits.sessions(),
                crate::session::harness::registry(&[]),
                std::ffi::OsString::new(),
            ),
        )
    }

    pub fn new(daemon: Option<wire::DaemonInfo>, sessions: Sessions) -> Api {
        Api {
            daemon,
            stats: Stats::default(),
            sessions,
            stop_requested: false,
        }
    }
}

impl Service for Api {
    fn call(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply {
        self.stats.requests += 1;
        // A bug in a handler must cost one request, not the daemon.
        let result = catch_unwind(AssertUnwindSafe(|| router::dispatch(self, req, body)));
        match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(err)) => {
                body.clear();
                err.write(body)
            }
            Err(_) => {
                log::error!(
                    "handler panicked on {:?}",
                    String::from_utf8_lossy(req.path)
                );
                body.clear();
                ApiError::internal().write(body)
            }
        }
    }

    fn framing_error(&mut self, err: http::Error, body: &mut Vec<u8>) -> Reply {
        self.stats.requests += 1;
        ApiError::from(err).write(body)
    }

    fn resume(&mut self, hold: &http::Hold, expired: bool, body: &mut Vec<u8>) -> Reply {
        events::resume(self, hold, expired, body)
    }

    fn stream(&mut self, hold: &mut http::Hold, out: &mut Vec<u8>, budget: usize) -> http::Fill {
        events::stream(self, hold, out, budget)
    }
}

/// The whole canned answer (head and body) for a client turned away at the
/// connection limit.
pub fn busy_response(max_connections: usize) -> Vec<u8> {
    use crate::http::encode;
    let mut body = Vec::new();
    let reply = ApiError::new(503, "runtime_unavailable", "Connection limit reached.")
        .with_details(serde_json::json!({ "maxConnections": max_connections }))
        .write(&mut body);
    let mut out = Vec::new();
    encode::head(
        &mut out,
        reply.status,
        encode::JSON,
        body.len(),
        encode::Persist::Close,
        None,
    );
    out.extend_from_slice(&body);
    out
}
