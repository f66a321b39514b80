//! `POST /actions`: the control-plane action router. The action id is
//! checked against the capability catalog before anything else runs.

use serde_json::{json, Map, Value};

use super::meta::CATALOG;
use super::wire::{self, ActionAccepted, ActionEvent, ActionRejected, ErrorBody};
use crate::http::Reply;

const REFRESH: &str = "coven.capabilities.refresh";

/// A rejection, answered in both the rejected-action shape and the envelope.
struct Rejection {
    action: Option<String>,
    message: String,
    details: Value,
}

fn reject(action: Option<&str>, message: &str, details: Value) -> Rejection {
    Rejection {
        action: action.map(str::to_owned),
        message: message.to_owned(),
        details,
    }
}

fn known_actions() -> Vec<&'static str> {
    CATALOG
        .iter()
        .flat_map(|c| c.actions.iter().copied())
        .collect()
}

/// An optional string field: absent or null is `None`.
fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    action: Option<&str>,
) -> Result<Option<&'a str>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(reject(
            action,
            &format!("`{field}` must be a string."),
            json!({ "field": field }),
        )),
    }
}

pub fn on_action(body_in: &[u8], out: &mut Vec<u8>) -> Reply {
    match run(body_in, out) {
        Ok(reply) => reply,
        Err(r) => {
            out.clear();
            wire::write_json(
                out,
                &ActionRejected {
                    ok: false,
                    accepted: false,
                    action: r.action.as_deref(),
                    status: "rejected",
                    reason: &r.message,
                    error: ErrorBody {
                        code: "invalid_request",
                        message: &r.message,
                        details: Some(&r.details),
                    },
                },
            );
            Reply::new(400)
        }
    }
}

fn run(body_in: &[u8], out: &mut Vec<u8>) -> Result<Reply, Rejection> {
    let value: Value = serde_json::from_slice(body_in).map_err(|e| {
        reject(
            None,
            "Request body is not valid JSON.",
            json!({ "reason": e.to_string() }),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(reject(
            None,
            "Request body must be a JSON object.",
            json!({ "field": "body" }),
        ));
    };
    let action = match obj.get("action") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        Some(Value::String(s)) => {
            return Err(reject(
                Some(s),
                "`action` must not be blank.",
                json!({ "field": "action" }),
            ))
        }
        Some(_) => {
            return Err(reject(
                None,
                "`action` must be a string.",
                json!({ "field": "action" }),
            ))
        }
        None => {
            return Err(reject(
                None,
                "`action` is required.",
                json!({ "field": "action" }),
            ))
        }
    };
    let known = known_actions();
    if !known.contains(&action) {
        return Err(reject(
            Some(action),
            "Unknown action.",
            json!({ "action": action, "knownActions": known }),
        ));
    }
    let origin = optional_str(&obj, "origin", Some(action))?;
    let intent_id = optional_str(&obj, "intentId", Some(action))?;
    match obj.get("args") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(reject(
                Some(action),
                "`args` must be an object.",
                json!({ "field": "args" }),
            ))
        }
    }
    debug_assert_eq!(action, REFRESH, "the catalog has one action");
    wire::write_json(
        out,
        &ActionAccepted {
            ok: true,
            accepted: true,
            action,
            status: "completed",
            event: ActionEvent {
                kind: "capabilities.refreshed",
                action,
                origin,
                intent_id,
                payload: json!({ "capabilities": CATALOG.len() }),
            },
        },
    );
    Ok(Reply::new(200))
}
