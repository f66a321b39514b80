//! One client connection: its buffers, its state machine and its readiness.
//!
//! `Conn` reads, frames requests with `http::parse`, hands each complete one
//! to a `Service` and queues the encoded answer, in order. It never touches
//! `Poll`: the reactor records readiness into it and calls `on_ready`, which
//! drives the socket until it would block, a budget runs out, or output
//! backpressure says stop. Buffers come from `Pools` and go back when the
//! connection falls idle, so an idle keep-alive connection holds none.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::http::encode::{self, Persist};

mod buffers;
mod hold;
use crate::http::parse::{self, ChunkStatus, Chunked, Framing, Head, HeadStatus};
use crate::http::{Fill, Hold, HoldKind, Method, Reply, Request, Service};
use buffers::Input;
pub use buffers::Pools;
use hold::Ask;

/// A byte stream the connection can run over (a Unix socket, or a test double).
pub trait Socket: Read + Write {
    /// Half-closes the write side, so the peer sees EOF after our last byte.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for mio::net::UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// A client's socket: the Unix socket's, or the loopback web view's (TCP).
pub enum Sock {
    Unix(mio::net::UnixStream),
    Tcp(mio::net::TcpStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write_vectored(bufs),
            Sock::Tcp(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Sock {
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl mio::event::Source for Sock {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.register(registry, token, interests),
            Sock::Tcp(s) => s.register(registry, token, interests),
        }
    }
    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.reregister(registry, token, interests),
            Sock::Tcp(s) => s.reregister(registry, token, interests),
        }
    }
    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.deregister(registry),
            Sock::Tcp(s) => s.deregister(registry),
        }
    }
}

/// Limits a connection enforces (from `config::Limits`).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub http: parse::Limits,
    /// Queued response bytes past which no further pipelined request is
    /// dispatched and nothing more is read.
    pub max_queued_bytes: usize,
    /// From a request's first byte to its last (head and body).
    pub head_timeout: Duration,
    /// Without any progress, read or write.
    pub idle_timeout: Duration,
    /// After a final response, how long unread input is still discarded
    /// before closing (so the client reads our answer, not a reset).
    pub linger: Duration,
    /// What all connections together may hold in buffers past
    /// `FREE_BYTES` each (the reactor keeps the count).
    pub max_buffered_bytes: usize,
}

/// Reads per `on_ready` before yielding to other sources.
const READS_PER_TURN: usize = 16;
/// Discarded bytes while lingering before giving up on the peer.
const MAX_LINGER_BYTES: usize = 1024 * 1024;
/// Bytes each connection may hold in its buffers without drawing on the
/// budget all connections share (`Cx::budget`): room for any head, a small
/// body or answer, and a stream's queue.
pub const FREE_BYTES: usize = 128 * 1024;
/// A stream's queued output is refilled below half of this and filled up to
/// about this: the most a stream ever holds for a reader that stops reading.
pub const STREAM_BUDGET_BYTES: usize = 64 * 1024;
/// A stream with nothing to say sends a comment this often.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// An answer's body at least this large is sent with its head at once
/// rather than copied behind it (`Conn::queue_body`); a smaller one is
/// cheaper to copy, and leaves pipelined answers to go out together.
const DIRECT_BODY_BYTES: usize = 8 * 1024;

enum State {
    /// Waiting for a complete head; `scanned` bytes were already searched.
    Head { scanned: usize },
    /// Head parsed; waiting for its body.
    Body { head: Head, chunked: Chunked },
    /// A final response is queued: write it, then linger and close.
    Closing,
    /// Write side shut; discarding input until EOF or `until`.
    Draining { until: Instant, discarded: usize },
    /// A long poll waits; requests pipelined behind it wait too.
    Parked {
        hold: Hold,
        persist: Persist,
        head_only: bool,
    },
    /// A `text/event-stream` body being filled from the service.
    Streaming {
        hold: Hold,
        heartbeat_at: Instant,
        /// The service asked to be filled again then (`Fill::Later`).
        refill_at: Option<Instant>,
    },
}

/// What the reactor should do with the connection after `on_ready`.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for readiness or the deadline.
    Wait,
    /// Ready work remains (the read budget ran out): call again soon.
    Yield,
    /// Close and forget the connection.
    Close,
}

/// Everything a connection borrows from the reactor while it runs.
pub struct Cx<'a, S: Service> {
    pub service: &'a mut S,
    pub pools: &'a mut Pools,
    pub limits: &'a ConnLimits,
    /// Scratch for a response body, reused across requests.
    pub body: &'a mut Vec<u8>,
    pub now: Instant,
    /// Bytes past `FREE_BYTES` this connection may hold in its buffers: the
    /// shared budget less what the other connections hold past theirs.
    pub budget: usize,
}

pub struct Conn<T> {
    pub sock: T,
    input: Input,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    state: State,
    /// Readiness as last reported and not yet used up (edge-triggered: only
    /// `WouldBlock` clears these).
    pub readable: bool,
    pub writable: bool,
    /// The poller reported the peer's write side closed (the EOF is queued
    /// behind any data).
    pub read_closed: bool,
    /// The peer shut its write side: no more requests will come.
    peer_eof: bool,
    /// Dispatch stopped at the output cap with requests still buffered.
    stalled: bool,
    /// When the first byte of a still-incomplete request (head and body)
    /// arrived.
    head_started: Option<Instant>,
    /// Last read or write progress.
    last_active: Instant,
    /// The deadline this connection has in the reactor's timer set, if any.
    pub armed: Option<Instant>,
    /// The topic the reactor has this connection listed under, if any.
    pub listed: Option<usize>,
    /// What the reactor has registered this socket for.
    pub polled: Polled,
    /// The client asked for the close (`Connection: close`, HTTP/1.0): once
    /// the answer is out and nothing is left unread, the socket is simply
    /// closed, without the half-close and linger an error close needs.
    client_closes: bool,
    /// It asked the daemon to stop: its socket is kept open, not closed,
    /// until the process exits, so that its EOF tells the client that the
    /// daemon is gone (`Reply::until_exit`).
    pub keep_until_exit: bool,
    /// It came through the loopback web view's listener: its requests say
    /// so to the service, and every answer carries `WEB_HEADERS`.
    pub web: bool,
}

/// What a connection's socket is registered with the poller for. A new
/// connection is served before it is registered at all (its request usually
/// came with the connect), and is registered for writability only once a
/// write would block: a fresh socket is writable, and registering for it up
/// front would only cost a wake-up that says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polled {
    No,
    Read,
    ReadWrite,
}

impl<T: Socket> Conn<T> {
    pub fn new(sock: T, now: Instant) -> Self {
        Conn {
            sock,
            input: Input::default(),
            output: Vec::new(),
            written: 0,
            state: State::Head { scanned: 0 },
            readable: false,
            writable: false,
            read_closed: false,
            peer_eof: false,
            stalled: false,
            head_started: None,
            last_active: now,
            armed: None,
            listed: None,
            polled: Polled::No,
            client_closes: false,
            keep_until_exit: false,
            web: false,
        }
    }

    /// The head fields this connection's answers carry besides the usual
    /// ones: on the web view, `WEB_HEADERS` and what the service adds to
    /// this answer; none on the Unix socket.
    fn head_extra<S: Service>(&self, cx: &mut Cx<'_, S>, extra: &mut Vec<u8>) {
        extra.clear();
        if self.web {
            extra.extend_from_slice(encode::WEB_HEADERS);
            cx.service.take_head_extra(extra);
        }
    }

    /// The interest the socket needs now: writability only after a write
    /// would block (edge-triggered, `writable` stays true until then).
    pub fn interest_needed(&self) -> Polled {
        if self.writable {
            Polled::Read
        } else {
            Polled::ReadWrite
        }
    }

    fn queued(&self) -> usize {
        self.output.len() - self.written
    }

    /// When this connection must be looked at again, whatever happens.
    pub fn deadline(&self, limits: &ConnLimits) -> Instant {
        match self.state {
            State::Draining { until, .. } => until,
            State::Parked { hold, .. } => {
                hold.until.unwrap_or(self.last_active + limits.idle_timeout)
            }
            State::Streaming {
                heartbeat_at,
                refill_at,
                ..
            } => {
                let t = heartbeat_at.min(self.last_active + limits.idle_timeout);
                refill_at.map_or(t, |r| r.min(t))
            }
            _ => match self.head_started {
                Some(t) => t + limits.head_timeout,
                None => self.last_active + limits.idle_timeout,
            },
        }
    }

    /// Bytes this connection holds in buffers (for accounting and tests).
    pub fn buffer_bytes(&self) -> usize {
        self.input.data.len() + self.output.capacity()
    }

    /// What this connection holds past `FREE_BYTES`: its draw on the budget.
    pub fn bytes_over_free(&self) -> usize {
        self.buffer_bytes().saturating_sub(FREE_BYTES)
    }

    /// The input buffer size the request being read needs, when known.
    fn body_want(&self) -> Option<usize> {
        match &self.state {
            State::Body { head, .. } => match head.framing {
                Framing::Length(n) => Some(head.len + n),
                _ => None,
            },
            _ => None,
        }
    }

    /// The daemon is stopping: a long poll answers now, a stream runs to its
    /// session's end (the daemon is killing it), the response in flight is
    /// finished; nothing more is taken.
    pub fn begin_shutdown<S: Service>(&mut self, cx: &mut Cx<'_, S>) -> Step {
        if let State::Streaming { .. } = self.state {
            // Its session is being killed too: the stream delivers the kill
            // and exit events, then ends as any stream does.
            return self.on_ready(cx);
        }
        if let State::Parked { .. } = self.state {
            self.answer_hold(cx, Ask::Expired);
        }
        self.peer_eof = true;
        self.input.clear();
        if self.queued() == 0 {
            return Step::Close;
        }
        self.state = State::Closing;
        self.on_ready(cx)
    }

    /// Between requests, with nothing buffered either way: the socket is
    /// all there is to it, and a new program can serve it as it is.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { .. })
            && self.input.is_empty()
            && self.queued() == 0
            && !self.peer_eof
            && !self.stalled
            && self.head_started.is_none()
            && !self.keep_until_exit
    }

    pub fn on_ready<S: Service>(&mut self, cx: &mut Cx<'_, S>) -> Step {
        let mut reads = 0;
        // A read on a connection not yet registered came up short: whether
        // the client's EOF is queued behind it, only one more read can tell.
        let mut probe_eof = false;
        let step = loop {
            if self.queued() > 0 && self.writable {
                if let Err(_e) = self.flush(cx.now) {
                    break Step::Close;
                }
            }
            if self.queued() == 0 {
                if matches!(self.state, State::Closing) {
                    if self.peer_eof {
                        break Step::Close;
                    }
                    // The client said this was its last request and the
                    // socket held nothing more when last read: a plain
                    // close delivers our answer, then EOF.
                    if self.client_closes && self.input.is_empty() && !self.readable {
                        break Step::Close;
                    }
                    // Best effort: an error here means the peer is gone too.
                    let _ = self.sock.shutdown_write();
                    self.state = State::Draining {
                        until: cx.now + cx.limits.linger,
                        discarded: 0,
                    };
                }
                if self.peer_eof {
                    break Step::Close;
                }
            }
            if let State::Draining { discarded, .. } = &mut self.state {
                if !self.readable {
                    break Step::Wait;
                }
                let mut sink = [0u8; 4096];
                match self.sock.read(&mut sink) {
                    Ok(0) => break Step::Close,
                    Ok(n) => {
                        *discarded += n;
                        if *discarded > MAX_LINGER_BYTES {
                            break Step::Close;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break Step::Close,
                }
                continue;
            }
            if self.stalled && self.queued() < cx.limits.max_queued_bytes {
                self.process(cx);
                continue;
            }
            if let State::Streaming { .. } = self.state {
                if self.queued() < STREAM_BUDGET_BYTES / 2 && self.writable {
                    let before = self.queued();
                    self.fill(cx);
                    if self.queued() > before || matches!(self.state, State::Closing) {
                        continue;
                    }
                }
                // The client has nothing more to say; a read only tells
                // whether it went away.
                if !self.readable {
                    break Step::Wait;
                }
                let mut sink = [0u8; 512];
                match self.sock.read(&mut sink) {
                    Ok(0) => break Step::Close,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break Step::Close,
                }
                continue;
            }
            let accepting = matches!(self.state, State::Head { .. } | State::Body { .. });
            if probe_eof && accepting && self.queued() == 0 && self.input.is_empty() {
                // Answered, on a connection served before it was registered:
                // a client that half-closed after its request (one request
                // per connection) has its EOF queued already, and this read
                // finds it, sparing the registration and the wake-up that
                // would report it. A keep-alive client costs one `WouldBlock`.
                probe_eof = false;
                self.readable = true;
            }
            if !self.readable || self.peer_eof || self.stalled || !accepting {
                break Step::Wait;
            }
            if reads == READS_PER_TURN {
                break Step::Yield;
            }
            reads += 1;
            let cap = (FREE_BYTES + cx.budget).saturating_sub(self.output.capacity());
            let want = self.body_want();
            let Some(spare) = self.input.spare(cx.pools, want, cap) else {
                // Every connection together holds what the daemon allows:
                // this request is turned away rather than buffered.
                self.fail(cx, crate::http::Error::BUSY);
                continue;
            };
            let room = spare.len();
            match self.sock.read(spare) {
                Ok(0) => {
                    self.peer_eof = true;
                    // An unfinished request can never complete now.
                    if !self.input.is_empty() || matches!(self.state, State::Body { .. }) {
                        // (Complete requests are never left behind here: only
                        // a stalled connection keeps them, and it doesn't read.)
                        self.input.clear();
                        self.state = State::Closing;
                    }
                }
                Ok(n) => {
                    // A short read took all the socket had; edge-triggered
                    // readiness reports whatever arrives next, so the read
                    // that would only say `WouldBlock` is skipped.
                    // Not when the peer's FIN was already reported: that
                    // edge is spent, and only a read can see the EOF.
                    if n < room && !self.read_closed {
                        self.readable = false;
                        probe_eof = self.polled == Polled::No;
                    }
                    self.input.end += n;
                    self.last_active = cx.now;
                    self.process(cx);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Step::Close,
            }
        };
        if step != Step::Close {
            self.release_idle(cx.pools);
        }
        step
    }

    /// Writes queued output until done or `WouldBlock`.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while self.written < self.output.len() {
            match self.sock.write(&self.output[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.last_active = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(())
    }

    /// A closed connection's buffers go back to the pools: the next
    /// connection (one per request is how clients call) reads into memory
    /// already allocated and initialized.
    /// Gives the buffers back to the pools; returns the socket.
    pub fn recycle(self, pools: &mut Pools) -> T {
        if !self.input.data.is_empty() {
            pools.give_input(self.input.data);
        }
        if self.output.capacity() > 0 {
            pools.give_output(self.output);
        }
        self.sock
    }

    /// Returns empty buffers to the pools.
    fn release_idle(&mut self, pools: &mut Pools) {
        if self.input.is_empty() && !self.input.data.is_empty() {
            pools.give_input(std::mem::take(&mut self.input.data));
            self.input.clear();
        }
        if self.queued() == 0 && self.output.capacity() > 0 {
            pools.give_output(std::mem::take(&mut self.output));
            self.written = 0;
        }
    }

    /// Frames and dispatches every complete request in the input, in order,
    /// until the input runs out or the output cap is reached.
    fn process<S: Service>(&mut self, cx: &mut Cx<'_, S>) {
        self.stalled = false;
        loop {
            if self.queued() >= cx.limits.max_queued_bytes {
                self.stalled = !self.input.is_empty();
                return;
            }
            match &mut self.state {
                State::Head { scanned } => {
                    if self.input.is_empty() {
                        self.head_started = None;
                        return;
                    }
                    self.head_started.get_or_insert(cx.now);
                    match parse::parse_head(self.input.filled(), *scanned, &cx.limits.http) {
                        Ok(HeadStatus::Partial(at)) => {
                            *scanned = at;
                            return;
                        }
                        Err(err) => return self.fail(cx, err),
                        Ok(HeadStatus::Complete(head)) => {
                            if head.framing == Framing::None {
                                self.head_started = None;
                                let len = head.len;
                                self.respond(cx, &head, len..len);
                                self.input.consume(len);
                            } else {
                                if head.expect_continue && self.input.filled().len() == head.len {
                                    self.output_buf(cx.pools)
                                        .extend_from_slice(encode::CONTINUE);
                                }
                                self.state = State::Body {
                                    head,
                                    chunked: Chunked::default(),
                                };
                            }
                        }
                    }
                }
                State::Body { head, chunked } => {
                    let limits = &cx.limits.http;
                    let (body, end) = match head.framing {
                        Framing::Length(n) => {
                            if self.input.filled().len() < head.len + n {
                                return;
                            }
                            (head.len..head.len + n, head.len + n)
                        }
                        _ => match chunked.decode(
                            self.input.filled_mut(),
                            head.len,
                            limits.max_body_bytes,
                            limits.max_head_bytes,
                        ) {
                            Err(err) => return self.fail(cx, err),
                            Ok(ChunkStatus::Partial { end }) => {
                                self.input.truncate(end);
                                return;
                            }
                            Ok(ChunkStatus::Done { len, end }) => (head.len..head.len + len, end),
                        },
                    };
                    let head = head.clone();
                    self.head_started = None;
                    self.respond(cx, &head, body);
                    self.input.consume(end);
                    if matches!(self.state, State::Body { .. }) {
                        self.state = State::Head { scanned: 0 };
                    }
                }
                State::Closing
                | State::Draining { .. }
                | State::Parked { .. }
                | State::Streaming { .. } => return,
            }
            if matches!(self.state, State::Head { .. }) {
                self.state = State::Head { scanned: 0 };
            }
        }
    }

    /// The output buffer, to append to.
    fn output_buf(&mut self, pools: &mut Pools) -> &mut Vec<u8> {
        if self.output.capacity() == 0 {
            self.output = pools.take_output();
        }
        self.compact_output();
        &mut self.output
    }

    /// Drops the bytes already written from the front of the output. A
    /// reader that always leaves some bytes unread must not make the buffer
    /// keep everything it took. Moving only when the written part is the
    /// larger one keeps the copying amortized.
    fn compact_output(&mut self) {
        if self.written > 0 && self.written >= self.queued() {
            self.output.drain(..self.written);
            self.written = 0;
        }
    }

    fn respond<S: Service>(
        &mut self,
        cx: &mut Cx<'_, S>,
        head: &Head,
        body: std::ops::Range<usize>,
    ) {
        let buf = self.input.filled();
        let req = Request {
            method: head.method,
            path: &buf[head.path.clone()],
            query: &buf[head.query.clone()],
            last_event_id: head.last_event_id.clone().map(|r| &buf[r]),
            body: &buf[body],
            host: head.host.clone().map(|r| &buf[r]),
            cookie: head.cookie.clone().map(|r| &buf[r]),
            origin: head.origin.clone().map(|r| &buf[r]),
            web: self.web,
        };
        cx.body.clear();
        let reply = cx.service.call(&req, cx.body);
        let persist = if !head.keep_alive {
            Persist::Close
        } else if head.minor == 0 {
            Persist::KeepAlive
        } else {
            Persist::Default
        };
        let head_only = head.method == Method::Head;
        match reply.hold {
            Some(hold)
                if matches!(
                    hold.kind,
                    HoldKind::LongPoll | HoldKind::Wait | HoldKind::Step
                ) =>
            {
                self.state = State::Parked {
                    hold,
                    persist,
                    head_only,
                };
            }
            Some(hold) => {
                let head = if hold.kind == HoldKind::Cast {
                    encode::CAST_HEAD
                } else {
                    encode::SSE_HEAD
                };
                let mut extra = Vec::new();
                self.head_extra(cx, &mut extra);
                encode::canned_with(self.output_buf(cx.pools), head, &extra);
                if head_only {
                    // No body: whatever the service keeps for it goes.
                    cx.service.release(&hold);
                    self.state = State::Closing;
                } else {
                    self.state = State::Streaming {
                        hold,
                        heartbeat_at: cx.now + HEARTBEAT,
                        refill_at: None,
                    };
                    self.fill(cx);
                }
            }
            None => {
                let safe = matches!(head.method, Method::Get | Method::Head);
                self.write_reply(cx, reply, persist, head_only, safe)
            }
        }
    }

    /// Queues a complete response whose body the service wrote to `cx.body`.
    /// When queueing it would take this connection past what the shared
    /// budget leaves it, the answer to a `safe` request (one that changed
    /// nothing) becomes a 503 to retry; any other is queued regardless,
    /// since what it did is done and its answer is small.
    fn write_reply<S: Service>(
        &mut self,
        cx: &mut Cx<'_, S>,
        mut reply: Reply,
        persist: Persist,
        head_only: bool,
        safe: bool,
    ) {
        const MAX_HEAD: usize = 512;
        self.compact_output();
        let needed = self.output.len() + MAX_HEAD + cx.body.len();
        if safe
            && !head_only
            && needed > self.output.capacity()
            && needed + self.input.data.len() > FREE_BYTES + cx.budget
        {
            cx.body.clear();
            reply = cx.service.framing_error(crate::http::Error::BUSY, cx.body);
        }
        let mut extra = Vec::new();
        self.head_extra(cx, &mut extra);
        let out = self.output_buf(cx.pools);
        encode::head(
            out,
            reply.status,
            reply.content_type,
            cx.body.len(),
            persist,
            reply.allow,
            reply.seq,
            &extra,
        );
        if !head_only {
            self.queue_body(cx.body, cx.now);
        }
        self.keep_until_exit |= reply.until_exit;
        if persist == Persist::Close {
            self.state = State::Closing;
            self.client_closes = true;
        }
    }

    /// Queues an answer's body after its head. A large body behind nothing
    /// else but its head is sent at once with the head (one `writev`)
    /// instead of being copied into the output first; what the socket does
    /// not take is copied (an error, or `WouldBlock`, is met again by
    /// `flush`, which handles it).
    fn queue_body(&mut self, body: &[u8], now: Instant) {
        let head = self.queued();
        if body.len() < DIRECT_BODY_BYTES || !self.writable || head != self.output.len() {
            self.output.extend_from_slice(body);
            return;
        }
        let bufs = [io::IoSlice::new(&self.output), io::IoSlice::new(body)];
        match self.sock.write_vectored(&bufs) {
            Ok(n) if n >= head => {
                self.last_active = now;
                self.output.clear();
                self.written = 0;
                self.output.extend_from_slice(&body[n - head..]);
            }
            Ok(n) => {
                self.last_active = now;
                self.written = n;
                self.output.extend_from_slice(body);
            }
            Err(_) => self.output.extend_from_slice(body),
        }
    }

    /// Answers a framing error and closes: the stream's framing is lost.
    fn fail<S: Service>(&mut self, cx: &mut Cx<'_, S>, err: crate::http::Error) {
        cx.body.clear();
        let reply = cx.service.framing_error(err, cx.body);
        let mut extra = Vec::new();
        self.head_extra(cx, &mut extra);
        let out = self.output_buf(cx.pools);
        encode::head(
            out,
            reply.status,
            reply.content_type,
            cx.body.len(),
            Persist::Close,
            None,
            None,
            &extra,
        );
        out.extend_from_slice(cx.body);
        self.input.clear();
        self.head_started = None;
        self.state = State::Closing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Error, Reply};

    /// A socket fed from a script of reads; writes are collected.
    struct Script {
        reads: std::collections::VecDeque<Vec<u8>>,
        eof: bool,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.front_mut() {
                Some(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    chunk.drain(..n);
                    if chunk.is_empty() {
                        self.reads.pop_front();
                    }
                    Ok(n)
                }
                None if self.eof => Ok(0),
                None => Err(ErrorKind::WouldBlock.into()),
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Script {
        fn shutdown_write(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Answers every request with `<method> <path>?<query> <body>`.
    struct Echo;

    impl Service for Echo {
        fn call(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply {
            body.extend_from_slice(format!("{:?} ", req.method).as_bytes());
            body.extend_from_slice(req.path);
            body.push(b'?');
            body.extend_from_slice(req.query);
            body.push(b' ');
            body.extend_from_slice(req.body);
            if req.path == b"/big" {
                body.resize(300 * 1024, b'.');
            }
            Reply::new(200)
        }
        fn framing_error(&mut self, err: Error, body: &mut Vec<u8>) -> Reply {
            body.extend_from_slice(err.message.as_bytes());
            Reply::new(err.status)
        }
    }

    fn limits() -> ConnLimits {
        crate::config::Limits::default().conn()
    }

    /// Runs a connection over `reads` (then EOF) and returns what it wrote.
    fn run(reads: Vec<Vec<u8>>) -> Vec<u8> {
        run_with_budget(reads, limits().max_buffered_bytes)
    }

    /// `run`, with `budget` bytes past `FREE_BYTES` left to the connection.
    fn run_with_budget(reads: Vec<Vec<u8>>, budget: usize) -> Vec<u8> {
        let now = Instant::now();
        let limits = limits();
        let mut pools = Pools::default();
        let mut body = Vec::new();
        let mut service = Echo;
        let mut conn = Conn::new(
            Script {
                reads: reads.into(),
                eof: true,
                written: Vec::new(),
            },
            now,
        );
        conn.readable = true;
        conn.writable = true;
        for _ in 0..1000 {
            let mut cx = Cx {
                service: &mut service,
                pools: &mut pools,
                limits: &limits,
                body: &mut body,
                now,
                budget,
            };
            match conn.on_ready(&mut cx) {
                Step::Yield => continue,
                Step::Wait => {
                    // Draining waits for more input: there is none.
                    conn.readable = true;
                    if matches!(conn.state, State::Draining { .. }) && conn.sock.reads.is_empty() {
                        break;
                    }
                }
                Step::Close => break,
            }
        }
        conn.sock.written
    }

    const STREAM: &[u8] = b"GET /a?x=1 HTTP/1.1\r\n\r\n\
        POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nT: 1\r\n\r\n\
        POST /d HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok\
        HEAD /e HTTP/1.1\r\n\r\n\
        GET /f HTTP/1.1\r\nConnection: close\r\n\r\n\
        GET /never HTTP/1.1\r\n\r\n";

    #[test]
    fn pipelined_stream() {
        let out = String::from_utf8(run(vec![STREAM.to_vec()])).unwrap();
        let bodies: Vec<&str> = out
            .split("\r\n\r\n")
            .skip(1)
            .map(|s| s.split("HTTP/1.1").next().unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                "Get /a?x=1 ",
                "Post /b? hello",
                "Post /c? abcde",
                "Post /d? ok",
                "",
                "Get /f? "
            ]
        );
        assert!(out.contains("Connection: close"));
        // The Expect's body arrived with the head: no 100 Continue.
        assert!(!out.contains("100 Continue"));
        assert!(!out.contains("never"));
    }

    /// Every split of the stream into two reads answers exactly as one read.
    #[test]
    fn every_split_point() {
        let whole = run(vec![STREAM.to_vec()]);
        for at in 1..STREAM.len() {
            let out = run(vec![STREAM[..at].to_vec(), STREAM[at..].to_vec()]);
            // A split inside the Expect request's head sends 100 Continue first.
            let out = String::from_utf8(out)
                .unwrap()
                .replace("HTTP/1.1 100 Continue\r\n\r\n", "");
            assert_eq!(out.as_bytes(), &whole[..], "split at {at}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let whole = run(vec![STREAM.to_vec()]);
        let out = run(STREAM.iter().map(|&b| vec![b]).collect());
        let out = String::from_utf8(out)
            .unwrap()
            .replace("HTTP/1.1 100 Continue\r\n\r\n", "");
        assert_eq!(out.as_bytes(), &whole[..]);
    }

    #[test]
    fn framing_error_closes_after_answer() {
        let out = run(vec![
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ]);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close"));
        assert_eq!(out.matches("HTTP/1.1").count(), 1);
    }

    #[test]
    fn idle_connection_holds_no_buffers() {
        let (step, conn) = one_turn(b"GET / HTTP/1.1\r\n\r\n", false, Polled::No);
        assert_eq!(step, Step::Wait);
        assert!(conn.sock.written.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(conn.buffer_bytes(), 0);
        assert_eq!(
            conn.deadline(&limits()),
            conn.last_active + limits().idle_timeout
        );
    }

    /// One `on_ready` of a connection that reads `input`, then EOF or
    /// `WouldBlock`, as registered `polled`.
    fn one_turn(input: &[u8], eof: bool, polled: Polled) -> (Step, Conn<Script>) {
        let now = Instant::now();
        let limits = limits();
        let mut pools = Pools::default();
        let mut body = Vec::new();
        let mut conn = Conn::new(
            Script {
                reads: vec![input.to_vec()].into(),
                eof,
                written: Vec::new(),
            },
            now,
        );
        conn.readable = true;
        conn.writable = true;
        conn.polled = polled;
        let mut cx = Cx {
            service: &mut Echo,
            pools: &mut pools,
            limits: &limits,
            body: &mut body,
            now,
            budget: limits.max_buffered_bytes,
        };
        (conn.on_ready(&mut cx), conn)
    }

    #[test]
    fn a_fresh_connection_sees_a_queued_eof_after_its_answer() {
        // Half-closed and not yet registered: closed at once. Keep-alive:
        // waits. Registered: the poller reports the EOF, no extra read.
        let cases = [
            (true, Polled::No, Step::Close),
            (false, Polled::No, Step::Wait),
            (true, Polled::Read, Step::Wait),
        ];
        for (eof, polled, want) in cases {
            let (step, conn) = one_turn(b"GET / HTTP/1.1\r\n\r\n", eof, polled);
            assert_eq!(step, want, "eof {eof}, {polled:?}");
            assert!(conn.sock.written.starts_with(b"HTTP/1.1 200 OK"));
        }
    }

    fn status_lines(out: &[u8]) -> Vec<String> {
        // Bodies are not CRLF-terminated: find each status line anywhere.
        let text = String::from_utf8_lossy(out);
        text.match_indices("HTTP/1.1 ")
            .map(|(at, _)| {
                let line = &text[at..];
                line[..line.find("\r\n").unwrap_or(line.len())].to_owned()
            })
            .collect()
    }

    #[test]
    fn the_shared_budget_turns_away_big_bodies_and_safe_big_answers() {
        let big_body = |n: usize| {
            let mut r = format!("POST /b HTTP/1.1\r\nContent-Length: {n}\r\n\r\n").into_bytes();
            r.resize(r.len() + n, b'x');
            r
        };
        // Within the free allowance, no budget is needed.
        let out = run_with_budget(vec![big_body(64 * 1024)], 0);
        assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"]);
        // Past it, with none left: 503, and the connection closes.
        let out = run_with_budget(
            vec![big_body(FREE_BYTES), b"GET /a HTTP/1.1\r\n\r\n".to_vec()],
            0,
        );
        assert_eq!(status_lines(&out), ["HTTP/1.1 503 Service Unavailable"]);
        // With budget left, the same request is served.
        let out = run_with_budget(vec![big_body(FREE_BYTES)], FREE_BYTES);
        assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"]);

        // A big answer to a GET becomes a 503 to retry, on a connection
        // that stays open; a POST's is sent anyway (what it did is done).
        let reqs = b"GET /big HTTP/1.1\r\n\r\nPOST /big HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /a HTTP/1.1\r\n\r\n";
        let out = run_with_budget(vec![reqs.to_vec()], 0);
        assert_eq!(
            status_lines(&out),
            [
                "HTTP/1.1 503 Service Unavailable",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK"
            ]
        );
        let out = run_with_budget(vec![reqs.to_vec()], 1024 * 1024);
        assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"; 3]);
    }

    #[test]
    fn a_known_length_body_gets_a_buffer_of_its_size() {
        let now = Instant::now();
        let limits = limits();
        let mut pools = Pools::default();
        let mut body = Vec::new();
        let head = b"POST /b HTTP/1.1\r\nContent-Length: 500000\r\n\r\n".to_vec();
        let head_len = head.len();
        let mut conn = Conn::new(
            Script {
                reads: vec![head, vec![b'x'; 499_999]].into(),
                eof: false,
                written: Vec::new(),
            },
            now,
        );
        conn.readable = true;
        conn.writable = true;
        loop {
            let mut cx = Cx {
                service: &mut Echo,
                pools: &mut pools,
                limits: &limits,
                body: &mut body,
                now,
                budget: limits.max_buffered_bytes,
            };
            conn.on_ready(&mut cx);
            if conn.sock.reads.is_empty() {
                break;
            }
            conn.readable = true;
        }
        // Not doubled past it, as growing by reads would.
        assert_eq!(conn.input.data.len(), head_len + 500_000);
        assert_eq!(conn.bytes_over_free(), head_len + 500_000 - FREE_BYTES);
    }

    /// A socket whose reader takes at most `room` bytes per write call,
    /// then is full until the test says it drained.
    struct SlowReader {
        room: usize,
        full: bool,
        taken: usize,
        /// Requests it keeps sending, one per read, for ever.
        sends: Option<&'static [u8]>,
    }

    impl Read for SlowReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.sends {
                Some(req) => {
                    buf[..req.len()].copy_from_slice(req);
                    Ok(req.len())
                }
                None => Err(ErrorKind::WouldBlock.into()),
            }
        }
    }

    impl Write for SlowReader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.full {
                return Err(ErrorKind::WouldBlock.into());
            }
            self.full = true;
            let n = buf.len().min(self.room);
            self.taken += n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for SlowReader {
        fn shutdown_write(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stream that always has more to say.
    struct Firehose;

    impl Service for Firehose {
        fn call(&mut self, _: &Request<'_>, _: &mut Vec<u8>) -> Reply {
            Reply {
                hold: Some(Hold {
                    kind: HoldKind::Stream,
                    topic: 0,
                    tag: 0,
                    cursor: 0,
                    state: crate::http::HoldState::None,
                    until: None,
                }),
                ..Reply::new(200)
            }
        }
        fn framing_error(&mut self, _: Error, _: &mut Vec<u8>) -> Reply {
            Reply::new(400)
        }
        fn stream(&mut self, _: &mut Hold, out: &mut Vec<u8>, budget: usize) -> Fill {
            out.resize(out.len() + budget, b'.');
            Fill::Full
        }
    }

    #[test]
    fn a_slow_reader_keeps_a_stream_buffer_bounded() {
        let now = Instant::now();
        let limits = limits();
        let mut pools = Pools::default();
        let mut body = Vec::new();
        let mut conn = Conn::new(
            SlowReader {
                room: 20_000,
                full: false,
                taken: 0,
                sends: None,
            },
            now,
        );
        conn.input.data = b"GET /s HTTP/1.1\r\n\r\n".to_vec();
        conn.input.end = conn.input.data.len();
        conn.writable = true;
        let mut cx = Cx {
            service: &mut Firehose,
            pools: &mut pools,
            limits: &limits,
            body: &mut body,
            now,
            budget: limits.max_buffered_bytes,
        };
        conn.process(&mut cx);
        let mut most = 0;
        // The reader drains a little at a time, never all that is queued,
        // while new events keep waking the stream.
        for _ in 0..1000 {
            conn.sock.full = false;
            conn.writable = true;
            conn.on_ready(&mut cx);
            conn.wake(&mut cx);
            most = most.max(conn.output.capacity());
        }
        assert!(conn.sock.taken >= 1000 * 20_000);
        assert!(most <= 2 * STREAM_BUDGET_BYTES, "grew to {most} bytes");
    }

    #[test]
    fn a_slow_reader_of_pipelined_answers_keeps_the_buffer_bounded() {
        let now = Instant::now();
        let limits = limits();
        let mut pools = Pools::default();
        let mut body = Vec::new();
        // Sends a request a turn and reads 50 bytes, less than an answer.
        let mut conn = Conn::new(
            SlowReader {
                room: 50,
                full: false,
                taken: 0,
                sends: Some(b"GET /a HTTP/1.1\r\n\r\n"),
            },
            now,
        );
        let mut cx = Cx {
            service: &mut Echo,
            pools: &mut pools,
            limits: &limits,
            body: &mut body,
            now,
            budget: limits.max_buffered_bytes,
        };
        let mut most = 0;
        for _ in 0..40_000 {
            conn.sock.full = false;
            conn.writable = true;
            conn.readable = true;
            conn.on_ready(&mut cx);
            most = most.max(conn.output.capacity());
        }
        assert!(conn.sock.taken >= 39_000 * 50);
        // Without compaction it keeps all 2 MB it wrote.
        assert!(most <= 4 * limits.max_queued_bytes, "grew to {most} bytes");
    }
}
