//! `POST /api/v1/internal/lifecycle/shutdown`: a client that knows which
//! daemon it is talking to (the identity health reports) asks it to stop,
//! as Coven's own client does where it will not send signals (macOS).
//! The handler only checks and records the request; the reactor stops as
//! on SIGTERM once the answer is queued.

use serde_json::{json, Map, Value};

use super::body::{field_error, object, required_str};
use super::error::ApiError;
use super::meta::CONTRACT;
use super::wire;
use super::Api;
use crate::http::Reply;

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

pub fn on_shutdown(api: &mut Api, body: &[u8], out: &mut Vec<u8>) -> Result<Reply, ApiError> {
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
    let me = match &api.daemon {
        Some(me)
            if named.api_version == CONTRACT
                && named.pid == u64::from(me.pid)
                && named.started_at == me.started_at
                && named.socket == me.socket =>
        {
            me
        }
        me => {
            return Err(ApiError::new(
                409,
                "daemon_identity_mismatch",
                "The request names another daemon; this one keeps running.",
            )
            .with_details(json!({ "apiVersion": CONTRACT, "daemon": me })))
        }
    };
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
