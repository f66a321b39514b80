//! HTTP/1.1 framing: parsing request heads and bodies (`parse`) and writing
//! response heads (`encode`). No I/O and no serde here: the connection feeds
//! bytes in, the API layer decides what the bytes mean.

pub mod encode;
pub mod parse;

/// A framing failure. `Copy` with static text so that producing one never
/// allocates; the connection answers it with an error envelope and closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// The HTTP status that answers it: 400, 413, 431 or 503.
    pub status: u16,
    /// Human-readable cause, quoted in the envelope's `message`.
    pub message: &'static str,
}

impl Error {
    pub const fn bad(message: &'static str) -> Error {
        Error {
            status: 400,
            message,
        }
    }
    pub const HEAD_TOO_LARGE: Error = Error {
        status: 431,
        message: "Request header section is too large.",
    };
    pub const TOO_MANY_HEADERS: Error = Error {
        status: 431,
        message: "Request has too many header fields.",
    };
    pub const BODY_TOO_LARGE: Error = Error {
        status: 413,
        message: "Request body is too large.",
    };
    /// The connections together hold as much buffered data as the daemon
    /// allows (`maxBufferedBytes`); a retry after others finish succeeds.
    pub const BUSY: Error = Error {
        status: 503,
        message: "The daemon is holding too much request and response data; retry shortly.",
    };
}

/// Request methods the router distinguishes; anything else is `Other` and
/// answers 405 on a known path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// One request as handed to a service: everything borrowed from the
/// connection's read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The path part of the request target, still percent-encoded.
    pub path: &'a [u8],
    /// The query string without its `?`, still percent-encoded; empty if none.
    pub query: &'a [u8],
    /// The `Last-Event-ID` header's value, if sent.
    pub last_event_id: Option<&'a [u8]>,
    /// The whole body (de-chunked).
    pub body: &'a [u8],
    /// The `Host`, `Cookie` and `Origin` headers' values, if sent.
    pub host: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    /// It came through the loopback web view's listener (TCP), not the
    /// Unix socket: the service checks who is asking before anything else.
    pub web: bool,
}

/// What a service answers: status and extra head fields. The body was
/// written by the service into the buffer it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Value of an `Allow` header (405 answers).
    pub allow: Option<&'static str>,
    /// Instead of answering now: hold the connection (long poll or stream).
    pub hold: Option<Hold>,
    /// The body's `Content-Type` (JSON unless the route says otherwise).
    pub content_type: &'static str,
    /// A `Coven-Seq` header's value.
    pub seq: Option<u64>,
    /// Keep the connection open until the process exits (the answer to a
    /// request that stops the daemon): its EOF then means the daemon is gone.
    pub until_exit: bool,
}

impl Reply {
    pub const fn new(status: u16) -> Reply {
        Reply {
            status,
            allow: None,
            hold: None,
            content_type: encode::JSON,
            seq: None,
            until_exit: false,
        }
    }
}

/// A request the service answers later, from the connection's point of view
/// opaque numbers the service gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub kind: HoldKind,
    /// What the held request waits on (for the reactor's wake lists).
    pub topic: usize,
    /// Which incarnation of `topic` it waits on: the service checks it, so
    /// that a topic key reused after its subject went away is not mistaken
    /// for it.
    pub tag: u64,
    /// Where the client is: the last event it has.
    pub cursor: u64,
    /// What else the service needs to take the request up again.
    pub state: HoldState,
    /// When a long poll answers anyway.
    pub until: Option<std::time::Instant>,
}

/// A held request's own state, as the service gave it (the connection only
/// carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    None,
    /// A long poll for events: how many a page holds at most.
    Page {
        limit: usize,
    },
    /// A screen being built: the form of its answer (the service's number).
    Screen {
        format: u8,
    },
    /// State the service keeps in a slab of its own (a wait, a recording,
    /// a launch, an acknowledgement), at this slot.
    Slot(usize),
    /// The answer of the service's background task with this ticket.
    Task(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// Answer one normal response once `resume` has something (or at `until`).
    LongPoll,
    /// A `text/event-stream` body filled by `stream` until it ends.
    Stream,
    /// Like `Stream`, for a download of a known end: an
    /// `application/x-asciicast` body, no heartbeats; the service keeps
    /// state for it that `release` frees if the client goes first.
    Cast,
    /// Like `LongPoll` (one response, from `resume`); the service keeps
    /// state for it that `release` frees.
    Wait,
    /// Like `LongPoll`, for an answer that takes work done in bounded
    /// steps: `resume` does one step, and holds it again with `until` set
    /// to now, so that the next turn resumes it again.
    Step,
}

/// What a stream fill did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Caught up: wait for the topic to change.
    Idle,
    /// Stopped at the byte budget: fill again once output drains.
    Full,
    /// The stream is over (its last event is written).
    End,
    /// Fill again at this time, or when the topic changes if sooner (a
    /// stream that paces itself: the web view's screens).
    Later(std::time::Instant),
}

/// The application behind the HTTP layer. The connection calls it once per
/// complete request; `body` is empty on entry and receives the response body.
pub trait Service {
    fn call(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply;
    /// The envelope for a framing error (written to `body`).
    fn framing_error(&mut self, err: Error, body: &mut Vec<u8>) -> Reply;
    /// A held long poll again: a reply, or the hold again if nothing
    /// happened yet. `expired` forces an answer (its deadline passed or the
    /// daemon is stopping).
    fn resume(&mut self, hold: &Hold, expired: bool, body: &mut Vec<u8>) -> Reply {
        let _ = (hold, expired);
        body.clear();
        Reply::new(500)
    }
    /// The daemon restarts: a held request answers now, or says (with its
    /// hold again) that it will answer before the restart (its answer
    /// waits for something the restart waits for too).
    fn interrupt(&mut self, hold: &Hold, body: &mut Vec<u8>) -> Reply {
        self.resume(hold, true, body)
    }
    /// A held request's connection went away before it was answered.
    fn release(&mut self, hold: &Hold) {
        let _ = hold;
    }
    /// Head fields for the answer just given by `call` (the web view's
    /// login sets a cookie), appended as `Name: value\r\n` lines; asked
    /// only on the web view's connections.
    fn take_head_extra(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
    /// Appends stream frames after `hold.cursor` to `out`, at most about
    /// `budget` bytes, advancing the cursor.
    fn stream(&mut self, hold: &mut Hold, out: &mut Vec<u8>, budget: usize) -> Fill {
        let _ = (hold, out, budget);
        Fill::End
    }
}
