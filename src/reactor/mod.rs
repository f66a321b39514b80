//! The event loop: one `mio::Poll` over the listener, the signal pipe and
//! every connection, with timers folded into the poll timeout.
//!
//! This is the only module that calls `poll`, `register` or `deregister`.
//! It knows nothing of routes or JSON: connections run a `Service`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::api::Api;
use crate::config::Limits;
use crate::conn::{Conn, ConnLimits, Cx, Polled, Pools, Sock, Step};
use crate::http::Service;

mod lifecycle;
use lifecycle::Signals;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// The writer thread finished a batch (`Sessions::on_writer`).
const WRITER: Token = Token(2);
/// The supervisor's link (`Sessions::on_supervisor`).
const SUPERVISOR: Token = Token(3);
/// The loopback web view's listener, while it is on.
const WEB_LISTENER: Token = Token(4);
/// Slab-keyed sources carry a tag in the token's top bits.
const TAG_SHIFT: u32 = usize::BITS - 4;
const TAG_CONN: usize = 1;
const TAG_PTY: usize = 2;

/// Connections accepted per loop turn before other sources get a go.
const ACCEPTS_PER_TURN: usize = 128;
/// Readiness events taken per `poll`.
const EVENTS_CAPACITY: usize = 256;
/// After this long without a single readiness event, the daemon gives back
/// what serving faulted in (code pages, free heap), once, on one timer.
const QUIET_RELEASE: Duration = Duration::from_secs(5);
/// The response-body scratch buffer is freed past this size once quiet.
const MAX_IDLE_SCRATCH_BYTES: usize = 64 * 1024;

/// What a token stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Listener,
    Signals,
    Writer,
    Supervisor,
    WebListener,
    Conn(usize),
    Pty(usize),
}

pub fn conn_token(key: usize) -> Token {
    Token((TAG_CONN << TAG_SHIFT) | key)
}

pub fn pty_token(key: usize) -> Token {
    Token((TAG_PTY << TAG_SHIFT) | key)
}

pub fn decode(token: Token) -> Option<Source> {
    match token {
        LISTENER => Some(Source::Listener),
        SIGNALS => Some(Source::Signals),
        WRITER => Some(Source::Writer),
        SUPERVISOR => Some(Source::Supervisor),
        WEB_LISTENER => Some(Source::WebListener),
        Token(t) => match t >> TAG_SHIFT {
            TAG_CONN => Some(Source::Conn(t & ((1 << TAG_SHIFT) - 1))),
            TAG_PTY => Some(Source::Pty(t & ((1 << TAG_SHIFT) - 1))),
            _ => None,
        },
    }
}

pub struct Reactor {
    poll: Poll,
    listener: Option<UnixListener>,
    socket_path: std::path::PathBuf,
    signals: Signals,
    conns: Slab<Conn<Sock>>,
    /// The loopback web view's listener, while it is on (`api::web`).
    web: Option<mio::net::TcpListener>,
    web_accept_pending: bool,
    /// `(deadline, connection key)`; each connection has at most one entry,
    /// recorded in `Conn::armed`.
    timers: BTreeSet<(Instant, usize)>,
    /// Connections that yielded with work left.
    ready: VecDeque<usize>,
    accept_pending: bool,
    /// An accept failed for want of descriptors or memory: retry when a
    /// connection closes.
    accept_deferred: bool,
    pools: Pools,
    /// The clean read-only file mappings a quiet turn gives back.
    code_pages: crate::sys::CodePages,
    body: Vec<u8>,
    pub api: Api,
    conn_limits: ConnLimits,
    /// The sum of every connection's `bytes_over_free`, kept up to date
    /// after each connection's turn and at its close.
    buffered: usize,
    max_connections: usize,
    shutdown_grace: Duration,
    /// The canned answer at the connection limit.
    busy_response: Vec<u8>,
    uid: u32,
    /// Set once stopping: the deadline for in-flight responses.
    stopping: Option<Instant>,
    /// Held connections by the topic (session key) they wait on.
    waiters: HashMap<usize, Vec<usize>>,
    /// When something last happened (a readiness event), if the memory it
    /// used has not been given back since (`QUIET_RELEASE`).
    busy_since_release: Option<Instant>,
    /// Sockets of clients that asked the daemon to stop, kept open (out of
    /// the poller) until the process exits: their EOF says it is gone.
    pub kept: Vec<UnixStream>,
    /// A live restart is under way: the deadline for connections to finish
    /// what they are doing.
    restarting: Option<Instant>,
    /// Idle connections set aside for the next program (out of the poller).
    handed: Vec<UnixStream>,
}

/// Why `run` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon stops.
    Stop,
    /// The daemon replaces its program (`handover`): every connection is
    /// handed over (`take_handed`) or closed.
    Restart,
}

/// Why a connection is being run.
#[derive(Clone, Copy)]
enum Turn {
    Ready,
    Wake,
    Deadline,
    Shutdown,
    Restart,
}

fn unlist(waiters: &mut HashMap<usize, Vec<usize>>, topic: usize, key: usize) {
    if let Some(keys) = waiters.get_mut(&topic) {
        keys.retain(|&k| k != key);
        if keys.is_empty() {
            waiters.remove(&topic);
        }
    }
}

impl Reactor {
    pub fn new(
        mut listener: UnixListener,
        socket_path: std::path::PathBuf,
        limits: &Limits,
        mut api: Api,
        sync_delay: Duration,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WRITER)?;
        api.sessions.start_writer(
            move || {
                let _ = waker.wake();
            },
            sync_delay,
        )?;
        let mut signals = Signals::install()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut signals.pipe, SIGNALS, Interest::READABLE)?;
        if let Some(fd) = api.sessions.link_fd() {
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                SUPERVISOR,
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(Reactor {
            poll,
            listener: Some(listener),
            socket_path,
            signals,
            conns: Slab::new(),
            web: None,
            web_accept_pending: false,
            timers: BTreeSet::new(),
            ready: VecDeque::new(),
            accept_pending: false,
            accept_deferred: false,
            pools: Pools::default(),
            // Found once, before the loop runs: reading smaps is a large
            // read, and the daemon's file mappings do not change after
            // start (it loads no library later).
            code_pages: crate::sys::CodePages::find(),
            body: Vec::new(),
            api,
            conn_limits: limits.conn(),
            buffered: 0,
            max_connections: limits.max_connections,
            shutdown_grace: limits.shutdown_grace,
            busy_response: crate::api::busy_response(limits.max_connections),
            uid: nix::unistd::geteuid().as_raw(),
            stopping: None,
            waiters: HashMap::new(),
            // Start-up itself is activity: its pages go back once it is quiet.
            busy_since_release: Some(Instant::now()),
            kept: Vec::new(),
            restarting: None,
            handed: Vec::new(),
        })
    }

    /// Runs until a stop signal and the drain that follows it, or until a
    /// restart has set every connection aside.
    pub fn run(&mut self) -> io::Result<Outcome> {
        // From here until `run` returns (or unwinds), this thread must not
        // wait on a disk (`on_loop::assert_off_loop`).
        struct OnLoop;
        impl Drop for OnLoop {
            fn drop(&mut self) {
                crate::on_loop::leave_loop();
            }
        }
        crate::on_loop::enter_loop();
        let _on_loop = OnLoop;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut release = false;
        loop {
            let timeout = self.timeout(Instant::now());
            if std::mem::take(&mut release) {
                // Last thing before sleeping, so that the rest of the turn
                // does not fault the pages straight back.
                // Inlined here, so that the code that runs after the
                // `madvise` calls is this loop's own (one 64 KiB window).
                self.release_memory();
                self.code_pages.release();
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            if std::mem::take(&mut self.api.panic_in_loop) {
                panic!("a test asked for a panic in the loop");
            }
            self.api.screens.new_turn();
            if !events.is_empty() {
                self.busy_since_release = Some(now);
            } else if self
                .busy_since_release
                .is_some_and(|t| now >= t + QUIET_RELEASE)
            {
                // Quiet since: give back what serving touched, at the end
                // of this turn. No timer is set again until something
                // happens.
                self.busy_since_release = None;
                release = true;
                // Nobody is asking for screens either.
                self.api.screens.clear(&mut self.api.sessions);
            }
            for event in events.iter() {
                match decode(event.token()) {
                    Some(Source::Listener) => self.accept_pending = true,
                    Some(Source::WebListener) => self.web_accept_pending = true,
                    Some(Source::Signals) => self.on_signals(now),
                    Some(Source::Writer) => self.api.sessions.on_writer(),
                    Some(Source::Supervisor) => self.api.sessions.on_supervisor(now),
                    Some(Source::Conn(key)) => {
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue;
                        };
                        let failed = event.is_error();
                        conn.readable |= event.is_readable() || event.is_read_closed() || failed;
                        conn.writable |= event.is_writable() || event.is_write_closed() || failed;
                        conn.read_closed |= event.is_read_closed() || failed;
                        self.drive(key, now);
                    }
                    Some(Source::Pty(key)) => {
                        let failed = event.is_error();
                        let readable = event.is_readable() || event.is_read_closed() || failed;
                        let writable = event.is_writable() || failed;
                        self.api.sessions.on_pty(key, readable, writable);
                    }
                    None => {}
                }
            }
            self.restart_if_checked();
            self.stop_if_requested(now);
            self.api.sessions.on_pending(now);
            self.api.sessions.on_timers(now);
            self.wake_waiters(now);
            for _ in 0..self.ready.len() {
                if let Some(key) = self.ready.pop_front() {
                    if self.conns.contains(key) {
                        self.drive(key, now);
                    }
                }
            }
            self.stop_if_requested(now);
            if self.accept_pending {
                self.accept(now);
            }
            self.web_switch();
            if self.web_accept_pending {
                self.accept_web(now);
            }
            self.fire_timers(now);
            self.register_masters();
            self.wake_waiters(now);
            // Finished sessions nobody holds leave memory until asked for.
            let waiters = &self.waiters;
            self.api.sessions.evict(|key| waiters.contains_key(&key));
            if let Some(deadline) = self.stopping {
                let idle = self.conns.is_empty() && self.api.sessions.live() == 0;
                if idle || now >= deadline {
                    if self.api.sessions.live() > 0 {
                        log::warn!(
                            "exiting with {} session(s) still running",
                            self.api.sessions.live()
                        );
                    }
                    return Ok(Outcome::Stop);
                }
            }
            if let Some(deadline) = self.restarting {
                if self.conns.is_empty() || now >= deadline {
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    if !keys.is_empty() {
                        log::info!(
                            "restarting: {} connection(s) still busy are closed",
                            keys.len()
                        );
                    }
                    for key in keys {
                        self.close(key);
                    }
                    return Ok(Outcome::Restart);
                }
            }
        }
    }

    /// How long `poll` may sleep: until the next deadline, or not at all if
    /// work is queued, or forever when nothing is pending (idle = no wakeups).
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty()
            || self.accept_pending
            || self.web_accept_pending
            || self.api.web.switch_pending()
            || self.api.sessions.has_pending()
            || self.api.stop_requested
            || self.api.restart_requested
        {
            // A stop asked during this turn (perhaps by a connection served
            // at accept, after the turn's last look) acts now, not after the
            // next wake-up.
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.first().map(|&(t, _)| t),
            self.api.sessions.next_deadline(),
            self.stopping,
            self.restarting,
            self.busy_since_release.map(|t| t + QUIET_RELEASE),
        ]
        .into_iter()
        .flatten()
        .min();
        // Round up so that we never wake a hair early and spin.
        next.map(|t| t.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn accept(&mut self, now: Instant) {
        self.accept_pending = self.restarting.is_none() && self.accept_from(false, now);
    }

    /// Accepts the web view's connections, as `accept` does the socket's.
    fn accept_web(&mut self, now: Instant) {
        self.web_accept_pending =
            self.restarting.is_none() && self.stopping.is_none() && self.accept_from(true, now);
    }

    /// Accepts up to `ACCEPTS_PER_TURN` clients of the socket's listener,
    /// or of the web view's (`web`); whether more may be waiting.
    fn accept_from(&mut self, web: bool, now: Instant) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            let got = if web {
                self.web.as_ref().map(|l| {
                    l.accept().map(|(s, _)| {
                        // Small answers and stream frames: not held back.
                        let _ = s.set_nodelay(true);
                        Sock::Tcp(s)
                    })
                })
            } else {
                self.listener
                    .as_ref()
                    .map(|l| l.accept().map(|(s, _)| Sock::Unix(s)))
            };
            match got {
                None => return false,
                Some(Ok(sock)) => self.admit(sock, now),
                Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => return false,
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Some(Err(e)) => {
                    // Out of descriptors or memory: leave the client in the
                    // backlog and retry when a connection closes.
                    log::warn!("accept failed: {e}");
                    self.accept_deferred = true;
                    return false;
                }
            }
        }
        true
    }

    /// Takes up the web listener a handler bound (or closes it).
    fn web_switch(&mut self) {
        let crate::api::web::Switch::To(listener) = self.api.web.take_switch() else {
            return;
        };
        // Closing the descriptor takes it out of the poller.
        self.web = None;
        self.web_accept_pending = false;
        if let Some(mut listener) = listener {
            match self
                .poll
                .registry()
                .register(&mut listener, WEB_LISTENER, Interest::READABLE)
            {
                Ok(()) => {
                    self.web = Some(listener);
                    self.web_accept_pending = true;
                }
                Err(e) => log::error!("cannot watch the web view's listener: {e}"),
            }
        }
    }

    /// Checks the peer, then serves the connection at once, before it is
    /// registered: a client's request usually arrived with its connect, and
    /// a one-request client is then answered and closed without a single
    /// poller call. Only a connection with something left to wait for is
    /// registered (`run_conn`).
    fn admit(&mut self, mut stream: Sock, now: Instant) {
        // The web view's peers are anyone on the machine: its requests are
        // checked one by one instead (`api::web`).
        let web = matches!(stream, Sock::Tcp(_));
        if let Sock::Unix(unix) = &stream {
            match crate::sys::peer_uid(unix) {
                Ok(uid) if uid == self.uid => {}
                _ => {
                    self.api.stats.refused_connections += 1;
                    return;
                }
            }
        }
        if self.conns.len() >= self.max_connections {
            self.api.stats.refused_connections += 1;
            // Best effort: a fresh socket's send buffer takes this at once.
            let _ = stream.write(&self.busy_response);
            return;
        }
        let mut conn = Conn::new(stream, now);
        conn.web = web;
        // A fresh socket can be written; whether it can be read, only a
        // read tells (`WouldBlock` clears this).
        conn.readable = true;
        conn.writable = true;
        let key = self.conns.insert(conn);
        self.api.stats.accepted_connections += 1;
        self.api.stats.open_connections = self.conns.len();
        self.run_conn(key, now, Turn::Ready);
    }

    /// Registers the connection's socket, or widens its interest to
    /// writability once a write would block. Edge-triggered: registering
    /// reports readiness that is already there. False if the poller
    /// refused.
    fn watch(&mut self, key: usize) -> bool {
        let conn = &mut self.conns[key];
        let need = conn.interest_needed();
        let interest = match need {
            Polled::Read => Interest::READABLE,
            _ => Interest::READABLE | Interest::WRITABLE,
        };
        let result = match conn.polled {
            Polled::No => self
                .poll
                .registry()
                .register(&mut conn.sock, conn_token(key), interest),
            Polled::Read if need == Polled::ReadWrite => {
                self.poll
                    .registry()
                    .reregister(&mut conn.sock, conn_token(key), interest)
            }
            _ => return true,
        };
        match result {
            Ok(()) => {
                conn.polled = need;
                true
            }
            Err(e) => {
                log::warn!("cannot register a connection: {e}");
                false
            }
        }
    }

    /// Registers PTY masters opened by handlers since the last turn.
    fn register_masters(&mut self) {
        for key in self.api.sessions.take_new_masters() {
            let Some(fd) = self.api.sessions.master_fd(key) else {
                continue;
            };
            let mut source = mio::unix::SourceFd(&fd);
            if let Err(e) = self.poll.registry().register(
                &mut source,
                pty_token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.api.sessions.unwatchable(key, &e, Instant::now());
            }
        }
    }

    fn drive(&mut self, key: usize, now: Instant) {
        self.run_conn(key, now, Turn::Ready);
    }

    /// Runs one turn of a connection and acts on the outcome: re-queue,
    /// re-arm its timer, keep the wake lists right, or close it.
    fn run_conn(&mut self, key: usize, now: Instant, turn: Turn) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // The budget is shared: what the others hold past their free
        // allowance is not this connection's to take.
        debug_assert!(self.buffered >= conn.bytes_over_free());
        let others = self.buffered.saturating_sub(conn.bytes_over_free());
        let mut cx = Cx {
            service: &mut self.api,
            pools: &mut self.pools,
            limits: &self.conn_limits,
            body: &mut self.body,
            now,
            budget: self.conn_limits.max_buffered_bytes.saturating_sub(others),
        };
        let step = match turn {
            Turn::Ready => conn.on_ready(&mut cx),
            Turn::Wake => conn.wake(&mut cx),
            Turn::Deadline => conn.on_deadline(&mut cx),
            Turn::Shutdown => conn.begin_shutdown(&mut cx),
            Turn::Restart => conn.begin_restart(&mut cx),
        };
        self.buffered = others + conn.bytes_over_free();
        match step {
            Step::Close => return self.close(key),
            Step::Yield => self.ready.push_back(key),
            Step::Wait => {}
        }
        if self.restarting.is_some() && self.conns[key].is_idle() {
            return self.hand_over(key);
        }
        if !self.watch(key) {
            return self.close(key);
        }
        self.relist(key);
        self.arm(key);
    }

    /// Keeps `waiters` in step with what the connection waits on.
    fn relist(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let topic = conn.held_topic();
        if conn.listed == topic {
            return;
        }
        if let Some(old) = conn.listed.take() {
            unlist(&mut self.waiters, old, key);
        }
        if let Some(t) = topic {
            self.waiters.entry(t).or_default().push(key);
            conn.listed = Some(t);
        }
    }

    /// Wakes the connections held on sessions that have new events.
    fn wake_waiters(&mut self, now: Instant) {
        let touched = self.api.sessions.take_touched();
        if !touched.is_empty() {
            // Screen streams watch several sessions each: they look.
            if let Some(keys) = self.waiters.get(&crate::session::SCREENS_TOPIC) {
                for key in keys.clone() {
                    self.run_conn(key, now, Turn::Wake);
                }
            }
        }
        for topic in touched {
            let Some(keys) = self.waiters.get(&topic) else {
                continue;
            };
            for key in keys.clone() {
                self.run_conn(key, now, Turn::Wake);
            }
        }
    }

    /// Keeps the connection's timer entry no later than its deadline. An
    /// entry that is earlier than needed stays: when it fires, the real
    /// deadline is recomputed and re-armed, so busy connections cost no
    /// timer churn.
    fn arm(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let deadline = conn.deadline(&self.conn_limits);
        match conn.armed {
            Some(t) if t <= deadline => {}
            Some(t) => {
                self.timers.remove(&(t, key));
                self.timers.insert((deadline, key));
                conn.armed = Some(deadline);
            }
            None => {
                self.timers.insert((deadline, key));
                conn.armed = Some(deadline);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.armed = None;
            if conn.deadline(&self.conn_limits) <= now {
                // A deadline's work is activity too (a held answer built in
                // steps runs on nothing else): not quiet yet.
                self.busy_since_release = Some(now);
                self.run_conn(key, now, Turn::Deadline);
            } else {
                self.arm(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        let keep = self.conns[key].keep_until_exit;
        let (sock, polled) = self.remove_conn(key);
        if let (true, Sock::Unix(sock)) = (keep, sock) {
            // Out of the poller (its close would wake us for nothing), open
            // until the process exits.
            let sock = self.unpolled(sock, polled);
            self.kept.push(sock);
        }
        // Otherwise no `deregister`: closing the last descriptor of a
        // socket takes it out of the poller (epoll and kqueue alike), and
        // this process holds the only one. Connection sockets are
        // close-on-exec, and harnesses are started by the supervisor, so no
        // child keeps a copy.
    }

    /// Forgets a connection (its timer, its place in the wake lists, its
    /// held request); returns its socket and how it was polled.
    fn remove_conn(&mut self, key: usize) -> (Sock, Polled) {
        let conn = self.conns.remove(key);
        self.buffered = self.buffered.saturating_sub(conn.bytes_over_free());
        if let Some(t) = conn.armed {
            self.timers.remove(&(t, key));
        }
        if let Some(topic) = conn.listed {
            unlist(&mut self.waiters, topic, key);
        }
        if let Some(hold) = conn.parked_hold() {
            self.api.release(&hold);
        }
        let polled = conn.polled;
        let sock = conn.recycle(&mut self.pools);
        self.api.stats.open_connections = self.conns.len();
        if self.listener.is_some() && std::mem::take(&mut self.accept_deferred) {
            // A slot (and a descriptor) is free: retry the deferred accept.
            self.accept_pending = true;
            self.web_accept_pending = self.web.is_some();
        }
        (sock, polled)
    }

    /// After `QUIET_RELEASE` without events: free the buffers kept for the
    /// next connections and give back the heap; returns the code pages for
    /// the caller to give back last.
    fn release_memory(&mut self) {
        self.api.sessions.forget_recent();
        let waiters = &self.waiters;
        self.api.sessions.evict(|key| waiters.contains_key(&key));
        self.pools.clear();
        if self.body.capacity() > MAX_IDLE_SCRATCH_BYTES {
            self.body = Vec::new();
        }
        crate::sys::trim_heap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(decode(LISTENER), Some(Source::Listener));
        assert_eq!(decode(SIGNALS), Some(Source::Signals));
        assert_eq!(decode(WRITER), Some(Source::Writer));
        assert_eq!(decode(SUPERVISOR), Some(Source::Supervisor));
        assert_eq!(decode(WEB_LISTENER), Some(Source::WebListener));
        for key in [0, 1, 4095, (1 << TAG_SHIFT) - 1] {
            assert_eq!(decode(conn_token(key)), Some(Source::Conn(key)));
            assert_eq!(decode(pty_token(key)), Some(Source::Pty(key)));
        }
        assert_eq!(decode(Token(7 << TAG_SHIFT)), None);
    }
}
