//! Many sessions' output, through the daemon and through the least any PTY
//! multiplexer can do, for `scripts/bench-ingest.sh`:
//!
//!     ingestbench bare N BYTES
//!         one thread: N PTYs, each running the printer, epoll over every
//!         master, reading until every harness is done (EOF/EIO) and reaped;
//!         no daemon, no journal, nothing kept
//!     ingestbench daemon --socket PATH --pid PID N BYTES
//!         the same N printers launched as sessions of the daemon at PATH
//!         (harness `sh`), from the first launch until every one is finished
//!         (its exit recorded: `GET …/wait?for=exit` on each in turn)
//!
//! The printer is `head -c BYTES /dev/zero | tr '\0' x`. Each mode prints one
//! line: wall seconds, bytes, and the CPU seconds of the reader (bare) or of
//! the serving process and the supervisor (daemon, from /proc; Linux only).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

fn printer(bytes: u64) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' x")
}

/// CPU seconds of a process's live threads, in nanoseconds from each
/// thread's schedstat (not /proc/PID/stat's 10 ms ticks, which are half a
/// millisecond per MB of a 20 MB flood).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split(' ').next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn self_cpu() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn bare(n: usize, bytes: u64) {
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new().unwrap();
    let start = Instant::now();
    let cpu0 = self_cpu();
    let mut masters: Vec<Option<OwnedFd>> = Vec::new();
    let mut children = Vec::new();
    for i in 0..n {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave;
        let (a, b, c) = (
            slave.try_clone().unwrap(),
            slave.try_clone().unwrap(),
            slave.try_clone().unwrap(),
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &printer(bytes)])
            .stdin(Stdio::from(a))
            .stdout(Stdio::from(b))
            .stderr(Stdio::from(c));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        children.push(cmd.spawn().unwrap());
        drop(slave);
        let fd = pty.master;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )
            .unwrap();
        masters.push(Some(fd));
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = n;
    let mut total = 0u64;
    while open > 0 {
        poll.poll(&mut events, None).unwrap();
        for e in events.iter() {
            let i = e.token().0;
            let Some(fd) = &masters[i] else { continue };
            loop {
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EIO) => {
                        masters[i] = None;
                        open -= 1;
                        break;
                    }
                    Ok(got) => total += got as u64,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    for mut c in children {
        c.wait().unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "bare: {n} x {bytes} B: {wall:.3} s, {total} bytes read, reader cpu {:.3} s",
        self_cpu() - cpu0
    );
}

/// One keep-alive connection to the daemon.
struct Conn(UnixStream);

impl Conn {
    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        write!(
            self.0,
            "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn daemon(socket: &str, pid: u32, n: usize, bytes: u64) {
    let supervisor = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s[s.rfind(')')? + 2..]
                .split(' ')
                .nth(1)?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    let mut c = Conn(UnixStream::connect(socket).unwrap());
    let body =
        serde_json::json!({ "projectRoot": "/tmp", "harness": "sh", "prompt": printer(bytes) })
            .to_string();
    let (cpu0, sup0) = (cpu_secs(pid), cpu_secs(supervisor));
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, answer) = c.call("POST", "/api/v1/sessions", &body);
        assert_eq!(status, 201, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let launched = start.elapsed().as_secs_f64();
    // Every one finished, its exit recorded: a held `wait` for each in
    // turn, answered the moment it is (no polling interval to round to).
    for id in &ids {
        let (status, answer) = c.call("GET", &format!("/api/v1/sessions/{id}/wait?for=exit"), "");
        assert!(status == 200 && answer.contains("\"met\":true"), "{answer}");
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu, sup) = (cpu_secs(pid) - cpu0, cpu_secs(supervisor) - sup0);
    let mb = (n as u64 * bytes) as f64 / 1e6;
    println!(
        "daemon: {n} x {bytes} B: {wall:.3} s (launches {launched:.3} s), server cpu {cpu:.3} s ({:.2} ms/MB), supervisor cpu {sup:.3} s",
        cpu * 1000.0 / mb
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| s.parse::<u64>().expect("a number");
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bare", n, b] => bare(num(n) as usize, num(b)),
        ["daemon", "--socket", s, "--pid", p, n, b] => {
            daemon(s, num(p) as u32, num(n) as usize, num(b))
        }
        _ => {
            eprintln!("usage: ingestbench bare N BYTES | daemon --socket PATH --pid PID N BYTES");
            std::process::exit(2);
        }
    }
}
