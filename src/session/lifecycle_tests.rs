//! A session's lifecycle without a PTY or a harness: a fake `Spawner`
//! stands for the supervisor, and a pipe for the terminal. Launch, the
//! supervisor's answers (started, refused, gone), output, the end, a kill
//! while the harness is being started.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::record;
use super::*;
use crate::supervisor::link::{Heard, Started};
use crate::supervisor::proto::SpawnRequest;

#[derive(Default)]
struct Said {
    asked: Vec<SpawnRequest>,
    to_hear: Vec<Heard>,
    released: Vec<i32>,
    lost: bool,
}

/// The supervisor, as far as a session can tell.
struct Fake(Rc<RefCell<Said>>);

impl Spawner for Fake {
    fn spawn(&mut self, req: SpawnRequest) -> Result<(), String> {
        self.0.borrow_mut().asked.push(req);
        Ok(())
    }
    fn release(&mut self, pid: i32) {
        self.0.borrow_mut().released.push(pid);
    }
    fn heard(&mut self) -> Vec<Heard> {
        std::mem::take(&mut self.0.borrow_mut().to_hear)
    }
    fn has_pending(&self) -> bool {
        !self.0.borrow().to_hear.is_empty()
    }
    fn lost(&self) -> bool {
        self.0.borrow().lost
    }
    fn fd(&self) -> RawFd {
        -1
    }
    fn ready(&mut self) {}
}

fn sessions() -> (Sessions, Rc<RefCell<Said>>) {
    let mut s = Sessions::new(
        crate::config::Limits::default().sessions(),
        harness::registry(&[]),
        std::ffi::OsString::new(),
    );
    let said = Rc::new(RefCell::new(Said::default()));
    s.attach_link(Fake(Rc::clone(&said)));
    (s, said)
}

fn launch(s: &mut Sessions) -> usize {
    let spec = LaunchSpec {
        project_root: PathBuf::from("/"),
        cwd: PathBuf::from("/"),
        harness: 0,
        prompt: "hi".into(),
        title: "a title".into(),
        cols: 80,
        rows: 24,
    };
    s.launch(spec, Some(PathBuf::from("/bin/true")))
        .expect("recorded and asked for")
}

/// A terminal stand-in: the master's end (non-blocking) and the harness's.
/// Close-on-exec from the start: a child another test spawns meanwhile
/// must not keep the harness's end open, or its EOF never comes.
fn pipe() -> (OwnedFd, std::fs::File) {
    let (read, write) = std::io::pipe().unwrap();
    let (read, write) = (OwnedFd::from(read), OwnedFd::from(write));
    let flags = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        &read,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();
    (read, std::fs::File::from(write))
}

fn events(s: &mut Sessions, key: usize) -> Vec<(Kind, String)> {
    let mut got = Vec::new();
    s.visit(key, 0, 1000, usize::MAX, |_, e| {
        got.push((e.kind, String::from_utf8_lossy(e.payload).into_owned()));
        true
    });
    got
}

/// The supervisor's word that `id`'s harness runs as `pid` on `master`.
fn spawned(id: &str, pid: i32, master: OwnedFd) -> Heard {
    Heard::Spawned {
        id: id.to_owned(),
        started: Started {
            pid,
            master,
            slave: None,
        },
    }
}

fn hear(s: &mut Sessions, said: &Rc<RefCell<Said>>, heard: Heard) {
    said.borrow_mut().to_hear.push(heard);
    s.on_supervisor(Instant::now());
}

#[test]
fn a_launch_runs_prints_ends_and_lets_go() {
    let (mut s, said) = sessions();
    let key = launch(&mut s);
    let id = s.get(key).unwrap().id.to_string();
    assert_eq!(said.borrow().asked[0].id, id);
    assert_eq!(s.launched(key), None, "waiting for the supervisor");
    assert_eq!(s.live(), 1, "counted live while it starts");

    let (master, mut harness) = pipe();
    hear(&mut s, &said, spawned(&id, 4242, master));
    assert_eq!(s.launched(key), Some(Ok(())));
    assert_eq!(s.take_new_masters(), vec![key]);
    assert_eq!(s.get(key).unwrap().proc.pid, Some(4242));

    harness.write_all("héllo".as_bytes()).unwrap();
    s.on_pty(key, true, false);
    assert_eq!(events(&mut s, key)[0].0, Kind::Output);
    assert!(events(&mut s, key)[0].1.contains("héllo"));

    // The harness ends: its terminal closes, the supervisor reaps it.
    drop(harness);
    s.on_pty(key, true, false);
    hear(
        &mut s,
        &said,
        Heard::Exited {
            pid: 4242,
            status: 0,
        },
    );
    // The poller would report the EOF again: a child that another test is
    // starting holds a copy of the harness's end until its exec closes it.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while s.get(key).unwrap().status == Status::Running && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
        s.on_pty(key, true, false);
    }
    let session = s.get(key).unwrap();
    assert_eq!(session.status, Status::Completed);
    assert_eq!(session.exit_code, Some(0));
    let all = events(&mut s, key);
    let (kind, payload) = all.last().unwrap();
    assert_eq!(*kind, Kind::Exit);
    assert_eq!(
        record::exit_status_of(payload.as_bytes()),
        Some(("completed".into(), Some(0)))
    );
    assert_eq!(s.live(), 0);
    assert_eq!(said.borrow().released, vec![4242], "its terminal let go");
}

#[test]
fn a_harness_the_supervisor_cannot_start_fails_the_session() {
    let (mut s, said) = sessions();
    let key = launch(&mut s);
    let id = s.get(key).unwrap().id.to_string();
    hear(
        &mut s,
        &said,
        Heard::SpawnFailed {
            id,
            error: "No such file or directory".into(),
        },
    );
    let Some(Err(message)) = s.launched(key) else {
        panic!("a failure");
    };
    assert!(message.contains("No such file or directory"), "{message}");
    assert_eq!(s.get(key).unwrap().status, Status::Failed);
    assert_eq!(s.live(), 0);
    let (kind, payload) = events(&mut s, key).pop().unwrap();
    assert_eq!(kind, Kind::Exit);
    assert!(payload.contains("No such file or directory"), "{payload}");
}

#[test]
fn launches_fail_when_the_supervisor_is_gone() {
    let (mut s, said) = sessions();
    let key = launch(&mut s);
    said.borrow_mut().lost = true;
    s.on_supervisor(Instant::now());
    assert!(matches!(s.launched(key), Some(Err(m)) if m.contains("supervisor is gone")));
    assert_eq!(s.get(key).unwrap().status, Status::Failed);
}

#[test]
fn an_answer_nobody_waits_for_is_dropped_and_the_session_goes_on() {
    let (mut s, said) = sessions();
    let key = launch(&mut s);
    let id = s.get(key).unwrap().id.to_string();
    s.forget_launch(key);
    let (master, _harness) = pipe();
    hear(&mut s, &said, spawned(&id, 4243, master));
    assert_eq!(s.launched(key), None, "nothing kept for nobody");
    assert_eq!(s.get(key).unwrap().status, Status::Running);
}

#[test]
fn a_kill_while_starting_reaches_the_harness_once_it_runs() {
    let (mut s, said) = sessions();
    let key = launch(&mut s);
    let id = s.get(key).unwrap().id.to_string();
    let now = Instant::now();
    s.kill(
        key,
        Signal::SIGTERM,
        std::time::Duration::from_secs(60),
        now,
    )
    .unwrap();
    assert_eq!(s.get(key).unwrap().status, Status::Killed);
    // The harness: a real process in a group of its own (so the signal
    // reaches nothing else), as the supervisor would start it.
    let mut child = stand_in();
    let (master, _harness) = pipe();
    hear(&mut s, &said, spawned(&id, child.id() as i32, master));
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "TERM once it runs");
    assert!(
        s.next_deadline().is_some(),
        "its escalation to KILL is armed"
    );
}

/// A stand-in harness: a real process in a group of its own (so a signal
/// to its group reaches nothing else), with no signal blocked, as the
/// supervisor starts one (a test thread may have some blocked: qemu-user's
/// do).
fn stand_in() -> std::process::Child {
    let mut child = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::process_group(child.arg("30"), 0);
    // With no signal blocked, as the supervisor starts a harness (a test
    // thread may have some blocked: qemu-user's do).
    // SAFETY: only sigprocmask, async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut child, || {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)
        });
    }
    child.spawn().unwrap()
}

#[test]
fn a_harness_no_launch_waits_for_is_stopped_and_let_go() {
    let (mut s, said) = sessions();
    let mut child = stand_in();
    let (master, _harness) = pipe();
    let pid = child.id() as i32;
    hear(
        &mut s,
        &said,
        spawned("1790000000000-00000000", pid, master),
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(said.borrow().released, vec![pid]);
}
