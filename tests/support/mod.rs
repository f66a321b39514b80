//! Test support: a real daemon on a real socket in a temporary COVEN_HOME,
//! and a minimal HTTP/1.1 client that reads exactly one response at a time.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single wait in a test may take before it fails: 20 s, times
/// `COVEN_TEST_TIME_SCALE` (a whole number) where the machine is slower than
/// the tests were written for. CI sets it for the emulated aarch64 run,
/// where every instruction of the daemon and the tests is translated.
pub fn deadline() -> Duration {
    Duration::from_secs(20) * scale()
}

/// `COVEN_TEST_TIME_SCALE` (1 unless set).
pub fn scale() -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("COVEN_TEST_TIME_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(1)
    })
}

/// A test's own timing constant (a quiet period, a grace, a timeout it
/// configures), in milliseconds, scaled like `deadline()`: on a machine that
/// many times slower, whatever it waits for takes that many times longer.
pub fn scaled_ms(ms: u64) -> u64 {
    ms * u64::from(scale())
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub socket: PathBuf,
    pub child: Option<Child>,
}

pub fn coven_bin() -> &'static str {
    env!("CARGO_BIN_EXE_coven")
}

/// Polls `f` until it returns `Some`, failing the test past `deadline()`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline(), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with_config(None)
    }

    pub fn start_with_config(config: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        if let Some(config) = config {
            std::fs::create_dir(&home).unwrap();
            std::fs::write(home.join("config.json"), config).unwrap();
        }
        let mut d = Daemon {
            socket: home.join("coven.sock"),
            home,
            dir,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn command(&self) -> Command {
        self.command_of(Path::new(coven_bin()))
    }

    /// A command of the binary at `bin`, for this daemon. The test-only
    /// routes are on (`COVEN_TEST_HOOKS`).
    pub fn command_of(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("COVEN_HOME", &self.home)
            .env("COVEN_LOG", "debug")
            .env("COVEN_TEST_HOOKS", "1");
        cmd
    }

    /// Starts `coven daemon serve` and waits until it answers health.
    pub fn spawn(&mut self) {
        self.spawn_bin(Path::new(coven_bin()));
    }

    /// Starts `<bin> daemon serve` and waits until it answers health.
    pub fn spawn_bin(&mut self, bin: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = self
            .command_of(bin)
            .args(["daemon", "serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for("the daemon to answer", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited at start: {status}\n{}", self.log());
            }
            let mut s = UnixStream::connect(&self.socket).ok()?;
            s.set_read_timeout(Some(deadline())).unwrap();
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\n\r\n").ok()?;
            let r = read_response(&mut s)?;
            (r.status == 200).then_some(())
        });
    }

    /// The process the test started: `coven daemon serve`, the
    /// supervisor.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// The serving process (health's `daemon.pid`), the supervisor's child.
    pub fn server_pid(&self) -> i32 {
        let pid = self.get("/api/v1/health").json()["daemon"]["pid"].clone();
        pid.as_i64().expect("health names the server's pid") as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect to the daemon");
        s.set_read_timeout(Some(deadline())).unwrap();
        s.set_write_timeout(Some(deadline())).unwrap();
        s
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let mut s = self.connect();
        send_opts(&mut s, method, path, body, true);
        read_response(&mut s).unwrap_or_else(|| {
            panic!(
                "no response to {method} {path}; the daemon's log:\n{}",
                self.log()
            )
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, Some(body))
    }

    /// Waits until the daemon has seen every earlier connection of this
    /// test close (a client's close is noticed a loop turn later, and on a
    /// loaded machine accepts may run first), and returns that health.
    pub fn settle(&self) -> Value {
        wait_for("earlier connections to be closed", || {
            let h = self.get("/api/v1/health").json();
            (h["stats"]["openConnections"] == 1).then_some(h)
        })
    }

    /// The daemon is alive and serving.
    pub fn assert_alive(&self) {
        let r = self.get("/api/v1/health");
        assert_eq!(r.status, 200, "{}", self.log());
        assert_eq!(r.json()["ok"], true);
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the daemon process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for("the daemon to exit", || child.try_wait().unwrap());
        self.child = None;
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The daemon is a debug build here: it logs, then panics, if
        // anything waits on a disk on the loop's thread
        // (`on_loop::assert_off_loop`). A panic there becomes a live restart
        // the test would not see; its log line fails every test.
        let log = self.log();
        if !std::thread::panicking() {
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("blocking work on the loop"))
            {
                panic!("the daemon waited on a disk on its loop: {line}");
            }
        }
    }
}

pub fn send(s: &mut UnixStream, method: &str, path: &str, body: Option<&[u8]>) {
    send_opts(s, method, path, body, false)
}

fn send_opts(s: &mut UnixStream, method: &str, path: &str, body: Option<&[u8]>, last: bool) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: coven\r\n");
    if last {
        // The daemon closes at once after answering: the connection is
        // gone from its count before the answer is read (`settle`).
        req.push_str("Connection: close\r\n");
    }
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    s.write_all(&bytes).unwrap();
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The envelope's `error.code`.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// Reads one response (head, then `Content-Length` bytes of body). `None`
/// if the connection ends before a whole head.
pub fn read_response(s: &mut impl Read) -> Option<Response> {
    read_response_opts(s, true)
}

/// Reads a response to a HEAD request: no body follows the head.
pub fn read_head_response(s: &mut impl Read) -> Option<Response> {
    read_response_opts(s, false)
}

fn read_response_opts(s: &mut impl Read, with_body: bool) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    let text = String::from_utf8(head).expect("response head is UTF-8");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if with_body && status >= 200 {
        let len: usize = r
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        r.body = vec![0; len];
        s.read_exact(&mut r.body).ok()?;
    }
    Some(r)
}

/// Reads until EOF; true if the peer closed (as opposed to timing out).
pub fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What `ps -o FIELD= -p PID` says of a process (empty when it is gone):
/// POSIX `ps`, the same on Linux, macOS and FreeBSD, where `/proc` is not.
pub fn ps_field(pid: i32, field: &str) -> String {
    let out = Command::new("ps")
        .args(["-o", &format!("{field}="), "-p", &pid.to_string()])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Resident set size of a process, in KiB.
pub fn vm_rss_kib(pid: i32) -> u64 {
    let rss = ps_field(pid, "rss");
    rss.parse()
        .unwrap_or_else(|_| panic!("ps rss of {pid}: {rss:?}"))
}

/// The process has exited (a zombie nobody reaps, as in some containers
/// without an init, counts as gone).
pub fn process_gone(pid: i32) -> bool {
    let stat = ps_field(pid, "stat");
    stat.is_empty() || stat.starts_with('Z')
}

/// Test harnesses every session test can use.
pub const HARNESSES: &str = r#"[
    {"id": "sh", "label": "Shell", "command": "/bin/sh", "args": ["-c", "{prompt}"]},
    {"id": "cat", "command": "/bin/cat", "args": []},
    {"id": "sleep", "command": "/bin/sleep", "args": ["{prompt}"]},
    {"id": "broken", "command": "/nonexistent/harness"},
    {"id": "envy", "command": "/bin/sh", "args": ["-c", "{prompt}"], "env": {"COVEN_TEST_VAR": "from-config"}}
]"#;

impl Daemon {
    /// A daemon with the test harnesses and extra `limits` (a JSON object body).
    pub fn with_sessions(limits: &str) -> Daemon {
        let config = format!(r#"{{"harnesses": {HARNESSES}, "limits": {{{limits}}}}}"#);
        Daemon::start_with_config(Some(&config))
    }

    /// Launches a session; panics unless it is created.
    pub fn launch(&self, harness: &str, prompt: &str) -> Value {
        let root = self.dir.path().display().to_string();
        let body = serde_json::json!({"projectRoot": root, "harness": harness, "prompt": prompt});
        let r = self.post("/api/v1/sessions", body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Launches `sh -c prompt` in a terminal of `cols`×`rows`; its id.
    pub fn launch_sized(&self, prompt: &str, cols: u16, rows: u16) -> String {
        let root = self.dir.path().display().to_string();
        let body = serde_json::json!({
            "projectRoot": root, "harness": "sh", "prompt": prompt, "cols": cols, "rows": rows,
        });
        let r = self.post("/api/v1/sessions", body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().unwrap().to_owned()
    }

    pub fn session(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v1/sessions/{id}"));
        assert_eq!(r.status, 200);
        r.json()
    }

    /// Waits until the session's status is not `running`/`killed`-and-live:
    /// that is, until its exit event exists. Returns the record.
    pub fn wait_exit_event(&self, id: &str) -> Value {
        wait_for("the session's exit event", || {
            let events = self.events(id);
            events.iter().any(|e| e["kind"] == "exit").then_some(())
        });
        self.session(id)
    }

    /// Every event of a session, paging with `afterSeq`.
    pub fn events(&self, id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0u64;
        loop {
            let r = self.get(&format!(
                "/api/v1/sessions/{id}/events?afterSeq={after}&limit=10000"
            ));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let page = r.json();
            let events = page["events"].as_array().unwrap().clone();
            if let Some(last) = events.last() {
                after = last["seq"].as_u64().unwrap();
            }
            all.extend(events);
            if page["hasMore"] != true {
                return all;
            }
        }
    }

    /// Waits until the session's output (PTY `\r\n` folded to `\n`)
    /// contains `needle`; returns the output.
    pub fn wait_output(&self, id: &str, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = output_of(&self.events(id));
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < deadline(),
                "timed out waiting for output containing {needle:?}; output so far: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A session record's id.
pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The decoded payload of an event.
pub fn payload(event: &Value) -> Value {
    serde_json::from_str(event["payload_json"].as_str().unwrap()).unwrap()
}

/// An `exit` event's payload without its raw wait status (which is kept
/// as the system encodes it), after checking that it is there.
pub fn exit_of(event: &Value) -> Value {
    assert_eq!(event["kind"], "exit", "{event}");
    let mut p = payload(event);
    let raw = p
        .as_object_mut()
        .unwrap()
        .remove("waitStatus")
        .expect("waitStatus");
    assert!(raw.is_i64(), "{raw}");
    p
}

/// Concatenated `output` data, byte for byte.
pub fn raw_output(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["kind"] == "output")
        .map(|e| payload(e)["data"].as_str().unwrap().to_owned())
        .collect()
}

/// Concatenated `output` data, with the PTY's `\r\n` folded to `\n`.
pub fn output_of(events: &[Value]) -> String {
    raw_output(events).replace("\r\n", "\n")
}

impl Daemon {
    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(self.wait_exit().success(), "{}", self.log());
    }

    /// The whole daemon dies at once (both its processes, SIGKILL), as in
    /// a machine's out-of-memory kill: its sessions die with it. The
    /// supervisor is stopped first, so that it cannot start a new server
    /// in between.
    pub fn crash(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let server = self.server_pid();
        kill(Pid::from_raw(self.pid()), Signal::SIGSTOP).unwrap();
        let _ = kill(Pid::from_raw(server), Signal::SIGKILL);
        self.signal(Signal::SIGKILL);
        self.wait_exit();
        wait_for("the server to die", || process_gone(server).then_some(()));
    }

    /// The serving process dies (SIGKILL): the supervisor starts a new one,
    /// which takes the sessions up again. Returns once the new one serves.
    pub fn crash_server(&self) {
        let old = self.server_pid();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("a new server", || {
            let mut s = UnixStream::connect(&self.socket).ok()?;
            s.set_read_timeout(Some(deadline())).unwrap();
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
                .ok()?;
            let r = read_response(&mut s)?;
            let pid = r.json()["daemon"]["pid"].as_i64()? as i32;
            (pid != old).then_some(())
        });
    }

    /// The raw body of a GET.
    pub fn get_raw(&self, path: &str) -> Vec<u8> {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.body
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.home.join("sessions").join(id)
    }

    /// The session's journal segments, oldest first.
    pub fn segments(&self, id: &str) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(self.session_dir(id))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segs.sort();
        segs
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// Opens a stream: sends the request and reads the response head.
pub fn open_stream(d: &Daemon, path: &str, extra_headers: &str) -> UnixStream {
    let mut s = d.connect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: coven\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let head = read_head_response(&mut s).expect("a response head");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    s
}

/// Reads frames until the server closes the stream; comments are skipped.
pub fn read_stream(s: &mut UnixStream) -> Vec<Sse> {
    let mut text = String::new();
    s.read_to_string(&mut text)
        .expect("the stream ends cleanly");
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty() && !f.starts_with(':'))
        .map(|frame| {
            let mut sse = Sse {
                id: String::new(),
                event: String::new(),
                data: Value::Null,
            };
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    sse.id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    sse.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    sse.data = serde_json::from_str(v).unwrap();
                }
            }
            sse
        })
        .collect()
}

/// Kills whatever daemon a test started through the CLI, whatever happens.
pub struct Reap(pub PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(text) = std::fs::read_to_string(self.0.join("daemon.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                // The server, and the supervisor that would start another.
                let pid = v["pid"].as_i64().unwrap_or(0) as i32;
                let parent = ps_field(pid, "ppid").parse().unwrap_or(0);
                if parent > 1 {
                    let _ = kill(Pid::from_raw(parent), Signal::SIGSTOP);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if parent > 1 {
                    let _ = kill(Pid::from_raw(parent), Signal::SIGKILL);
                }
            }
        }
    }
}
