//! `POST /api/v1/internal/lifecycle/shutdown` and `.../restart`: a client
//! that knows which daemon it is talking to (the identity health reports)
//! asks it to stop, as Coven's own client does where it will not send
//! signals (macOS), or to replace its program keeping every session. The
//! handlers check and record the request (a restart also asks the new
//! program whether it can take over); the reactor acts once the answer is
//! queued. And the test-only route that makes the daemon panic.

use serde_json::{json, Map, Value};

use super::body::{field_error, object, required_str};
use super::error::ApiError;
use super::meta::CONTRACT;
use super::wire;
use super::Api;
use std::time::{Duration, Instant};

use crate::http::{Hold, HoldKind, HoldState, Reply};
use crate::session::ANSWER_TOPIC;

/// The identity a shutdown request names.
struct Named<'a> {
    api_version: &'a str,
    pid: u64,
    started_at: &'a str,
    socket: &'a str,
}

fn daemon_field<'a>(daemon: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    required_str(daemon, field)
        .map_err(|e| e.with_details(json!({ "field": format!("daemon.{field}") })))
}

/// The daemon a lifecycle request names, if it is this one.
fn named_daemon<'a>(api: &'a Api, body: &[u8]) -> Result<&'a wire::DaemonInfo, ApiError> {
    let obj = object(body, false)?;
    let api_version = required_str(&obj, "apiVersion")?;
    let daemon = match obj.get("daemon") {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => return Err(field_error("daemon", "`daemon` is required.")),
        Some(_) => return Err(field_error("daemon", "`daemon` must be an object.")),
    };
    let pid = match daemon.get("pid") {
        None | Some(Value::Null) => {
            return Err(field_error("daemon.pid", "`daemon.pid` is required."))
        }
        Some(v) => v.as_u64().ok_or_else(|| {
            field_error("daemon.pid", "`daemon.pid` must be a non-negative integer.")
        })?,
    };
    let named = Named {
        api_version,
        pid,
        started_at: daemon_field(daemon, "startedAt")?,
        socket: daemon_field(daemon, "socket")?,
    };
    match &api.daemon {
        Some(me)
            if named.api_version == CONTRACT
                && named.pid == u64::from(me.pid)
                && named.started_at == me.started_at
                && named.socket == me.socket =>
        {
            Ok(me)
        }
        me => Err(ApiError::new(
            409,
            "daemon_identity_mismatch",
            "The request names another daemon; this one keeps running.",
        )
        .with_details(json!({ "apiVersion": CONTRACT, "daemon": me }))),
    }
}

pub fn on_shutdown(api: &mut Api, body: &[u8], out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let me = named_daemon(api, body)?;
    wire::write_json(
        out,
        &wire::ShutdownAccepted {
            ok: true,
            api_version: CONTRACT,
            capabilities: wire::StructuredErrors {
                structured_errors: true,
            },
            daemon: me,
        },
    );
    log::info!("shutdown requested over the API");
    api.stop_requested = true;
    Ok(Reply {
        until_exit: true,
        ..Reply::new(202)
    })
}

/// A live restart: `202` once the binary at the daemon's path has said
/// that it can take over; `409 restart_refused` (nothing changes) if not.
pub fn on_restart(api: &mut Api, body: &[u8], _out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    named_daemon(api, body)?;
    let ticket = api.check_restart()?;
    // Held until the check (which runs the new binary) has its answer.
    Ok(Reply {
        hold: Some(Hold {
            kind: HoldKind::LongPoll,
            topic: ANSWER_TOPIC,
            tag: 0,
            cursor: 0,
            state: HoldState::Task(ticket),
            until: Some(Instant::now() + CHECK_WAIT),
        }),
        ..Reply::new(202)
    })
}

/// How long a restart request waits for its check: the check's own limit,
/// and the writer's queue before it.
const CHECK_WAIT: Duration = Duration::from_secs(30);

/// A restart request held for its check: 202 and the restart begins, or
/// 409 `restart_refused` and nothing changes.
pub fn resume_restart(
    api: &mut Api,
    hold: &Hold,
    ticket: u64,
    expired: bool,
    out: &mut Vec<u8>,
) -> Reply {
    out.clear();
    let checked = match api.restart_checked(ticket) {
        Some(checked) => checked,
        None if !expired => {
            return Reply {
                hold: Some(*hold),
                ..Reply::new(202)
            }
        }
        None => {
            api.sessions.forget_answer(ticket);
            Err(super::restart_refused(
                "the new program was not checked in time".into(),
                None,
            ))
        }
    };
    match (checked, api.daemon.clone()) {
        (Ok(build), Some(me)) => {
            wire::write_json(
                out,
                &wire::RestartAccepted {
                    ok: true,
                    api_version: CONTRACT,
                    daemon: &me,
                    build: &build,
                },
            );
            log::info!("restart requested over the API (into {build})");
            api.restart_requested = true;
            Reply::new(202)
        }
        (Ok(_), None) => ApiError::internal().write(out),
        (Err(e), _) => e.write(out),
    }
}

/// `POST /api/v1/internal/test/panic` `{"in": "handler" | "loop"}`: a panic
/// where a test asks, to show what the daemon does about it. Answers
/// `404 not_found` unless `COVEN_TEST_HOOKS` was set when it started.
pub fn on_test_panic(api: &mut Api, body: &[u8], out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    if !api.test_hooks {
        return Err(ApiError::not_found());
    }
    let obj = object(body, false)?;
    match required_str(&obj, "in")? {
        "handler" => panic!("a test asked for a panic in a handler"),
        "loop" => {
            api.panic_in_loop = true;
            wire::write_json(out, &json!({ "ok": true }));
            Ok(Reply::new(202))
        }
        _ => Err(field_error("in", "`in` must be \"handler\" or \"loop\".")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_hooks_are_off_unless_asked_for() {
        let mut api = super::Api::standalone();
        let mut out = Vec::new();
        let e = super::on_test_panic(&mut api, br#"{"in":"loop"}"#, &mut out).unwrap_err();
        assert_eq!((e.status, e.code), (404, "not_found"));
        assert!(!api.panic_in_loop);
    }
}
