//! How the loop ends: signals (TERM and INT stop, USR2 restarts live, a
//! second stop means at once), a stop (no more accepts, held requests
//! answered, queued answers flushed within the grace, sessions killed), a
//! live restart (the same drain, with idle connections set aside for the
//! next program), and taking back what a failed restart set aside.

use super::*;

/// The signal self-pipe: handlers set a flag, then write a byte that wakes
/// the loop (signal-hook does both, in that order).
/// The serving process has no children of its own (the supervisor starts
/// and reaps the harnesses), so no SIGCHLD.
pub(super) struct Signals {
    pub(super) pipe: UnixStream,
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    restart: Arc<AtomicBool>,
}

impl Signals {
    pub(super) fn install() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
        let (stop, hangup, restart) = (Arc::default(), Arc::default(), Arc::default());
        let read = crate::sys::process::signal_pipe(&[
            (SIGTERM, &stop),
            (SIGINT, &stop),
            (SIGHUP, &hangup),
            (SIGUSR2, &restart),
        ])?;
        Ok(Signals {
            pipe: UnixStream::from_std(read),
            stop,
            hangup,
            restart,
        })
    }

    pub(super) fn drain(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

fn log_refused(e: &crate::api::error::ApiError) {
    log::error!(
        "SIGUSR2: {} ({})",
        e.message,
        e.details.as_ref().map_or(String::new(), |d| d.to_string())
    );
}

impl Reactor {
    pub(super) fn on_signals(&mut self, now: Instant) {
        self.signals.drain();
        if self.signals.hangup.swap(false, Ordering::SeqCst) {
            log::info!("SIGHUP ignored (use SIGTERM to stop the daemon)");
        }
        if self.signals.stop.swap(false, Ordering::SeqCst) {
            self.begin_stop(now);
        }
        if self.signals.restart.swap(false, Ordering::SeqCst) {
            // The new program is checked off the loop; the restart begins
            // when the answer comes (`restart_if_checked`).
            match self.api.check_restart() {
                Ok(ticket) => self.api.restart_signalled = Some(ticket),
                Err(e) => log_refused(&e),
            }
        }
    }

    /// A restart SIGUSR2 asked for, once its check has answered.
    pub(super) fn restart_if_checked(&mut self) {
        let Some(ticket) = self.api.restart_signalled else {
            return;
        };
        match self.api.restart_checked(ticket) {
            None => {}
            Some(Ok(build)) => {
                log::info!("SIGUSR2: restarting (into {build})");
                self.api.restart_signalled = None;
                self.api.restart_requested = true;
            }
            Some(Err(e)) => {
                self.api.restart_signalled = None;
                log_refused(&e);
            }
        }
    }

    /// A client asked to stop (the lifecycle route): stop as on SIGTERM,
    /// once; a repeated request does not hurry a stop already under way.
    /// Likewise a restart (which a stop overrides).
    pub(super) fn stop_if_requested(&mut self, now: Instant) {
        if std::mem::take(&mut self.api.restart_requested)
            && self.stopping.is_none()
            && self.restarting.is_none()
        {
            self.begin_restart(now);
        }
        if std::mem::take(&mut self.api.stop_requested) && self.stopping.is_none() {
            self.begin_stop(now);
        }
        if self.api.sessions.supervisor_lost() && self.stopping.is_none() {
            // Whoever stopped the supervisor stopped the daemon: without
            // it no harness starts and no exit status comes.
            log::error!("the supervisor is gone: stopping");
            self.begin_stop(now);
        }
    }

    /// Stops accepting, removes the socket, and lets in-flight responses
    /// finish within the grace period. A second stop signal ends at once.
    pub fn begin_stop(&mut self, now: Instant) {
        if self.stopping.is_some() {
            log::info!("second stop signal: exiting now");
            self.stopping = Some(now);
            return;
        }
        log::info!("stopping");
        if self.restarting.take().is_some() {
            log::info!("the restart under way is called off");
        }
        // Sessions get their kill grace (then SIGKILL) plus the response
        // grace to report their exit.
        let sessions = self.api.sessions.live();
        self.api.sessions.kill_all(now);
        let grace = if sessions > 0 {
            self.api.sessions.limits().kill_grace + self.shutdown_grace
        } else {
            self.shutdown_grace
        };
        self.stopping = Some(now + grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            let _ = std::fs::remove_file(&self.socket_path);
        }
        self.accept_pending = false;
        self.web = None;
        self.web_accept_pending = false;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.run_conn(key, now, Turn::Shutdown);
        }
    }

    /// Begins a live restart: no more accepts (new clients wait in the
    /// listener's backlog for the next program), streams end, held requests
    /// answer, requests in progress finish; each connection, once idle, is
    /// set aside for the next program (`run` returns `Restart` when all
    /// are, or at the grace's end).
    pub(super) fn begin_restart(&mut self, now: Instant) {
        log::info!(
            "restarting: {} live session(s) and {} connection(s) to hand over",
            self.api.sessions.live(),
            self.conns.len()
        );
        self.restarting = Some(now + self.shutdown_grace);
        if let Some(listener) = &mut self.listener {
            let _ = self.poll.registry().deregister(listener);
        }
        // The web view's listener closes at the exec (close-on-exec); the
        // next program opens it again (`api::web::Web::load`).
        if let Some(web) = &mut self.web {
            let _ = self.poll.registry().deregister(web);
        }
        self.accept_pending = false;
        self.web_accept_pending = false;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.run_conn(key, now, Turn::Restart);
        }
    }

    /// The descriptors a restart hands over besides the sessions': the
    /// listener and the idle connections (taken).
    pub fn take_handed(&mut self) -> (Option<RawFd>, Vec<UnixStream>) {
        let listener = self.listener.as_ref().map(|l| l.as_raw_fd());
        (listener, std::mem::take(&mut self.handed))
    }

    /// Gives back the connections `take_handed` took (a restart that did
    /// not happen).
    pub fn set_handed(&mut self, handed: Vec<UnixStream>) {
        self.handed = handed;
    }

    /// The restart could not happen (the exec failed): serve on as before,
    /// with the connections that were set aside.
    pub fn resume_after_failed_restart(
        &mut self,
        handed: Vec<UnixStream>,
        sync_delay: Duration,
    ) -> io::Result<()> {
        self.restarting = None;
        let waker = mio::Waker::new(self.poll.registry(), WRITER)?;
        self.api.sessions.start_writer(
            move || {
                let _ = waker.wake();
            },
            sync_delay,
        )?;
        if let Some(listener) = &mut self.listener {
            self.poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        if let Some(web) = &mut self.web {
            self.poll
                .registry()
                .register(web, WEB_LISTENER, Interest::READABLE)?;
            self.web_accept_pending = true;
        }
        self.accept_pending = true;
        self.adopt_conns(handed);
        Ok(())
    }

    /// Connections a previous program handed over (or a failed restart set
    /// aside): served as if just accepted.
    pub fn adopt_conns(&mut self, socks: Vec<UnixStream>) {
        let now = Instant::now();
        for sock in socks {
            let mut conn = Conn::new(crate::conn::Sock::Unix(sock), now);
            conn.readable = true;
            conn.writable = true;
            let key = self.conns.insert(conn);
            self.api.stats.open_connections = self.conns.len();
            self.run_conn(key, now, Turn::Ready);
        }
    }

    /// After a panic in the loop: the connections' state cannot be trusted;
    /// they are closed, and only the sessions go on (a live restart).
    pub fn drop_connections(&mut self) {
        self.conns.clear();
        self.handed.clear();
        self.timers.clear();
        self.ready.clear();
        self.waiters.clear();
    }

    /// Sets an idle connection aside for the next program.
    pub(super) fn hand_over(&mut self, key: usize) {
        let (sock, polled) = self.remove_conn(key);
        // The web view's connections are not handed over: its listener
        // is opened again by the next program (`api::web`), and its page
        // reconnects.
        if let crate::conn::Sock::Unix(sock) = sock {
            let sock = self.unpolled(sock, polled);
            self.handed.push(sock);
        }
    }

    /// Takes the socket out of the poller if it is in it.
    pub(super) fn unpolled(&mut self, mut sock: UnixStream, polled: Polled) -> UnixStream {
        if polled != Polled::No {
            let _ = self.poll.registry().deregister(&mut sock);
        }
        sock
    }
}
