//! Incremental request parsing over a growing byte buffer.
//!
//! The head is located with `memchr` (only new bytes are scanned), then handed
//! whole to `httparse`. Bodies are framed by `Content-Length` or decoded from
//! `chunked` in place, so a request never needs a second buffer. Positions are
//! relative to the start of the request, so the caller may move its buffer's
//! contents between calls.

use std::ops::Range;

use super::{Error, Method};

/// The head-section limits; see `config::Limits` for their defaults.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
}

/// The most header fields any configuration may allow (the stack array size).
pub const MAX_HEADERS_CEILING: usize = 256;

/// A chunk-size line (with extensions) longer than this is malformed.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// How the body of a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// What the connection needs to keep of a parsed head. Ranges index the
/// request's own bytes (offset 0 is the request's first byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub path: Range<usize>,
    pub query: Range<usize>,
    pub last_event_id: Option<Range<usize>>,
    /// `Host`, `Cookie` and `Origin`: what the loopback web view checks.
    pub host: Option<Range<usize>>,
    pub cookie: Option<Range<usize>>,
    pub origin: Option<Range<usize>>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor: u8,
    pub framing: Framing,
    /// Whether the connection stays open after this request.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

/// Result of looking for a head in the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadStatus {
    Complete(Head),
    /// Not yet; resume scanning at this offset when more bytes arrive.
    Partial(usize),
}

/// Finds the end of the head (the byte after the blank line) among the
/// terminators that end past `from`: every one ending at or before it was
/// already seen (a terminator may straddle `from`, hence the look-back).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    for i in memchr::memchr_iter(b'\n', &buf[start.min(buf.len())..]) {
        let i = start + i;
        let end = match buf.get(i + 1) {
            Some(b'\n') => i + 2,
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => i + 3,
            _ => continue,
        };
        if end > from {
            return Some(end);
        }
    }
    None
}

/// Parses the head at the start of `buf` if it is complete.
pub fn parse_head(buf: &[u8], from: usize, limits: &Limits) -> Result<HeadStatus, Error> {
    let mut scan = from;
    loop {
        let end = match find_head_end(buf, scan) {
            Some(end) => end,
            None => {
                if buf.len() > limits.max_head_bytes {
                    return Err(Error::HEAD_TOO_LARGE);
                }
                return Ok(HeadStatus::Partial(buf.len()));
            }
        };
        if end > limits.max_head_bytes {
            return Err(Error::HEAD_TOO_LARGE);
        }
        match parse_complete(&buf[..end], limits)? {
            Some(head) => return Ok(HeadStatus::Complete(head)),
            // Only blank lines so far (httparse skips leading empty lines).
            None => scan = end,
        }
    }
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn parse_complete(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Error> {
    // Uninitialized: zeroing 256 headers would cost more than the parse.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let n = limits.max_headers.min(MAX_HEADERS_CEILING);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers[..n]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TOO_MANY_HEADERS),
        Err(httparse::Error::Version) => return Err(Error::bad("Unsupported HTTP version.")),
        Err(_) => return Err(Error::bad("Malformed request head.")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes());
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(Error::bad("Request target must be an absolute path."));
    }
    let minor = req.version.unwrap_or(1);
    let target = offset(buf, target.as_bytes());
    let (path, query) = match memchr::memchr(b'?', &buf[target.clone()]) {
        Some(q) => (
            target.start..target.start + q,
            target.start + q + 1..target.end,
        ),
        None => (target.clone(), target.end..target.end),
    };

    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut saw_transfer_encoding = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    let mut last_event_id = None;
    let (mut host, mut cookie, mut origin) = (None, None, None);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return Err(Error::bad("Duplicate Content-Length."));
            }
            length = Some(parse_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if saw_transfer_encoding {
                return Err(Error::bad("Duplicate Transfer-Encoding."));
            }
            saw_transfer_encoding = true;
            // Only `chunked` is supported, and it must be the only coding.
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Error::bad("Unsupported Transfer-Encoding."));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"last-event-id") {
            last_event_id = Some(offset(buf, h.value));
        } else if name.eq_ignore_ascii_case(b"host") {
            // RFC 9112 3.2: more than one Host is a bad request.
            if host.is_some() {
                return Err(Error::bad("Duplicate Host."));
            }
            host = Some(offset(buf, value));
        } else if name.eq_ignore_ascii_case(b"cookie") {
            cookie.get_or_insert_with(|| offset(buf, value));
        } else if name.eq_ignore_ascii_case(b"origin") {
            origin.get_or_insert_with(|| offset(buf, value));
        }
    }
    let framing = match (length, chunked) {
        (Some(_), true) => {
            return Err(Error::bad(
                "Both Content-Length and Transfer-Encoding were sent.",
            ))
        }
        (Some(0), false) | (None, false) => Framing::None,
        (Some(n), false) => {
            if n > limits.max_body_bytes {
                return Err(Error::BODY_TOO_LARGE);
            }
            Framing::Length(n)
        }
        (None, true) => Framing::Chunked,
    };
    let keep_alive = if minor == 0 {
        keep_alive && !close
    } else {
        !close
    };
    Ok(Some(Head {
        method,
        path,
        query,
        last_event_id,
        host,
        cookie,
        origin,
        minor,
        framing,
        keep_alive,
        expect_continue: expect_continue && minor == 1 && framing != Framing::None,
        len,
    }))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b" \t".contains(b))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b" \t".contains(b))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_length(v: &[u8]) -> Result<usize, Error> {
    const BAD: Error = Error::bad("Invalid Content-Length.");
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    Ok(v.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// Incremental, in-place decoder of a chunked body.
///
/// Decoded bytes are moved down so that the body occupies
/// `body_start..body_start + decoded` contiguously; the raw bytes consumed
/// but no longer needed are squeezed out, so the buffer never holds more than
/// the decoded body plus one unfinished chunk-size line or chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    /// Decoded body bytes so far.
    decoded: usize,
    /// Bytes of trailer section seen, to bound it.
    trailer_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size,
            decoded: 0,
            trailer_bytes: 0,
        }
    }
}

/// Outcome of feeding bytes to the chunked decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkStatus {
    /// The body is `body_start..body_start + len`; the request's bytes end at
    /// `end` (relative to the request start).
    Done { len: usize, end: usize },
    /// Need more bytes. `end` is how many bytes of the request are still held.
    Partial { end: usize },
}

impl Chunked {
    /// Decodes what `req[..*end]` holds. `req` is the request's bytes from
    /// offset 0; the raw chunked bytes start at `body_start + decoded`.
    /// Returns the new length of the request's bytes after squeezing
    /// (`Partial.end`) so that the caller can shift whatever follows.
    pub fn decode(
        &mut self,
        req: &mut [u8],
        body_start: usize,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<ChunkStatus, Error> {
        let mut write = body_start + self.decoded;
        let mut read = write;
        let end = req.len();
        let result = loop {
            let avail = &req[read..end];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(avail) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        read += used;
                        if size == 0 {
                            self.state = ChunkState::Trailer;
                        } else {
                            let size = usize::try_from(size).unwrap_or(usize::MAX);
                            if size > max_body - self.decoded {
                                return Err(Error::BODY_TOO_LARGE);
                            }
                            self.state = ChunkState::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if avail.len() > MAX_CHUNK_LINE_BYTES {
                            return Err(Error::bad("Chunk size line is too long."));
                        }
                        break None;
                    }
                    Err(_) => return Err(Error::bad("Invalid chunk size.")),
                },
                ChunkState::Data(left) => {
                    if avail.is_empty() {
                        break None;
                    }
                    let n = left.min(avail.len());
                    req.copy_within(read..read + n, write);
                    read += n;
                    write += n;
                    self.decoded += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => {
                    if avail.len() < 2 {
                        break None;
                    }
                    if &avail[..2] != b"\r\n" {
                        return Err(Error::bad("Chunk data is not followed by CRLF."));
                    }
                    read += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    // Trailer fields are read and ignored, up to a blank line.
                    let Some(nl) = memchr::memchr(b'\n', avail) else {
                        if self.trailer_bytes + avail.len() > max_trailer {
                            return Err(Error::HEAD_TOO_LARGE);
                        }
                        break None;
                    };
                    let line = &avail[..nl];
                    read += nl + 1;
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > max_trailer {
                        return Err(Error::HEAD_TOO_LARGE);
                    }
                    if line.is_empty() || line == b"\r" {
                        break Some(read);
                    }
                }
            }
        };
        match result {
            Some(done) => Ok(ChunkStatus::Done {
                len: self.decoded,
                end: done,
            }),
            None => {
                // Squeeze the consumed framing out: keep decoded bytes and the
                // unread tail contiguous.
                req.copy_within(read..end, write);
                Ok(ChunkStatus::Partial {
                    end: write + (end - read),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 64,
        max_body_bytes: 1024 * 1024,
    };

    fn head(input: &[u8]) -> Result<HeadStatus, Error> {
        parse_head(input, 0, &LIMITS)
    }

    fn complete(input: &[u8]) -> Head {
        match head(input) {
            Ok(HeadStatus::Complete(h)) => h,
            other => panic!("expected a complete head for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn heads() {
        let h = complete(b"GET /api/v1/health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, 4..18);
        assert_eq!(h.query, 19..22);
        assert!(h.keep_alive);
        assert_eq!(h.framing, Framing::None);
        assert_eq!(h.len, 44);

        let h = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = complete(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.expect_continue);
        let h = complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = complete(b"GET / HTTP/1.1\nLast-Event-ID: 42\n\n");
        assert_eq!(h.last_event_id, Some(30..32));
        let h = complete(b"\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(h.len, 20);
        // Blank lines only: partial, and never a loop (found by fuzzing).
        for blank in [&b"\n\n"[..], b"\r\n\r\n", b"\n\n\n\r\n"] {
            assert_eq!(head(blank), Ok(HeadStatus::Partial(blank.len())));
        }
        let h = complete(b"\n\nGET / HTTP/1.1\n\n");
        assert_eq!(h.len, 18);
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"\x00\x01\x02\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        ];
        for (input, status) in cases {
            match head(input) {
                Err(e) => assert_eq!(e.status, *status, "{:?}", String::from_utf8_lossy(input)),
                Ok(s) => panic!("{:?} parsed as {s:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn limits() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(LIMITS.max_head_bytes + 1, b'a');
        assert_eq!(head(&big), Err(Error::HEAD_TOO_LARGE));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head(&big), Err(Error::HEAD_TOO_LARGE));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(head(&many), Err(Error::TOO_MANY_HEADERS));
    }

    const REQUESTS: &[&[u8]] = &[
        b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        b"POST /api/v1/actions HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        b"GET /x HTTP/1.0\n\n",
        b"\r\nHEAD /api/v1/health?a=b HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];

    /// Feeding a request split at every offset gives the same head as
    /// feeding it whole, and never reports completion early.
    #[test]
    fn every_split_point() {
        for req in REQUESTS {
            let whole = complete(req);
            for split in 0..req.len() {
                let from = match head(&req[..split]).unwrap() {
                    HeadStatus::Partial(from) => from,
                    HeadStatus::Complete(h) => panic!("complete at {split}: {h:?}"),
                };
                match parse_head(req, from, &LIMITS).unwrap() {
                    HeadStatus::Complete(h) => assert_eq!(h, whole),
                    HeadStatus::Partial(_) => panic!("partial after split at {split}"),
                }
            }
            // Byte by byte, resuming from each Partial offset.
            let mut from = 0;
            for end in 1..=req.len() {
                match parse_head(&req[..end], from, &LIMITS).unwrap() {
                    HeadStatus::Partial(f) => from = f,
                    HeadStatus::Complete(h) => {
                        assert_eq!(end, req.len());
                        assert_eq!(h, whole);
                    }
                }
            }
        }
    }

    /// Runs the chunked decoder over `raw` delivered in pieces of `step`
    /// bytes, like the connection does, and returns the body.
    fn dechunk(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut buf = Vec::new();
        let mut dec = Chunked::default();
        let mut fed = 0;
        loop {
            let take = step.min(raw.len() - fed);
            buf.extend_from_slice(&raw[fed..fed + take]);
            fed += take;
            match dec.decode(&mut buf, 0, 1024, 1024)? {
                ChunkStatus::Done { len, end } => {
                    let consumed_raw = fed - (buf.len() - end);
                    return Ok((buf[..len].to_vec(), consumed_raw));
                }
                ChunkStatus::Partial { end } => {
                    buf.truncate(end);
                    if fed == raw.len() {
                        return Err(Error::bad("eof"));
                    }
                }
            }
        }
    }

    #[test]
    fn chunked() {
        let raw = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..raw.len() {
            let (body, used) = dechunk(raw, step).unwrap();
            assert_eq!(body, b"hello world!");
            assert_eq!(used, raw.len() - 4, "step {step}");
        }
        assert_eq!(dechunk(b"0\r\n\r\n", 1).unwrap().0, b"");
        assert_eq!(
            dechunk(b"zz\r\n", 4),
            Err(Error::bad("Invalid chunk size."))
        );
        assert_eq!(
            dechunk(b"3\r\nabcX\r\n", 9),
            Err(Error::bad("Chunk data is not followed by CRLF."))
        );
        assert_eq!(dechunk(b"401\r\n", 5), Err(Error::BODY_TOO_LARGE));
        assert_eq!(
            dechunk(b"ffffffffffffffff\r\n", 64),
            Err(Error::BODY_TOO_LARGE)
        );
    }
}
