//! Starting a harness: the launch's paths resolved off the loop (a writer
//! task), the session recorded, then the supervisor asked (through the
//! `Spawner`, the link in the daemon, a fake in the unit tests); its answer
//! and its reports of harnesses that ended come back as `Heard`.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;

use super::*;

/// A validated launch request.
pub struct LaunchSpec {
    /// Canonical.
    pub project_root: PathBuf,
    /// Canonical, inside `project_root`.
    pub cwd: PathBuf,
    /// Index into `Sessions::harnesses()`.
    pub harness: usize,
    pub prompt: String,
    pub title: String,
    pub cols: u16,
    pub rows: u16,
}

/// What a launch's paths are on disk, found by the writer (`resolve`):
/// the canonical project root, the canonical `cwd` (joined to the root as
/// given) and whether each is a directory, and the harness's executable
/// on `PATH`. Errors are the system's words.
#[derive(Debug)]
pub struct Resolution {
    pub root: Result<(PathBuf, bool), String>,
    pub cwd: Option<Result<(PathBuf, bool), String>>,
    pub exe: Option<PathBuf>,
}

/// A launch whose harness the supervisor is starting.
#[derive(Debug)]
pub(super) enum Launch {
    /// No answer yet; `wanted`: a request still waits for it.
    Waiting {
        wanted: bool,
    },
    Started,
    Failed(String),
}

/// Why a launch did not produce a running session.
#[derive(Debug)]
pub enum LaunchError {
    /// Too many live sessions.
    AtCapacity { max_live: usize },
    /// The harness could not be started; the session is recorded as failed.
    SpawnFailed { key: usize, message: String },
    /// The session's records could not be created on disk.
    Storage(String),
}

/// What starts harnesses and hears of their ends: the supervisor's link
/// (`supervisor::link::Link`) in the daemon, a fake in the unit tests, so
/// that a session's lifecycle is tested without a PTY or a process.
pub trait Spawner {
    /// Asks for a harness; the answer comes later, through `heard`.
    fn spawn(&mut self, req: SpawnRequest) -> Result<(), String>;
    /// A session is over and its output read: its terminal can go.
    fn release(&mut self, pid: i32);
    /// Harnesses started (or not) and ended since the last call.
    fn heard(&mut self) -> Vec<Heard>;
    /// Whether something was heard that `heard` has not given yet.
    fn has_pending(&self) -> bool;
    /// The spawner is gone: nothing more will start or be heard.
    fn lost(&self) -> bool;
    /// The descriptor the poller watches for what it says.
    fn fd(&self) -> RawFd;
    /// This server serves.
    fn ready(&mut self);
}

impl Spawner for Link {
    fn spawn(&mut self, req: SpawnRequest) -> Result<(), String> {
        Link::spawn(self, req)
    }
    fn release(&mut self, pid: i32) {
        Link::release(self, pid)
    }
    fn heard(&mut self) -> Vec<Heard> {
        Link::heard(self)
    }
    fn has_pending(&self) -> bool {
        Link::has_pending(self)
    }
    fn lost(&self) -> bool {
        self.lost
    }
    fn fd(&self) -> RawFd {
        Link::fd(self)
    }
    fn ready(&mut self) {
        Link::ready(self)
    }
}

impl Sessions {
    /// Asks the writer where a launch's paths lead (`Resolution`): path
    /// resolution waits on the disk, so it never runs on the loop. Returns
    /// the ticket whose answer `take_answer` gives.
    pub fn resolve(&mut self, root: PathBuf, cwd: Option<String>, harness: usize) -> u64 {
        let harness = self.harnesses[harness].clone();
        let path = self.path.clone();
        let task = move || -> crate::writer::Answer {
            let dir = |p: &std::path::Path| {
                std::fs::canonicalize(p)
                    .map(|c| {
                        let is_dir = c.is_dir();
                        (c, is_dir)
                    })
                    .map_err(|e| e.to_string())
            };
            let root = dir(&root);
            let cwd = match (&root, cwd) {
                (Ok((r, _)), Some(c)) => Some(dir(&r.join(c))),
                _ => None,
            };
            Box::new(Resolution {
                root,
                cwd,
                exe: harness.resolve(&path),
            })
        };
        self.log.writer.submit(None, Job::Task(Box::new(task)))
    }

    /// Records a session and asks the supervisor to start its harness
    /// (`exe`, found by `resolve`); `launched` says when it has. A harness
    /// that cannot be asked for at all fails at once.
    pub fn launch(&mut self, spec: LaunchSpec, exe: Option<PathBuf>) -> Result<usize, LaunchError> {
        if self.live >= self.limits.max_live {
            return Err(LaunchError::AtCapacity {
                max_live: self.limits.max_live,
            });
        }
        let harness = self.harnesses[spec.harness].clone();
        let id = self.new_id();
        // The index entry first: a crash before the directory exists leaves
        // an entry that lists nothing, never a directory nothing lists.
        let pos = self
            .index
            .append(&crate::index::Entry {
                id: id.to_string(),
                status: Some(Status::Running.code()),
                ..crate::index::Entry::default()
            })
            .map_err(|e| LaunchError::Storage(format!("writing the session index: {e}")))?;
        // A launch that is acknowledged is listed after a power cut: the
        // writer syncs the index's new entry with the session's records.
        if let Some(Ok(file)) = self.index.sync_handle() {
            self.log.writer.submit(None, Job::SyncData(file));
        }
        let journal = match &self.root {
            Some(root) => match Journal::create(root.join(&*id)) {
                Ok(journal) => {
                    // The new directory's entry in sessions/, durable.
                    self.log.writer.submit(None, Job::SyncDir(root.clone()));
                    match crate::journal::reserve_exit(journal.dir()) {
                        Ok(file) => {
                            self.log.writer.submit(None, Job::SyncData(file));
                        }
                        Err(e) => log::warn!("session {id}: reserving its final record: {e}"),
                    }
                    Some(journal)
                }
                Err(e) => {
                    let gone = crate::index::Entry {
                        id: id.to_string(),
                        status: None,
                        ..crate::index::Entry::default()
                    };
                    let _ = self.index.write(pos, &gone);
                    return Err(LaunchError::Storage(format!(
                        "creating the session's journal: {e}"
                    )));
                }
            },
            None => None,
        };
        self.count += 1;
        let now = self.log.clock.stamp();
        let entry = self.list.vacant_entry();
        let key = entry.key();
        entry.insert(Session {
            id: id.clone(),
            texts: Texts::new(
                &spec.project_root.display().to_string(),
                &spec.cwd.display().to_string(),
                harness.id.as_str(),
                &spec.title,
            ),
            status: Status::Running,
            exit_code: None,
            created_at: now,
            updated_at: now,
            idx_pos: Some(pos),
            ..Session::new(key, Ring::new(self.limits.ring_bytes), journal)
        });
        self.register(key);
        self.log.save_meta(&self.root, &mut self.list[key]);
        self.record_size(key, spec.cols, spec.rows);

        let started = match exe {
            None => Err(format!(
                "harness {:?}: executable {:?} was not found on PATH",
                harness.id, harness.command
            )),
            Some(exe) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
                let req = SpawnRequest {
                    id: id.to_string(),
                    exe: bytes(&exe),
                    arg0: harness.command.as_bytes().to_vec(),
                    args: harness
                        .argv(&spec.prompt)
                        .into_iter()
                        .map(String::into_bytes)
                        .collect(),
                    cwd: bytes(&spec.cwd),
                    env: harness
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                        .collect(),
                    cols: spec.cols,
                    rows: spec.rows,
                };
                match &mut self.link {
                    Some(link) => link.spawn(req),
                    None => Err("no supervisor to start it".into()),
                }
                .map_err(|e| {
                    format!(
                        "harness {:?}: cannot start {}: {e}",
                        harness.id,
                        exe.display()
                    )
                })
            }
        };
        match started {
            Ok(()) => {
                self.live += 1;
                self.launches.insert(key, Launch::Waiting { wanted: true });
                Ok(key)
            }
            Err(message) => {
                self.spawn_failed(key, &message);
                Err(LaunchError::SpawnFailed { key, message })
            }
        }
    }

    /// Whether a launch's harness has been started: None while the
    /// supervisor has not said, then once `Ok` or the reason it failed.
    pub fn launched(&mut self, key: usize) -> Option<Result<(), String>> {
        match self.launches.get(&key)? {
            Launch::Waiting { .. } => None,
            _ => match self.launches.remove(&key)? {
                Launch::Failed(message) => Some(Err(message)),
                _ => Some(Ok(())),
            },
        }
    }

    /// Nobody waits to hear how this launch went.
    pub fn forget_launch(&mut self, key: usize) {
        match self.launches.get_mut(&key) {
            Some(Launch::Waiting { wanted }) => *wanted = false,
            Some(_) => {
                self.launches.remove(&key);
            }
            None => {}
        }
    }

    /// The session `id` names, if a launch waits for its harness: a session
    /// this server does not know, or knows only from disk (a restart came
    /// between the request and the answer), gets no harness behind its back.
    fn waiting_launch(&self, id: &str) -> Option<usize> {
        let key = *self.by_id.get(id)?;
        self.launches.contains_key(&key).then_some(key)
    }

    /// The supervisor started a launch's harness.
    pub(super) fn on_spawned(&mut self, id: &str, started: Started) {
        let key = self.waiting_launch(id);
        let Some(key) = key else {
            log::warn!("session {id}: started, but no launch waits for it; stopped");
            pty::signal_group(started.pid, Signal::SIGKILL);
            if let Some(link) = &mut self.link {
                link.release(started.pid);
            }
            return;
        };
        let grace = self.limits.kill_grace;
        let s = &mut self.list[key];
        s.proc.pid = Some(started.pid);
        s.proc.pgid = started.pid;
        s.proc.master = Some(started.master);
        s.proc.slave = started.slave;
        let killed = s.status == Status::Killed;
        if killed {
            // Killed while it was being started: TERM now, and KILL after
            // the grace if nothing is set to escalate any more.
            pty::signal_group(started.pid, Signal::SIGTERM);
            let now = std::time::Instant::now();
            s.set_ending(|e| {
                e.escalate_at.get_or_insert(now + grace);
            });
        }
        self.by_pid.insert(started.pid, key);
        self.new_masters.push(key);
        if killed {
            self.arm(key);
        }
        self.answered(key, Launch::Started);
    }

    /// The supervisor could not start a launch's harness.
    pub(super) fn on_spawn_failed(&mut self, id: &str, error: &str) {
        let key = self.waiting_launch(id);
        let Some(key) = key else {
            return;
        };
        let message = format!(
            "harness {:?}: cannot start it: {error}",
            self.list[key].harness()
        );
        self.live -= 1;
        self.spawn_failed(key, &message);
        self.answered(key, Launch::Failed(message));
    }

    /// A launch has its answer: kept for the request that waits for it.
    pub(super) fn answered(&mut self, key: usize, how: Launch) {
        if let Some(Launch::Waiting { wanted: true }) = self.launches.remove(&key) {
            self.launches.insert(key, how);
        }
        self.log.touched.push(ANSWER_TOPIC);
    }

    /// A session whose harness could not be started is over, `failed`.
    pub(super) fn spawn_failed(&mut self, key: usize, message: &str) {
        let s = &mut self.list[key];
        log::warn!("session {}: {message}", s.id);
        s.status = Status::Failed;
        let payload = record::exit_payload("failed", None, Some(message));
        self.record_exit(key, payload);
    }

    /// Acts on what the supervisor said: harnesses started or not, and
    /// those that ended. If it is gone, launches it was starting fail.
    pub fn on_supervisor(&mut self, now: Instant) {
        let Some(link) = &mut self.link else {
            return;
        };
        for heard in link.heard() {
            match heard {
                Heard::Spawned { id, started } => self.on_spawned(&id, started),
                Heard::SpawnFailed { id, error } => self.on_spawn_failed(&id, &error),
                Heard::Exited { pid, status } => {
                    self.on_exit(pid, ExitStatus::from_raw(status), now)
                }
            }
        }
        if self.supervisor_lost() {
            let waiting: Vec<usize> = self
                .launches
                .iter()
                .filter(|(_, l)| matches!(l, Launch::Waiting { .. }))
                .map(|(&k, _)| k)
                .collect();
            for key in waiting {
                let id = self.list[key].id.clone();
                self.on_spawn_failed(&id, "the daemon's supervisor is gone");
            }
        }
    }

    /// The supervisor is gone: no exit status will come any more.
    pub fn supervisor_lost(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.lost())
    }

    /// The descriptor of the link to the supervisor, for the poller.
    pub fn link_fd(&self) -> Option<RawFd> {
        self.link.as_ref().map(|l| l.fd())
    }

    /// Tells the supervisor that this server serves.
    pub fn ready(&mut self) {
        if let Some(link) = &mut self.link {
            link.ready();
        }
    }

    /// From now on, harnesses are started by the supervisor at the other
    /// end of `link`.
    pub fn attach_link(&mut self, link: impl Spawner + 'static) {
        self.link = Some(Box::new(link));
    }

    /// A new session id, `<unix ms, 13 digits>-<8 hex>`: sorting by id is
    /// sorting by creation, and each one sorts after every id before it
    /// (the index relies on it), even if the clock steps back.
    pub(super) fn new_id(&mut self) -> Box<str> {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut rand = [0u8; 4];
        crate::sys::random_bytes(&mut rand);
        let mut id = format!("{ms:013}-{:08x}", u32::from_be_bytes(rand));
        if *id <= *self.last_id {
            // Same millisecond (or the clock went back): just after the last.
            let (last_ms, last_rand) = self
                .last_id
                .split_once('-')
                .and_then(|(m, r)| Some((m.parse::<u64>().ok()?, u32::from_str_radix(r, 16).ok()?)))
                .unwrap_or((ms, 0));
            id = match last_rand.checked_add(1) {
                Some(r) => format!("{last_ms:013}-{r:08x}"),
                None => format!("{:013}-00000000", last_ms + 1),
            };
        }
        let id = id.into_boxed_str();
        self.last_id = id.clone();
        id
    }
}
