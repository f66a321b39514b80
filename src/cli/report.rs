//! How a failed command tells its user: the daemon's message and code, the
//! details that help (the harnesses it knows, why a spawn failed, the paths
//! that do not fit), on stderr; with `--json`, the error envelope itself on
//! stdout. And a closed stdout ends the command as SIGPIPE would, silently.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::client::ClientError;

/// `knownHarnesses` → `known harnesses`.
fn words(key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            s.push(' ');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// The details as one line (`known harnesses: sh, codex; harness: nope`),
/// if there are any worth showing. `field` only names the key that follows.
pub fn details_line(details: &Value) -> Option<String> {
    let obj = details.as_object()?;
    let parts: Vec<String> = obj
        .iter()
        .filter(|(k, _)| *k != "field" || obj.len() == 1)
        .map(|(k, v)| format!("{}: {}", words(k), shown(v)))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Whether the socket's error means nobody listens (rather than a
/// connection that broke).
fn nobody_listens(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// The error as people read it: one or two lines.
pub fn text(err: &ClientError, socket: &Path) -> String {
    match err {
        ClientError::Unreachable(e) if nobody_listens(e) => format!(
            "no daemon answers on {} ({e})\n  start one with: coven daemon start",
            socket.display()
        ),
        ClientError::Unreachable(e) => {
            format!("lost the daemon on {} ({e})", socket.display())
        }
        ClientError::Api {
            code,
            message,
            details,
            ..
        } => match details_line(details) {
            Some(line) => format!("{message} ({code})\n  {line}"),
            None => format!("{message} ({code})"),
        },
        ClientError::Failed {
            message, details, ..
        } => match details_line(details) {
            Some(line) => format!("{message}\n  {line}"),
            None => message.clone(),
        },
        other => other.to_string(),
    }
}

/// The error as `--json` prints it: the daemon's envelope, or one shaped
/// like it for a failure on this side.
pub fn envelope(err: &ClientError, socket: &Path) -> Value {
    let (code, message, details) = match err {
        ClientError::Api {
            code,
            message,
            details,
            ..
        } => (code.as_str(), message.clone(), details.clone()),
        ClientError::Unreachable(e) => (
            "daemon_unreachable",
            if nobody_listens(e) {
                "No daemon answers on the socket.".to_owned()
            } else {
                "The connection to the daemon broke.".to_owned()
            },
            json!({ "socket": socket, "reason": e.to_string(), "start": "coven daemon start" }),
        ),
        ClientError::Failed {
            code,
            message,
            details,
        } => (*code, message.clone(), details.clone()),
        ClientError::Protocol(m) => ("unexpected_answer", m.clone(), Value::Null),
        ClientError::Output(e) => ("output_failed", e.to_string(), Value::Null),
        ClientError::Some(n) => ("some_failed", format!("{n} failed."), Value::Null),
    };
    let mut error = json!({ "code": code, "message": message });
    if !details.is_null() {
        error["details"] = details;
    }
    json!({ "error": error })
}

/// Whether the error is our stdout closing under us.
pub fn closed_pipe(err: &ClientError) -> bool {
    matches!(err, ClientError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Reports a failed command: nothing for a closed pipe (the process ends
/// as SIGPIPE ends it: `yes | head` behaves so, and so does this), else
/// the text on stderr, and with `json` the envelope on stdout.
pub fn report(err: &ClientError, socket: &Path, json: bool) {
    if closed_pipe(err) {
        crate::sys::process::die_of_sigpipe();
    }
    if matches!(err, ClientError::Some(_)) {
        return;
    }
    if json {
        let out = &mut std::io::stdout().lock();
        if writeln!(out, "{}", envelope(err, socket))
            .and_then(|()| out.flush())
            .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            crate::sys::process::die_of_sigpipe();
        }
    }
    eprintln!("coven: {}", text(err, socket));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_as_words() {
        let d = json!({ "field": "harness", "harness": "nope", "knownHarnesses": ["sh", "codex"] });
        assert_eq!(
            details_line(&d).unwrap(),
            "harness: nope; known harnesses: sh, codex"
        );
        assert_eq!(
            details_line(&json!({ "field": "cols" })).unwrap(),
            "field: cols"
        );
        assert_eq!(details_line(&Value::Null), None);
    }
}
