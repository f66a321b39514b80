//! The serving process's end of the supervisor's socket: start a harness
//! (the one call that waits for an answer), hear of harnesses that ended,
//! let go of sessions that are over, and, at start, learn what the
//! supervisor holds.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::proto::{Channel, Msg, SpawnRequest, PROTOCOL};

/// How long a launch waits for the supervisor to start its harness (a fork
/// and an exec; far less unless the machine is in trouble).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A harness the supervisor started.
pub struct Started {
    pub pid: i32,
    pub master: OwnedFd,
    pub slave: OwnedFd,
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
                        if let (Some(master), Some(slave)) = (fds.next(), fds.next()) {
                            held.push(HeldSession {
                                id,
                                pid,
                                status,
                                master,
                                slave: Some(slave),
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

    /// Asks the supervisor to start a harness, and waits for it to be
    /// started (the supervisor forks and execs at once).
    pub fn spawn(&mut self, req: SpawnRequest) -> Result<Started, String> {
        if self.lost {
            return Err("the daemon's supervisor is gone".into());
        }
        let id = req.id.clone();
        let failed = |e: io::Error| format!("the supervisor: {e}");
        self.chan
            .send(&Msg::Spawn(req), Vec::new())
            .map_err(failed)?;
        let deadline = Instant::now() + SPAWN_TIMEOUT;
        loop {
            self.chan.flush().map_err(failed)?;
            while let Some((msg, fds)) = self.chan.next_message().map_err(failed)? {
                match msg {
                    Msg::Spawned { id: got, pid } if got == id => {
                        let mut fds = fds.into_iter();
                        return match (fds.next(), fds.next()) {
                            (Some(master), Some(slave)) => Ok(Started { pid, master, slave }),
                            _ => Err("the supervisor sent no terminal".into()),
                        };
                    }
                    Msg::SpawnFailed { id: got, error } if got == id => return Err(error),
                    other => self.inbox.push_back(other),
                }
            }
            if self.chan.eof {
                self.lost = true;
                return Err("the daemon's supervisor is gone".into());
            }
            if !self.chan.wait(deadline) {
                return Err("the supervisor did not answer in time".into());
            }
            self.chan.receive().map_err(failed)?;
        }
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
    /// harnesses that ended, `(pid, raw status)`, in order.
    pub fn exits(&mut self) -> Vec<(i32, i32)> {
        if let Err(e) = self.chan.flush().and_then(|()| self.chan.receive()) {
            log::error!("supervisor link: {e}");
            self.lost = true;
        }
        let mut exits = Vec::new();
        loop {
            let msg = match self.inbox.pop_front() {
                Some(msg) => msg,
                None => match self.chan.next_message() {
                    Ok(Some((msg, _))) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        log::error!("supervisor link: {e}");
                        self.lost = true;
                        break;
                    }
                },
            };
            match msg {
                Msg::Exited { pid, status } => exits.push((pid, status)),
                other => log::warn!("supervisor link: unexpected {other:?}"),
            }
        }
        if self.chan.eof && !self.lost {
            log::error!("the daemon's supervisor is gone");
            self.lost = true;
        }
        exits
    }
}
