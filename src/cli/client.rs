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

/// A failed command: the daemon's envelope, or why it could not be asked.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon could not be reached, or the connection broke.
    Unreachable(io::Error),
    /// The daemon answered with an error envelope.
    Api {
        status: u16,
        code: String,
        message: String,
        /// The envelope's `details` (`Null` when it has none).
        details: Value,
    },
    /// The answer was not HTTP/JSON as expected.
    Protocol(String),
    /// Writing our own output failed (a closed pipe: see `report`).
    Output(io::Error),
    /// A failure on this side, with a code for `--json`'s envelope.
    Failed {
        code: &'static str,
        message: String,
        details: Value,
    },
    /// Several things were asked; this many failed, each already reported.
    Some(usize),
}

impl ClientError {
    pub fn failed(code: &'static str, message: impl Into<String>) -> ClientError {
        ClientError::Failed {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(e) => write!(f, "no daemon answers ({e})"),
            ClientError::Api { code, message, .. } => write!(f, "{message} ({code})"),
            ClientError::Protocol(m) => write!(f, "unexpected answer: {m}"),
            ClientError::Output(e) => write!(f, "writing output: {e}"),
            ClientError::Failed { message, .. } => write!(f, "{message}"),
            ClientError::Some(n) => write!(f, "{n} failed"),
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
        self.call_within(method, path, body, Duration::from_secs(120))
    }

    /// `call`, giving up on the answer after `patience`.
    pub fn call_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        patience: Duration,
    ) -> Result<Value, ClientError> {
        let (_, body) = self.fetch(method, path, body, patience)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// One request; a 2xx answer's head (lowercase) and raw body, else the
    /// envelope as an error.
    pub fn fetch(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        patience: Duration,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let mut s = UnixStream::connect(&self.socket).map_err(ClientError::Unreachable)?;
        s.set_read_timeout(Some(patience)).ok();
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: coven\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .map_err(ClientError::Unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(ClientError::Unreachable)?;
        let end = memchr::memmem::find(&raw, b"\r\n\r\n")
            .ok_or_else(|| ClientError::Protocol("no response head".into()))?;
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let body = raw.split_off(end + 4);
        let status = status_of(&head)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &body));
        }
        Ok((head, body))
    }

    /// Opens a streamed route (an event stream, a recording): the socket, and any body bytes
    /// read past the response head; the envelope as an error otherwise.
    pub fn open_stream(&self, path: &str) -> Result<(UnixStream, Vec<u8>), ClientError> {
        let mut s = UnixStream::connect(&self.socket).map_err(ClientError::Unreachable)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: coven\r\nConnection: close\r\n\r\n"
        )
        .map_err(ClientError::Unreachable)?;
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = s.read(&mut buf).map_err(ClientError::Unreachable)?;
            if n == 0 {
                return Err(ClientError::Unreachable(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            pending.extend_from_slice(&buf[..n]);
            let Some(end) = memchr::memmem::find(&pending, b"\r\n\r\n") else {
                if pending.len() > 64 * 1024 {
                    return Err(ClientError::Protocol("response head too long".into()));
                }
                continue;
            };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let status = status_of(&head)?;
            let mut body = pending.split_off(end + 4);
            if status != 200 {
                // An error envelope: read it whole and report it.
                s.read_to_end(&mut body).map_err(ClientError::Unreachable)?;
                return Err(api_error(status, &body));
            }
            return Ok((s, body));
        }
    }

    /// Follows a `text/event-stream` route, calling `on_event` with each
    /// frame's record, until the daemon ends the stream.
    pub fn stream(
        &self,
        path: &str,
        mut on_event: impl FnMut(&Value) -> io::Result<()>,
    ) -> Result<(), ClientError> {
        let (mut s, body) = self.open_stream(path)?;
        let mut frames = SseDecoder::default();
        frames.feed(&body);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(record) = frames.next_record() {
                on_event(&record?).map_err(ClientError::Output)?;
            }
            let n = s.read(&mut buf).map_err(ClientError::Unreachable)?;
            if n == 0 {
                return Ok(());
            }
            frames.feed(&buf[..n]);
        }
    }

    /// Pages through a session's events after `after`, oldest first,
    /// calling `on_event` with each until it returns `Some` or the newest
    /// is passed. Returns the last seq seen and what stopped it, if anything.
    pub fn events<T>(
        &self,
        id: &str,
        after: u64,
        mut on_event: impl FnMut(&Value) -> Result<Option<T>, ClientError>,
    ) -> Result<(u64, Option<T>), ClientError> {
        let mut cursor = after;
        loop {
            let page = self.call(
                "GET",
                &format!("/api/v1/sessions/{id}/events?afterSeq={cursor}&limit=10000"),
                None,
            )?;
            for e in page["events"].as_array().into_iter().flatten() {
                cursor = e["seq"].as_u64().unwrap_or(cursor);
                if let Some(stop) = on_event(e)? {
                    return Ok((cursor, Some(stop)));
                }
            }
            if page["hasMore"] != true {
                return Ok((cursor, None));
            }
        }
    }

    /// A session id from a full id or a unique prefix of one.
    /// Walks the paged session list, newest first, calling `f` with each
    /// record until it returns false or the list ends.
    pub fn sessions(
        &self,
        include_archived: bool,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Result<(), ClientError> {
        let mut cursor: Option<String> = None;
        loop {
            let mut path =
                format!("/api/v1/sessions?limit=1000&includeArchived={include_archived}");
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(c);
            }
            let page = self.call("GET", &path, None)?;
            for s in page["sessions"].as_array().into_iter().flatten() {
                if !f(s) {
                    return Ok(());
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(()),
            }
        }
    }

    /// A session id from a unique prefix of one (archived sessions too).
    pub fn resolve_id(&self, given: &str) -> Result<String, ClientError> {
        let exact = crate::session::valid_session_id(given)
            && self
                .call("GET", &format!("/api/v1/sessions/{given}"), None)
                .is_ok();
        if exact {
            return Ok(given.to_owned());
        }
        let mut matches: Vec<String> = Vec::new();
        self.sessions(true, |s| {
            if let Some(id) = s["id"].as_str().filter(|id| id.starts_with(given)) {
                matches.push(id.to_owned());
            }
            // Enough to show what an ambiguous prefix matches.
            matches.len() <= AMBIGUOUS_SHOWN
        })?;
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ClientError::Api {
                status: 404,
                code: "session_not_found".into(),
                message: format!("No session matches {given:?}."),
                details: serde_json::json!({ "sessionId": given }),
            }),
            _ => {
                let mut shown = matches.clone();
                if shown.len() > AMBIGUOUS_SHOWN {
                    shown.truncate(AMBIGUOUS_SHOWN);
                    shown.push("…".into());
                }
                Err(ClientError::Api {
                    status: 400,
                    code: "invalid_request".into(),
                    message: format!("{given:?} matches more than one session."),
                    details: serde_json::json!({ "matches": shown }),
                })
            }
        }
    }
}

/// How many sessions an ambiguous prefix's error lists.
const AMBIGUOUS_SHOWN: usize = 10;

/// An event record's payload, decoded (`Null` if it is not JSON).
pub fn payload(event: &Value) -> Value {
    serde_json::from_str(event["payload_json"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn status_of(head: &str) -> Result<u16, ClientError> {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol("no status in the response".into()))
}

/// The error an envelope carries (or a generic one if the body is not one).
fn api_error(status: u16, body: &[u8]) -> ClientError {
    let mut value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = value["error"].take();
    ClientError::Api {
        status,
        code: err["code"].as_str().unwrap_or("unknown").to_owned(),
        message: err["message"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned(),
        details: err.get("details").cloned().unwrap_or(Value::Null),
    }
}

/// Splits a `text/event-stream` body into the records its `data:` lines
/// carry. Frames without data (heartbeat comments) are skipped.
#[derive(Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
    /// Where the unread part of `pending` starts.
    start: usize,
}

impl SseDecoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole frame's record, if one has arrived.
    pub fn next_record(&mut self) -> Option<Result<Value, ClientError>> {
        loop {
            let rest = &self.pending[self.start..];
            let end = memchr::memmem::find(rest, b"\n\n")?;
            let frame = &rest[..end];
            self.start += end + 2;
            let data = frame
                .split(|&b| b == b'\n')
                .find_map(|l| l.strip_prefix(b"data:"));
            if let Some(data) = data {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                return Some(
                    serde_json::from_slice(data).map_err(|e| ClientError::Protocol(e.to_string())),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_split_anywhere() {
        let text = b": heartbeat\n\nid: e1\ndata: {\"seq\":1}\n\nid: e2\ndata: {\"seq\":2}\n\n";
        for cut in 0..text.len() {
            let mut d = SseDecoder::default();
            let mut seqs = Vec::new();
            for part in [&text[..cut], &text[cut..]] {
                d.feed(part);
                while let Some(r) = d.next_record() {
                    seqs.push(r.unwrap()["seq"].as_u64().unwrap());
                }
            }
            assert_eq!(seqs, [1, 2], "cut at {cut}");
        }
    }
}
