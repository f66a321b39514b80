//! The floor under the daemon's per-connection cost: the least a server can
//! do to answer one request on a new connection, as an anchor for
//! `scripts/bench-newconn.sh`.
//!
//!     cargo run --release --example floor -- --socket PATH --body FILE
//!
//! One thread, blocking calls, nothing else: `accept`, `read` until the
//! head is in, `write` a fixed answer (`FILE` as a JSON body), and `close`
//! — at once when the client said `Connection: close`, else after a `read`
//! that finds its EOF (a half-closed client's is already queued). No peer
//! check, no poller, no timeouts, no parsing: it is not a server anyone
//! should run. A keep-alive client that does not close stalls everyone
//! behind it, so it only anchors clients that close.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

fn main() {
    let mut socket = None;
    let mut body = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().expect("missing value");
        match a.as_str() {
            "--socket" => socket = Some(v()),
            "--body" => body = Some(std::fs::read(v()).expect("read --body")),
            _ => panic!("unknown argument {a}"),
        }
    }
    let socket = socket.expect("--socket PATH");
    let body = body.expect("--body FILE");
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok((mut s, _)) = listener.accept() else {
            continue;
        };
        let mut filled = 0;
        let head_end = loop {
            match s.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => break None,
                Ok(n) => filled += n,
            }
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(end);
            }
            if filled == buf.len() {
                break None;
            }
        };
        let Some(end) = head_end else {
            continue;
        };
        if s.write_all(&answer).is_err() {
            continue;
        }
        let head = buf[..end].to_ascii_lowercase();
        let closes = head.windows(17).any(|w| w == b"connection: close");
        if !closes {
            // Wait for the client's EOF (any further request is ignored).
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    }
}
