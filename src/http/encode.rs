//! Response heads written straight into a connection's output buffer:
//! static strings and `itoa` digits, no formatting machinery.

/// How the response tells the client about the connection's future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1 default: no header.
    Default,
    /// `Connection: close` — the server closes after this response.
    Close,
    /// `Connection: keep-alive` — an HTTP/1.0 client asked to keep it open.
    KeepAlive,
}

pub const JSON: &str = "application/json";

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends a response head announcing `content_length` body bytes, with
/// an `Allow` header for a 405 and a `Coven-Seq` header (the newest event
/// the answer reflects, for bodies with no field to carry it: a screen's
/// redraw bytes) when given. `extra` is more head fields, each a whole
/// `Name: value\r\n` line (the web view's).
#[allow(clippy::too_many_arguments)]
pub fn head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    content_length: usize,
    persist: Persist,
    allow: Option<&str>,
    seq: Option<u64>,
    extra: &[u8],
) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(digits.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(digits.format(content_length).as_bytes());
    match persist {
        Persist::Default => {}
        Persist::Close => out.extend_from_slice(b"\r\nConnection: close"),
        Persist::KeepAlive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
    }
    if let Some(allow) = allow {
        out.extend_from_slice(b"\r\nAllow: ");
        out.extend_from_slice(allow.as_bytes());
    }
    if let Some(seq) = seq {
        out.extend_from_slice(b"\r\nCoven-Seq: ");
        out.extend_from_slice(digits.format(seq).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// A canned head (`SSE_HEAD`, `CAST_HEAD`) with more head fields.
pub fn canned_with(out: &mut Vec<u8>, head: &[u8], extra: &[u8]) {
    let fields = head.len() - 2;
    out.extend_from_slice(&head[..fields]);
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// What every answer on the web view carries: no framing, no sniffing, no
/// referrer, scripts and styles from the page's own origin only, and never
/// a CORS header (docs/SECURITY.md).
pub const WEB_HEADERS: &[u8] = b"Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\nCache-Control: no-store\r\n";

/// The head of an event stream (`text/event-stream`): its body is frames
/// until it ends, so it closes the connection.
pub const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
/// The head of a recording download (`application/x-asciicast`).
pub const CAST_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-asciicast\r\nConnection: close\r\n\r\n";
/// What an event stream says when it has nothing to say (a comment).
pub const SSE_HEARTBEAT: &[u8] = b": heartbeat\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let mut out = Vec::new();
        head(&mut out, 200, JSON, 12, Persist::Default, None, None, b"");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
        );
        out.clear();
        head(
            &mut out,
            405,
            JSON,
            0,
            Persist::Close,
            Some("GET, HEAD"),
            None,
            b"",
        );
        assert_eq!(
            out,
            &b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n"[..]
        );
        out.clear();
        canned_with(&mut out, SSE_HEAD, b"X-A: b\r\n");
        assert!(out.ends_with(b"Connection: close\r\nX-A: b\r\n\r\n"));
    }
}
