//! `coven attach` and `coven run` driven through a PTY that the test opens,
//! as a person at a terminal would: the test is the terminal.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};
use support::*;

/// A terminal the test holds: the master side, everything written to it,
/// and the `coven` process running on its slave side as a session leader
/// with it as the controlling terminal (so it gets `SIGWINCH`).
struct Term {
    master: File,
    slave: OwnedFd,
    screen: Arc<Mutex<Vec<u8>>>,
    child: Child,
    /// The slave's settings before `coven` started.
    before: Termios,
}

fn size(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Term {
    fn spawn(d: &Daemon, args: &[&str]) -> Term {
        let pty = openpty(Some(&size(100, 30)), None).unwrap();
        let before = tcgetattr(pty.slave.as_fd()).unwrap();
        let mut cmd = d.command();
        cmd.args(args)
            .env("TERM", "xterm-256color")
            .current_dir(d.dir.path())
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = Arc::clone(&screen);
        // Reads until the slave side is gone (EIO) when the test drops it.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            slave: pty.slave,
            screen,
            child,
            before,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle`.
    fn wait_for(&self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.screen().contains(needle) {
            assert!(
                start.elapsed() < deadline(),
                "timed out waiting for {needle:?} on the terminal; it shows {:?}",
                self.screen()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    fn raw(&self) -> bool {
        let now = tcgetattr(self.slave.as_fd()).unwrap();
        !now.local_flags.contains(LocalFlags::ICANON) && !now.local_flags.contains(LocalFlags::ECHO)
    }

    fn wait_raw(&self) {
        wait_for("coven to put the terminal in raw mode", || {
            self.raw().then_some(())
        });
    }

    fn resize(&self, cols: u16, rows: u16) {
        let ws = size(cols, rows);
        // SAFETY: TIOCSWINSZ reads one `winsize`.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        wait_for("coven to exit", || child.try_wait().unwrap())
    }

    /// The slave's settings are what they were before `coven` ran.
    fn assert_restored(&self) {
        let now = tcgetattr(self.slave.as_fd()).unwrap();
        let b = &self.before;
        assert_eq!(now.input_flags, b.input_flags);
        assert_eq!(now.output_flags, b.output_flags);
        assert_eq!(now.control_flags, b.control_flags);
        assert_eq!(now.local_flags, b.local_flags);
        assert_eq!(now.control_chars, b.control_chars);
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session that echoes each line it reads and reports its terminal size,
/// after history that is no longer on its screen.
const CLEARED_ECHO_SIZE: &str = "echo gone; printf '\\033[2J\\033[H'; echo ready; while read l; do echo \"got:$l\"; stty size; done";

#[test]
fn attach_types_resizes_detaches_and_restores_the_terminal() {
    let d = Daemon::with_sessions("");
    let id = d.launch("sh", CLEARED_ECHO_SIZE)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_output(&id, "ready");

    let prefix = &id[..id.len() - 3];
    let mut t = Term::spawn(&d, &["attach", prefix]);
    // The screen as it is, drawn from the snapshot: not the history that
    // scrolled or was cleared away, and no terminal queries from it.
    t.wait_for("ready");
    wait_for("coven to put the terminal in raw mode", || {
        t.raw().then_some(())
    });
    t.type_in(b"one\r");
    t.wait_for("got:one");
    // The size sent on attach.
    t.wait_for("30 100");
    let shown = t.screen();
    assert!(
        !shown.contains("gone") && !shown.contains("\x1b[5n"),
        "{shown:?}"
    );
    assert!(!d.wait_output(&id, "got:one").contains("got:\x1b"));

    // The terminal changes size: the session follows.
    t.resize(120, 40);
    wait_for("the session to see the new size", || {
        t.type_in(b"x\r");
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(500) {
            if t.screen().contains("40 120") {
                return Some(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        None
    });

    // Ctrl-] detaches; the session runs on.
    t.type_in(&[0x1d]);
    let status = t.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", t.screen());
    t.wait_for("detached from");
    t.assert_restored();
    assert_eq!(d.session(&id)["status"], "running");
    // Nothing after the detach key was sent.
    assert!(!d.events(&id).iter().any(|e| {
        e["kind"] == "input" && payload(e)["data"].as_str().unwrap().contains('\u{1d}')
    }));
}

#[test]
fn run_launches_attaches_and_ends_with_the_session() {
    let d = Daemon::with_sessions("");
    let root = d.dir.path().to_str().unwrap().to_owned();
    let mut t = Term::spawn(
        &d,
        &[
            "run",
            "sh",
            "--root",
            &root,
            "--title",
            "from run",
            "--",
            "read l; echo \"line:$l\"; stty size; exit 7",
        ],
    );
    t.wait_raw();
    t.type_in(b"hello\r");
    t.wait_for("line:hello");
    // The launch carried the terminal's size.
    t.wait_for("30 100");
    let status = t.wait_exit();
    assert_eq!(status.code(), Some(7), "{}", t.screen());
    t.wait_for("(exit code 7)");
    t.assert_restored();

    let list = d.get("/api/v1/sessions").json();
    assert_eq!(list[0]["title"], "from run");
    assert_eq!(list[0]["status"], "failed", "a non-zero exit");
}

#[test]
fn the_daemon_dying_under_an_attached_client() {
    let mut d = Daemon::with_sessions("");
    let id = d.launch("cat", "x")["id"].as_str().unwrap().to_owned();
    let mut t = Term::spawn(&d, &["attach", &id]);
    t.wait_raw();
    t.type_in(b"before\r");
    t.wait_for("before");
    d.crash();
    let status = t.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", t.screen());
    t.wait_for("lost the daemon");
    t.assert_restored();
}

#[test]
fn a_signal_to_the_client_detaches_and_restores() {
    let d = Daemon::with_sessions("");
    let id = d.launch("cat", "x")["id"].as_str().unwrap().to_owned();
    let mut t = Term::spawn(&d, &["attach", &id]);
    t.wait_raw();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(t.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = t.wait_exit();
    assert_eq!(status.code(), Some(128 + 15), "{}", t.screen());
    t.assert_restored();
    assert_eq!(d.session(&id)["status"], "running");
}

#[test]
fn run_detached_and_attach_without_a_terminal() {
    let d = Daemon::with_sessions("");
    let root = d.dir.path().to_str().unwrap();
    let o = d
        .command()
        .args([
            "run",
            "sh",
            "--detach",
            "--root",
            root,
            "--",
            "echo done; exit 3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    assert_eq!(d.session(&id)["id"], id.as_str());
    d.wait_exit_event(&id);

    // Attaching to a finished session replays it and ends with its status.
    let o = d
        .command()
        .args(["attach", &id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "done\r\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("exit code 3"));

    // Input from a pipe is forwarded; its end does not end the attachment.
    let id = d.launch("sh", "read a; echo \"a=$a\"; exit 0")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut child = d
        .command()
        .args(["attach", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("a=piped"));

    // --json prints the record; a missing prompt is a usage error.
    let o = d
        .command()
        .args(["run", "cat", "-d", "--json", "--root", root, "p"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(record["status"], "running");
    let o = d.command().args(["run", "cat"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));

    // A harness that cannot start: run says why; attach ends with its status.
    let o = d
        .command()
        .args(["run", "broken", "--root", root, "p"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pty_spawn_failed"));
    let failed = d.get("/api/v1/sessions").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = d
        .command()
        .args(["attach", &failed])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("session {failed} failed")), "{err}");
}
