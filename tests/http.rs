//! The HTTP layer against a real daemon: framing, limits, keep-alive,
//! pipelining, hostile and careless clients. Every test ends by checking
//! that the daemon still answers.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use support::*;

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: coven\r\n\r\n";

fn status_of(d: &Daemon, raw: &[u8]) -> (u16, String, bool) {
    let mut s = d.connect();
    s.write_all(raw).unwrap();
    let r = read_response(&mut s).expect("a response");
    let code = if r.status >= 400 {
        r.code()
    } else {
        String::new()
    };
    let closed = r.header("connection") == Some("close") && closed_by_peer(&mut s);
    (r.status, code, closed)
}

#[test]
fn keep_alive_and_pipelining() {
    let d = Daemon::start();
    let mut s = d.connect();
    for _ in 0..3 {
        s.write_all(HEALTH).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    // Two pipelined requests in one write are answered in order.
    s.write_all(b"GET /api/v1/api-version HTTP/1.1\r\n\r\nGET /api/v1/nope HTTP/1.1\r\n\r\n")
        .unwrap();
    let a = read_response(&mut s).unwrap();
    let b = read_response(&mut s).unwrap();
    assert_eq!(
        (a.status, a.json()["apiVersion"].as_str()),
        (200, Some("v1"))
    );
    assert_eq!((b.status, b.code()), (404, "not_found".into()));
    // Many pipelined, with bodies, in one write.
    let mut burst = Vec::new();
    for i in 0..50 {
        if i % 2 == 0 {
            burst.extend_from_slice(HEALTH);
        } else {
            let body = br#"{"action":"coven.capabilities.refresh"}"#;
            burst.extend_from_slice(
                format!(
                    "POST /actions HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            burst.extend_from_slice(body);
        }
    }
    s.write_all(&burst).unwrap();
    for i in 0..50 {
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json().get("accepted").is_some(),
            i % 2 == 1,
            "response {i} out of order"
        );
    }
    d.assert_alive();
}

#[test]
fn connection_close_and_http10() {
    let d = Daemon::start();
    let (status, _, closed) = status_of(&d, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    assert!(closed, "Connection: close is honoured");
    let (status, _, closed) = status_of(&d, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(closed, "HTTP/1.0 closes by default");
    // HTTP/1.0 with keep-alive stays open.
    let mut s = d.connect();
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    d.assert_alive();
}

#[test]
fn one_byte_at_a_time() {
    let d = Daemon::start();
    let mut s = d.connect();
    let body = br#"{"action":"coven.capabilities.refresh","origin":"slow"}"#;
    let mut req = format!(
        "POST /api/v1/actions HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.extend_from_slice(HEALTH);
    for b in &req {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.json()["event"]["origin"], "slow");
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    d.assert_alive();
}

#[test]
fn head_has_headers_without_body() {
    let d = Daemon::start();
    let get = d.get("/api/v1/capabilities");
    let mut s = d.connect();
    s.write_all(b"HEAD /api/v1/capabilities HTTP/1.1\r\n\r\n")
        .unwrap();
    s.write_all(HEALTH).unwrap();
    let head = read_head_response(&mut s).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("content-type"), Some("application/json"));
    // The next bytes are the next response's head: no body was sent.
    let next = read_response(&mut s).unwrap();
    assert_eq!(next.json()["ok"], true);
    // HEAD on an unknown route answers the 404's head.
    s.write_all(b"HEAD /api/v1/nope HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_head_response(&mut s).unwrap().status, 404);
    d.assert_alive();
}

#[test]
fn chunked_bodies() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(
        b"POST /api/v1/actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          8\r\n{\"action\r\n1e;ext=x\r\n\":\"coven.capabilities.refresh\"\r\n\
          f\r\n,\"origin\":\"ch\"}\r\n0\r\nX-Trailer: 1\r\n\r\n",
    )
    .unwrap();
    s.write_all(HEALTH).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["event"]["origin"], "ch");
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // A malformed chunk size is a 400 and a close.
    let (status, code, closed) = status_of(
        &d,
        b"POST /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(
        (status, code.as_str(), closed),
        (400, "invalid_request", true)
    );
    // A chunked body past the limit is a 413.
    let mut big = b"POST /actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    big.extend_from_slice(b"100001\r\n");
    let (status, code, _) = status_of(&d, &big);
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    d.assert_alive();
}

#[test]
fn expect_100_continue() {
    let d = Daemon::start();
    let mut s = d.connect();
    let body = br#"{"action":"coven.capabilities.refresh"}"#;
    s.write_all(
        format!(
            "POST /api/v1/actions HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = read_head_response(&mut s).unwrap();
    assert_eq!(interim.status, 100);
    s.write_all(body).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    // Too large: a 413 instead of the 100, and the connection closes.
    let (status, code, closed) = status_of(
        &d,
        b"POST /actions HTTP/1.1\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(
        (status, code.as_str(), closed),
        (413, "payload_too_large", true)
    );
    d.assert_alive();
}

#[test]
fn framing_errors() {
    let d = Daemon::start();
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /actions HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n",
            413,
            "payload_too_large",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
            400,
            "invalid_request",
        ),
        (b"GET /health HTTP/3.0\r\n\r\n", 400, "invalid_request"),
        (b"GET health HTTP/1.1\r\n\r\n", 400, "invalid_request"),
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400, "invalid_request"),
        (b"G\x00T / HTTP/1.1\r\n\r\n", 400, "invalid_request"),
    ];
    for (raw, status, code) in cases {
        let got = status_of(&d, raw);
        assert_eq!(
            got,
            (*status, code.to_string(), true),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        d.assert_alive();
    }
}

#[test]
fn header_limits() {
    let d = Daemon::start();
    let mut big = b"GET /health HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(17 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        status_of(&d, &big),
        (431, "request_header_too_large".into(), true)
    );
    // Never-ending head without a blank line.
    let mut endless = b"GET /health HTTP/1.1\r\n".to_vec();
    endless.resize(20 * 1024, b'x');
    assert_eq!(status_of(&d, &endless).0, 431);
    let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..65 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        status_of(&d, &many),
        (431, "request_header_too_large".into(), true)
    );
    // 64 headers are fine.
    let mut ok = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..64 {
        ok.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    ok.extend_from_slice(b"\r\n");
    assert_eq!(status_of(&d, &ok).0, 200);
    d.assert_alive();
}

#[test]
fn careless_clients() {
    let d = Daemon::start();
    // Connect and close, many times.
    for _ in 0..100 {
        drop(d.connect());
    }
    // Send a request and hang up before reading the answer.
    for _ in 0..100 {
        let mut s = d.connect();
        s.write_all(HEALTH).unwrap();
        drop(s);
    }
    // Half-close after a request: the answer still comes.
    let mut s = d.connect();
    s.write_all(HEALTH).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    assert!(closed_by_peer(&mut s));
    // Garbage without any line end, then hang up.
    let mut s = d.connect();
    s.write_all(&[0xAB; 3000]).unwrap();
    drop(s);
    // Blank lines before a request are skipped (this once hung the loop).
    let mut s = d.connect();
    s.write_all(b"\n\n\r\n\r\n").unwrap();
    s.write_all(HEALTH).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    drop(s);
    // A body cut short.
    let mut s = d.connect();
    s.write_all(b"POST /actions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a")
        .unwrap();
    drop(s);
    d.assert_alive();
    wait_for("hung-up connections to be closed", || {
        let stats = d.get("/health").json()["stats"].clone();
        (stats["openConnections"] == 1).then_some(())
    });
}

#[test]
fn stalled_client_does_not_block_others() {
    let d = Daemon::start();
    let mut stalled = d.connect();
    stalled
        .write_all(b"POST /api/v1/actions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"act")
        .unwrap();
    let mut half_head = d.connect();
    half_head.write_all(b"GET /api/v1/hea").unwrap();
    for _ in 0..20 {
        d.assert_alive();
    }
    // The stalled clients can still finish.
    half_head.write_all(b"lth HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut half_head).unwrap().status, 200);
    stalled.write_all(&[b' '; 45]).unwrap();
    let r = read_response(&mut stalled).unwrap();
    assert_eq!(r.status, 400, "a truncated JSON body is rejected");
}

#[test]
fn thousand_concurrent_connections() {
    let d = Daemon::start();
    let mut conns: Vec<UnixStream> = (0..1000).map(|_| d.connect()).collect();
    for s in conns.iter_mut() {
        s.write_all(HEALTH).unwrap();
    }
    for s in conns.iter_mut() {
        assert_eq!(read_response(s).unwrap().status, 200);
    }
    let stats = d.get("/health").json()["stats"].clone();
    assert_eq!(stats["openConnections"], 1001);
    drop(conns);
    d.assert_alive();
}

#[test]
fn connection_limit() {
    let d = Daemon::start_with_config(Some(r#"{"limits":{"maxConnections":4}}"#));
    d.settle();
    let mut held: Vec<UnixStream> = (0..4).map(|_| d.connect()).collect();
    // Make sure all four are admitted before the fifth.
    for s in held.iter_mut() {
        s.write_all(HEALTH).unwrap();
        assert_eq!(read_response(s).unwrap().status, 200);
    }
    let mut extra = d.connect();
    let r = read_response(&mut extra).expect("a canned 503");
    assert_eq!((r.status, r.code()), (503, "runtime_unavailable".into()));
    assert_eq!(r.json()["error"]["details"]["maxConnections"], 4);
    assert!(closed_by_peer(&mut extra));
    drop(held.pop());
    wait_for("a free slot", || {
        let mut s = d.connect();
        s.write_all(HEALTH).ok()?;
        let r = read_response(&mut s)?;
        (r.status == 200).then(|| r.json()["stats"]["refusedConnections"].as_u64().unwrap())
    });
}

/// A client that pipelines requests without reading never makes the daemon
/// queue without bound: it stops reading, the socket fills, and the client's
/// writes block. Nothing is lost once the client reads.
#[test]
fn unread_responses_apply_backpressure() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.set_nonblocking(true).unwrap();
    let burst: Vec<u8> = HEALTH.repeat(1000);
    let mut total = 0usize;
    let mut blocked = false;
    // Bounded: at most 2000 bursts (~90 MB) if the daemon never pushed back.
    'outer: for _ in 0..2000 {
        let mut tries = 0;
        let mut at = total % burst.len();
        while at < burst.len() {
            match s.write(&burst[at..]) {
                Ok(n) => {
                    total += n;
                    at += n;
                    tries = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tries += 1;
                    if tries == 5 {
                        blocked = true;
                        break 'outer;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(
        blocked,
        "the daemon kept reading requests whose answers nobody read"
    );
    // Pushed back, not merely slow: the daemon serves other clients, and
    // after each of their answers still reads nothing of ours.
    for _ in 0..3 {
        assert_eq!(d.get("/api/v1/health").status, 200);
        let next = &burst[total % burst.len()..][..1];
        assert!(
            matches!(s.write(next), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the daemon read on though nothing of its answers was read"
        );
    }
    d.assert_alive();
    let rss_kib = vm_rss_kib(d.server_pid());
    assert!(rss_kib < 64 * 1024, "daemon RSS grew to {rss_kib} KiB");
    let expected = total.div_ceil(HEALTH.len());
    let tail = expected * HEALTH.len() - total;
    s.set_nonblocking(false).unwrap();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut n = 0usize;
        while n < expected {
            let resp = read_response(&mut r).expect("every answer arrives");
            assert_eq!(resp.status, 200);
            n += 1;
        }
        n
    });
    s.write_all(&HEALTH[HEALTH.len() - tail..]).unwrap();
    assert_eq!(reader.join().unwrap(), expected);
    d.assert_alive();
}

#[test]
fn timeouts_close_idle_and_slow_connections() {
    let t = scaled_ms(300);
    let d = Daemon::start_with_config(Some(&format!(
        r#"{{"limits":{{"idleTimeoutMs":{t},"headTimeoutMs":{t}}}}}"#
    )));
    // Idle keep-alive connection: closed after the idle timeout.
    let mut idle = d.connect();
    idle.write_all(HEALTH).unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    assert!(closed_by_peer(&mut idle));
    // A head that never completes: closed after the head timeout, even
    // though bytes keep trickling in.
    let mut slow = d.connect();
    slow.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let start = std::time::Instant::now();
    let mut closed = false;
    while start.elapsed() < deadline() {
        if slow.write_all(b"X-A: b\r\n").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(closed, "a trickling head was never cut off");
    // The same for a body: the head timeout covers the whole request.
    let mut slow = d.connect();
    slow.write_all(b"POST /api/v1/sessions HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut closed = false;
    while start.elapsed() < deadline() {
        if slow.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(closed, "a trickling body was never cut off");
    d.assert_alive();
}

/// Connections together hold no more than `maxBufferedBytes` past their
/// free allowance: requests that would need more are turned away with a
/// 503, and the room comes back when those holding it finish.
#[test]
fn a_shared_budget_bounds_what_connections_buffer() {
    let d = Daemon::start_with_config(Some(r#"{"limits":{"maxBufferedBytes":1048576}}"#));
    let head = b"POST /api/v1/sessions HTTP/1.1\r\nContent-Length: 900000\r\n\r\n";
    let part = vec![b'x'; 800_000];
    let start = |s: &mut UnixStream| {
        s.write_all(head).unwrap();
        // A refused request is drained, then closed: writes may fail.
        let _ = s.write_all(&part);
    };
    let mut holder = d.connect();
    start(&mut holder);
    let mut refused = Vec::new();
    for _ in 0..3 {
        let mut s = d.connect();
        start(&mut s);
        refused.push(s);
    }
    for s in &mut refused {
        let r = read_response(s).expect("an answer");
        assert_eq!(r.status, 503);
        assert_eq!(r.code(), "runtime_unavailable");
    }
    d.assert_alive();
    // The one that got in finishes and is answered (its body is not JSON).
    holder.write_all(&part[..100_000]).unwrap();
    let r = read_response(&mut holder).unwrap();
    assert_eq!((r.status, r.code()), (400, "invalid_request".to_string()));
    drop(holder);
    drop(refused);
    // The room is back.
    let mut again = d.connect();
    start(&mut again);
    again.write_all(&part[..100_000]).unwrap();
    assert_eq!(read_response(&mut again).unwrap().status, 400);
}

#[test]
#[ignore = "needs root, to connect as another user: .ci/run runs it (as root: cargo test -- --ignored)"]
fn other_users_are_refused() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root, to connect as another user"
    );
    let d = Daemon::start();
    // Open the path up so that another user can reach the socket at all;
    // the daemon must still refuse by SO_PEERCRED.
    use std::os::unix::fs::PermissionsExt;
    for dir in [d.dir.path(), d.home.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        connect_as_nobody(&d.socket),
        0,
        "the peer must be closed without an answer"
    );
    let stats = d.get("/health").json()["stats"].clone();
    assert_eq!(stats["refusedConnections"], 1);
}

/// Forks a child that becomes uid/gid 65534, connects, sends a request and
/// reads. Exit code: 0 closed without a byte, 1 answered, 2 could not connect.
/// Everything the child needs is prepared before the fork; the child makes
/// raw system calls only (no allocation in a forked multi-threaded process).
fn connect_as_nobody(socket: &std::path::Path) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(socket.as_os_str().as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the child only calls async-signal-safe functions, then _exit.
    match unsafe { libc::fork() } {
        0 => unsafe {
            let code = (|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return 3;
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                    return 2;
                }
                libc::write(fd, HEALTH.as_ptr().cast(), HEALTH.len());
                let mut buf = [0u8; 64];
                let tv = libc::timeval {
                    tv_sec: 20,
                    tv_usec: 0,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n > 0 {
                    1
                } else {
                    0
                }
            })();
            libc::_exit(code)
        },
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            libc::WEXITSTATUS(status)
        }
        _ => panic!("fork failed"),
    }
}

/// One request per connection, the way real clients call: whether the
/// client says `Connection: close`, half-closes, or just waits, it reads
/// the whole answer and then a clean EOF (never a reset), and what it
/// pipelined behind a `Connection: close` is discarded, not answered.
#[test]
fn one_request_per_connection_ends_cleanly() {
    let d = Daemon::start();
    let read_all = |s: &mut UnixStream| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("EOF, not a reset");
        String::from_utf8(got).unwrap()
    };
    for i in 0..50 {
        let mut s = d.connect();
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let got = read_all(&mut s);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{i}: {got}");
        assert!(got.ends_with('}'), "{i}: the whole body, then EOF");

        let mut s = d.connect();
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\n\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let got = read_all(&mut s);
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 1, "{i}: {got}");

        let mut s = d.connect();
        s.write_all(
            b"GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\nGET /api/v1/health HTTP/1.1\r\n\r\n",
        )
        .unwrap();
        let got = read_all(&mut s);
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 1, "{i}: {got}");
    }
    // A keep-alive client that stays is still served on the same socket.
    let mut s = d.connect();
    for _ in 0..3 {
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200);
    }
    d.assert_alive();
}

/// Large answers go out with their head at once, or, when the socket takes
/// only part, the rest follows from the output: pipelined pages of a
/// session's output that the client leaves unread until the daemon pushes
/// back all arrive whole and in order.
#[test]
fn large_answers_left_unread_arrive_whole_and_in_order() {
    let d = Daemon::with_sessions("");
    let id = id_of(&d.launch("sh", "head -c 600000 /dev/zero | tr '\\\\0' x"));
    d.wait_exit_event(&id);
    // Pages of different sizes, so that one answer cut short and joined to
    // the next would not look whole.
    let paths: Vec<String> = (1..=40)
        .map(|i| {
            format!(
                "/api/v1/sessions/{id}/events?afterSeq=0&limit={}",
                1 + i % 7
            )
        })
        .collect();
    let expected: Vec<Vec<u8>> = paths.iter().map(|p| d.get(p).body).collect();
    assert!(
        expected.iter().any(|b| b.len() > 64 * 1024),
        "pages too small to test"
    );
    let mut s = d.connect();
    let mut requests = Vec::new();
    for p in &paths {
        requests.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: coven\r\n\r\n").as_bytes());
    }
    // Sent without reading: the daemon answers into a socket nobody reads
    // until its buffer is full.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&requests).unwrap());
    wait_for("the daemon to fill the unread socket", || {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut queued) };
        (rc == 0 && queued >= 128 * 1024).then_some(())
    });
    for (i, want) in expected.iter().enumerate() {
        let r = read_response(&mut s).unwrap_or_else(|| panic!("answer {i} missing"));
        assert_eq!(r.status, 200);
        assert!(
            r.body == *want,
            "answer {i} differs ({} bytes, want {})",
            r.body.len(),
            want.len()
        );
    }
    writer.join().unwrap();
    d.assert_alive();
}
