//! A small blocking client of the daemon's socket, for the `coven` commands.
//! One request per connection (`Connection: close`): commands make a few
//! calls at most, and reading to EOF needs no response framing.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub struct Client {
    pub socket: PathBuf,
}

/// A failed call: the daemon's envelope, or why it could not be reached.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon answers on the socket.
    Unreachable(io::Error),
    /// The daemon answered with an error envelope.
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer was not HTTP/JSON as expected.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(e) => write!(f, "no daemon answers ({e})"),
            ClientError::Api { code, message, .. } => write!(f, "{message} ({code})"),
            ClientError::Protocol(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

impl Client {
    pub fn new(home: &std::path::Path) -> Client {
        Client {
            socket: home.join("coven.sock"),
        }
    }

    /// One request; a 2xx answer's JSON body, else the envelope as an error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut s = UnixStream::connect(&self.socket).map_err(ClientError::Unreachable)?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok();
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: coven\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .map_err(ClientError::Unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(ClientError::Unreachable)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ClientError::Protocol("no response head".into()))?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol("no status".into()))?;
        let value: Value =
            serde_json::from_str(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let err = &value["error"];
        Err(ClientError::Api {
            status,
            code: err["code"].as_str().unwrap_or("unknown").to_owned(),
            message: err["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_owned(),
        })
    }

    /// Follows a `text/event-stream` route, calling `on_event` with each
    /// frame's record, until the daemon ends the stream.
    pub fn stream(
        &self,
        path: &str,
        mut on_event: impl FnMut(&Value) -> io::Result<()>,
    ) -> Result<(), ClientError> {
        let mut s = UnixStream::connect(&self.socket).map_err(ClientError::Unreachable)?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: coven\r\n\r\n")
            .map_err(ClientError::Unreachable)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut in_body = false;
        loop {
            let n = s.read(&mut buf).map_err(ClientError::Unreachable)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
            if !in_body {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                if !head.starts_with("HTTP/1.1 200") {
                    // An error envelope: read it whole and report it.
                    let mut rest = pending[end + 4..].to_vec();
                    s.read_to_end(&mut rest).ok();
                    let v: Value = serde_json::from_slice(&rest).unwrap_or(Value::Null);
                    return Err(ClientError::Api {
                        status: head
                            .split(' ')
                            .nth(1)
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0),
                        code: v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
                        message: v["error"]["message"]
                            .as_str()
                            .unwrap_or("request failed")
                            .to_owned(),
                    });
                }
                pending.drain(..end + 4);
                in_body = true;
            }
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = pending.drain(..end + 2).collect();
                let frame = String::from_utf8_lossy(&frame);
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let v: Value = serde_json::from_str(data)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    on_event(&v)
                        .map_err(|e| ClientError::Protocol(format!("writing output: {e}")))?;
                }
            }
        }
    }

    /// A session id from a full id or a unique prefix of one.
    pub fn resolve_id(&self, given: &str) -> Result<String, ClientError> {
        let list = self.call("GET", "/api/v1/sessions", None)?;
        let ids: Vec<&str> = list
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
            .unwrap_or_default();
        if ids.contains(&given) {
            return Ok(given.to_owned());
        }
        let matches: Vec<&str> = ids.into_iter().filter(|id| id.starts_with(given)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(ClientError::Api {
                status: 404,
                code: "session_not_found".into(),
                message: format!("no session matches {given:?}"),
            }),
            many => Err(ClientError::Api {
                status: 400,
                code: "invalid_request".into(),
                message: format!("{given:?} matches {} sessions", many.len()),
            }),
        }
    }
}
