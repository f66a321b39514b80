//! The API: routing, handlers, the error envelope and every JSON shape of
//! the `coven.daemon.v1` contract. Handlers are plain functions over the
//! daemon's state that write a response body; they never touch sockets or
//! file descriptors.

pub mod actions;
pub mod body;
pub mod cast;
pub mod error;
pub mod events;
pub mod launch;
pub mod lifecycle;
pub mod meta;
pub mod query;
pub mod router;
pub mod screen;
pub mod sessions;
pub mod wait;
pub mod web;
pub mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::http::{self, Hold, HoldKind, HoldState, Reply, Request, Service};
use crate::session::{Sessions, ANSWER_TOPIC, DURABLE_TOPIC};
use error::ApiError;

/// Counters reported under `stats` in health.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub open_connections: usize,
    pub accepted_connections: u64,
    /// Closed at accept: over the connection limit, or another user's peer.
    pub refused_connections: u64,
    pub requests: u64,
    /// Live restarts of the serving process since it started (carried
    /// through them; a crash of the server starts a new count).
    pub live_restarts: u64,
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
    /// A restart was asked (and the new program checked): the reactor
    /// begins it after the turn.
    pub restart_requested: bool,
    /// SIGUSR2 asked for a restart: the ticket of its check.
    pub restart_signalled: Option<u64>,
    /// The program a restart execs, and the supervisor's protocol (None:
    /// this daemon cannot restart itself, as in unit tests).
    pub program: Option<Program>,
    /// `COVEN_TEST_HOOKS` was set at start: the test-only routes answer.
    pub test_hooks: bool,
    /// A test asked for a panic in the loop, outside any handler.
    pub panic_in_loop: bool,
    /// Health's unchanging members, encoded once (`meta::health_head`).
    health_head: Box<[u8]>,
    /// Parked `wait` requests' state, by their hold's `limit`.
    pub waits: slab::Slab<wait::Wait>,
    /// Output as text for the sessions match waits watch, by session key.
    pub shown: std::collections::HashMap<usize, wait::Shown>,
    /// Terminal grids of the sessions whose screen was asked for lately.
    pub screens: screen::Screens,
    /// Recordings being sent, by their hold's `limit`.
    pub casts: slab::Slab<cast::Cast>,
    /// Answers waiting for the writer, by the `tag` of their connection's
    /// hold.
    acks: slab::Slab<PendingAck>,
    /// Launches on their way (`launch.rs`), by their hold's `tag`.
    pub launches: slab::Slab<launch::Pending>,
    /// The loopback web view (`web.rs`).
    pub web: web::Web,
    /// Screen streams' watch lists (`screen::stream`), by their hold's slot.
    pub watches: slab::Slab<screen::Watch>,
}

/// What a live restart becomes.
#[derive(Clone, Debug)]
pub struct Program {
    /// The path the daemon was started from: an upgrade installs the new
    /// build there.
    pub exe: std::path::PathBuf,
    /// The protocol the supervisor speaks, which the new build must too.
    pub protocol: u32,
}

/// An answer held until what it acknowledges is durable.
struct PendingAck {
    status: u16,
    body: Vec<u8>,
    /// The writer's tickets the request's work took: `from + 1 ..= to`.
    from: u64,
    to: u64,
}

/// How long an acknowledgement waits for the disk before the client is
/// told that it is not yet durable.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

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
            health_head: meta::health_head(daemon.as_ref()),
            waits: slab::Slab::new(),
            shown: std::collections::HashMap::new(),
            screens: screen::Screens::default(),
            casts: slab::Slab::new(),
            daemon,
            stats: Stats::default(),
            sessions,
            stop_requested: false,
            restart_requested: false,
            restart_signalled: None,
            program: None,
            test_hooks: false,
            panic_in_loop: false,
            acks: slab::Slab::new(),
            launches: slab::Slab::new(),
            web: web::Web::default(),
            watches: slab::Slab::new(),
        }
    }
}

impl Api {
    /// Answers `status` with the body in `out` once everything the request
    /// did since the writer's ticket `from` is durable: at once if it is
    /// already, else the connection waits (`resume` answers it).
    pub fn durable(&mut self, from: u64, status: u16, out: &mut Vec<u8>) -> Reply {
        let to = self.sessions.submitted();
        if self.sessions.durable_through() >= to {
            if self.sessions.failed_in(from, to) {
                out.clear();
                return not_durable().write(out);
            }
            // The writer finished before its wake-up was seen: what it made
            // durable is shown now, before the client can read on.
            self.sessions.show_durable();
            return Reply::new(status);
        }
        let tag = self.acks.insert(PendingAck {
            status,
            body: std::mem::take(out),
            from,
            to,
        });
        Reply {
            hold: Some(Hold {
                kind: HoldKind::LongPoll,
                topic: DURABLE_TOPIC,
                tag: 0,
                cursor: to,
                state: HoldState::Slot(tag),
                until: Some(std::time::Instant::now() + ACK_WAIT),
            }),
            ..Reply::new(status)
        }
    }

    fn resume_ack(&mut self, hold: &Hold, expired: bool, body: &mut Vec<u8>) -> Reply {
        let ready = self.sessions.durable_through() >= hold.cursor;
        body.clear();
        if !ready && !expired {
            return Reply {
                hold: Some(*hold),
                ..Reply::new(200)
            };
        }
        let Some(ack) = self.acks.try_remove(slot_of(hold)) else {
            return ApiError::internal().write(body);
        };
        if !ready || self.sessions.failed_in(ack.from, ack.to) {
            return not_durable().write(body);
        }
        self.sessions.show_durable();
        *body = ack.body;
        Reply::new(ack.status)
    }
}

impl Api {
    /// Whether a live restart can go ahead: the binary at the daemon's
    /// path is asked what it can take over (it is run, and its line read:
    /// a writer task, off the loop). Returns the task's ticket, for
    /// `restart_checked`.
    pub fn check_restart(&mut self) -> Result<u64, ApiError> {
        let Some(program) = self.program.clone() else {
            return Err(restart_refused(
                "this daemon cannot restart itself".into(),
                None,
            ));
        };
        Ok(self.sessions.submit_task(move || {
            Box::new(
                crate::handover::check(&program.exe, program.protocol)
                    .map_err(|reason| (reason, program.exe)),
            )
        }))
    }

    /// The answer of a restart's check (`check_restart`), once it came:
    /// `Ok` names the new build.
    pub fn restart_checked(&mut self, ticket: u64) -> Option<Result<String, ApiError>> {
        let answer = self.sessions.take_answer(ticket)?;
        let checked = answer
            .downcast::<Result<String, (String, std::path::PathBuf)>>()
            .map_err(|_| ApiError::internal())
            .ok()?;
        Some((*checked).map_err(|(reason, exe)| restart_refused(reason, Some(&exe))))
    }
}

/// A restart that will not happen, and why.
pub(crate) fn restart_refused(reason: String, binary: Option<&std::path::Path>) -> ApiError {
    ApiError::new(
        409,
        "restart_refused",
        "The restart was refused; the daemon keeps running as it was.",
    )
    .with_details(serde_json::json!({
        "reason": reason,
        "binary": binary.map(|b| b.display().to_string()),
    }))
}

/// The slot of the service's own state a hold names (`HoldState::Slot`);
/// one no slab holds if it names none.
pub(crate) fn slot_of(hold: &Hold) -> usize {
    match hold.state {
        HoldState::Slot(slot) => slot,
        _ => usize::MAX,
    }
}

/// Done, but the disk has not confirmed that it will survive a power cut.
fn not_durable() -> ApiError {
    ApiError::new(
        503,
        "runtime_unavailable",
        "The request was carried out, but the disk has not made it durable (see health's storage).",
    )
}

/// Runs a handler's work; a panic in it is logged (`what` says where,
/// formatted only then) and becomes `or`: a bug costs the request it
/// served, never the daemon.
fn guarded<T>(what: impl std::fmt::Display, or: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log::error!("a handler panicked ({what})");
            or
        }
    }
}

/// The answer to a request held when the daemon restarts, when it cannot
/// be answered truly: ask again.
fn restarting() -> ApiError {
    ApiError::new(
        503,
        "runtime_unavailable",
        "The daemon is restarting; its sessions keep running: ask again.",
    )
    .with_details(serde_json::json!({ "restarting": true }))
}

impl Api {
    fn dispatch(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply {
        match router::dispatch(self, req, body) {
            Ok(reply) => reply,
            Err(err) => {
                body.clear();
                err.write(body)
            }
        }
    }

    fn resume_hold(&mut self, hold: &Hold, expired: bool, body: &mut Vec<u8>) -> Reply {
        if hold.topic == DURABLE_TOPIC {
            return self.resume_ack(hold, expired, body);
        }
        if hold.topic == ANSWER_TOPIC {
            if let HoldState::Task(ticket) = hold.state {
                return lifecycle::resume_restart(self, hold, ticket, expired, body);
            }
            return launch::resume(self, hold, expired, body);
        }
        if hold.kind == HoldKind::Wait {
            return wait::check(self, *hold, expired, body);
        }
        if hold.kind == HoldKind::Step {
            return screen::resume(self, hold, body);
        }
        events::resume(self, hold, expired, body)
    }

    fn release_hold(&mut self, hold: &Hold) {
        if hold.topic == DURABLE_TOPIC {
            self.acks.try_remove(slot_of(hold));
        } else if hold.topic == ANSWER_TOPIC {
            match hold.state {
                HoldState::Task(ticket) => self.sessions.forget_answer(ticket),
                _ => launch::release(self, hold),
            }
        } else if hold.kind == HoldKind::Wait {
            wait::release(self, hold);
        } else if hold.kind == HoldKind::Cast {
            cast::release(self, hold);
        } else if hold.topic == crate::session::SCREENS_TOPIC {
            self.watches.try_remove(slot_of(hold));
        }
    }

    /// A held request when the daemon restarts: an acknowledgement waiting
    /// for the disk, and a launch on its way, keep waiting (the restart
    /// waits for them too); a
    /// long poll answers with what there is (its client asks again from
    /// its cursor); a wait or a screen being built cannot be answered
    /// truly, and says so (503, `details.restarting`).
    fn interrupt_hold(&mut self, hold: &Hold, body: &mut Vec<u8>) -> Reply {
        if hold.topic == DURABLE_TOPIC || hold.topic == ANSWER_TOPIC {
            body.clear();
            return Reply {
                hold: Some(*hold),
                ..Reply::new(200)
            };
        }
        match hold.kind {
            HoldKind::Wait | HoldKind::Step => {
                self.release_hold(hold);
                body.clear();
                restarting().write(body)
            }
            _ => self.resume_hold(hold, true, body),
        }
    }
}

/// Every way into the handlers is guarded (`guarded`): a panic there costs
/// one request. A panic anywhere else (the reactor, sessions) becomes a
/// live restart (`daemon::serve_server`), so the sessions survive it.
impl Service for Api {
    fn call(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply {
        self.stats.requests += 1;
        let path = req.path.escape_ascii();
        let reply = guarded(path, None, || {
            if req.web {
                if let Some(answered) = web::gate(self, req, body) {
                    return Some(answered);
                }
            }
            Some(self.dispatch(req, body))
        });
        reply.unwrap_or_else(|| {
            body.clear();
            ApiError::internal().write(body)
        })
    }

    fn framing_error(&mut self, err: http::Error, body: &mut Vec<u8>) -> Reply {
        self.stats.requests += 1;
        ApiError::from(err).write(body)
    }

    fn resume(&mut self, hold: &http::Hold, expired: bool, body: &mut Vec<u8>) -> Reply {
        let reply = guarded("resume", None, || {
            Some(self.resume_hold(hold, expired, body))
        });
        reply.unwrap_or_else(|| {
            self.release(hold);
            body.clear();
            ApiError::internal().write(body)
        })
    }

    fn interrupt(&mut self, hold: &Hold, body: &mut Vec<u8>) -> Reply {
        let reply = guarded("interrupt", None, || Some(self.interrupt_hold(hold, body)));
        reply.unwrap_or_else(|| {
            self.release(hold);
            body.clear();
            ApiError::internal().write(body)
        })
    }

    fn release(&mut self, hold: &Hold) {
        guarded("release", (), || self.release_hold(hold));
    }

    fn take_head_extra(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.web.head_extra);
    }

    fn stream(&mut self, hold: &mut http::Hold, out: &mut Vec<u8>, budget: usize) -> http::Fill {
        let before = out.len();
        let fill = guarded("stream", None, || {
            Some(if hold.kind == HoldKind::Cast {
                cast::stream(self, hold, out, budget)
            } else if hold.topic == crate::session::SCREENS_TOPIC {
                screen::stream(self, hold, out, budget)
            } else {
                events::stream(self, hold, out, budget)
            })
        });
        fill.unwrap_or_else(|| {
            // Frames end where they end: a torn one is taken back, and the
            // stream ends (its client resumes from its last event id).
            out.truncate(before);
            let held = *hold;
            self.release(&held);
            http::Fill::End
        })
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
        None,
        b"",
    );
    out.extend_from_slice(&body);
    out
}
