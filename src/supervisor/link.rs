//! The serving process's end of the supervisor's socket: ask for a harness
//! (the answer comes later, as everything else does: `heard`), hear of
//! harnesses that ended,
//! let go of sessions that are over, and, at start, learn what the
//! supervisor holds.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::proto::{Channel, Msg, SpawnRequest, PROTOCOL};

/// A live session a new server takes over: from the supervisor (after
/// the previous server died) or from the previous program (a live
/// restart, which also carries what only its memory held).
#[derive(Debug)]
pub struct HeldSession {
    pub id: String,
    /// The harness's pid (its process group).
    pub pid: i32,
    /// Its raw wait status, if the harness ended.
    pub status: Option<i32>,
    pub master: OwnedFd,
    /// None once the previous server let go of it (harness reaped, its
    /// output read).
    pub slave: Option<OwnedFd>,
    pub carried: Option<crate::handover::Live>,
}

/// What the supervisor said.
pub enum Heard {
    /// A harness it was asked for runs (`id` is its session's).
    Spawned { id: String, started: Started },
    /// A harness it was asked for could not be started.
    SpawnFailed { id: String, error: String },
    /// A harness ended: its pid and raw wait status.
    Exited { pid: i32, status: i32 },
}

/// A harness the supervisor started.
pub struct Started {
    pub pid: i32,
    pub master: OwnedFd,
    /// None where the platform must not keep one (`sys::pty::KEEP_SLAVE`).
    pub slave: Option<OwnedFd>,
}

pub struct Link {
    chan: Channel,
    /// Messages read while waiting for another (a spawn's answer), to act
    /// on in the loop.
    inbox: VecDeque<Msg>,
    /// The supervisor is gone (EOF, or it broke the protocol).
    pub lost: bool,
}

impl Link {
    pub fn new(sock: UnixStream) -> io::Result<Link> {
        Ok(Link {
            chan: Channel::new(sock)?,
            inbox: VecDeque::new(),
            lost: false,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.chan.fd()
    }

    /// Start-up: the supervisor's hello, then every session it holds.
    pub fn greet(&mut self, timeout: Duration) -> io::Result<Vec<HeldSession>> {
        let deadline = Instant::now() + timeout;
        let mut held = Vec::new();
        let mut hello = false;
        loop {
            while let Some((msg, fds)) = self.chan.next_message()? {
                match msg {
                    Msg::Hello { protocol, .. } if protocol != PROTOCOL => {
                        return Err(io::Error::other(format!(
                            "the supervisor speaks protocol {protocol}, this build {PROTOCOL}: \
                             stop the daemon and start it again"
                        )));
                    }
                    Msg::Hello { .. } => hello = true,
                    Msg::Held { id, pid, status } => {
                        let mut fds = fds.into_iter();
                        if let Some(master) = fds.next() {
                            held.push(HeldSession {
                                id,
                                pid,
                                status,
                                master,
                                slave: fds.next(),
                                carried: None,
                            });
                        }
                    }
                    Msg::HeldEnd if hello => return Ok(held),
                    other => self.inbox.push_back(other),
                }
            }
            if self.chan.eof {
                return Err(io::Error::other("the supervisor closed the link"));
            }
            if !self.chan.wait(deadline) {
                return Err(io::Error::other("no word from the supervisor"));
            }
            self.chan.receive()?;
        }
    }

    /// Asks the supervisor to start a harness; its answer (`Heard::Spawned`
    /// or `Heard::SpawnFailed`) comes later through `heard`, the loop
    /// never waits for it.
    pub fn spawn(&mut self, req: SpawnRequest) -> Result<(), String> {
        if self.lost {
            return Err("the daemon's supervisor is gone".into());
        }
        self.chan
            .send(&Msg::Spawn(req), Vec::new())
            .map_err(|e| format!("the supervisor: {e}"))
    }

    /// Tells the supervisor that a session is over and its output read.
    pub fn release(&mut self, pid: i32) {
        self.send(&Msg::Release { pid });
    }

    /// Tells the supervisor that this server serves.
    pub fn ready(&mut self) {
        self.send(&Msg::Ready {
            pid: std::process::id(),
        });
    }

    fn send(&mut self, msg: &Msg) {
        if let Err(e) = self.chan.send(msg, Vec::new()) {
            log::warn!("supervisor link: {e}");
        }
    }

    /// Whether there is something to act on without waiting.
    pub fn has_pending(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Reads what the supervisor sent (and sends what is queued): the
    /// harnesses started or not, and those that ended, in order.
    pub fn heard(&mut self) -> Vec<Heard> {
        if let Err(e) = self.chan.flush().and_then(|()| self.chan.receive()) {
            log::error!("supervisor link: {e}");
            self.lost = true;
        }
        let mut heard = Vec::new();
        loop {
            let (msg, fds) = match self.inbox.pop_front() {
                Some(msg) => (msg, Vec::new()),
                None => match self.chan.next_message() {
                    Ok(Some(got)) => got,
                    Ok(None) => break,
                    Err(e) => {
                        log::error!("supervisor link: {e}");
                        self.lost = true;
                        break;
                    }
                },
            };
            match msg {
                Msg::Exited { pid, status } => heard.push(Heard::Exited { pid, status }),
                Msg::Spawned { id, pid } => {
                    let mut fds = fds.into_iter();
                    heard.push(match (fds.next(), fds.next()) {
                        (Some(master), slave) => Heard::Spawned {
                            id,
                            started: Started { pid, master, slave },
                        },
                        (None, _) => Heard::SpawnFailed {
                            id,
                            error: "the supervisor sent no terminal".into(),
                        },
                    });
                }
                Msg::SpawnFailed { id, error } => heard.push(Heard::SpawnFailed { id, error }),
                other => log::warn!("supervisor link: unexpected {other:?}"),
            }
        }
        if self.chan.eof && !self.lost {
            log::error!("the daemon's supervisor is gone");
            self.lost = true;
        }
        heard
    }
}
