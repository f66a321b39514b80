//! A byte stream through a real `Conn` (scripted socket, echo service),
//! delivered whole and then split at an arbitrary point: the bytes written
//! back must be the same, apart from `100 Continue` interim answers (which
//! depend on whether a body had started arriving).
#![no_main]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use coven::config::Limits;
use coven::conn::{Conn, Cx, Pools, Socket, Step};
use coven::http::{Error, Reply, Request, Service};
use libfuzzer_sys::fuzz_target;

struct Script {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.reads.front_mut() {
            Some(chunk) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk.drain(..n);
                if chunk.is_empty() {
                    self.reads.pop_front();
                }
                Ok(n)
            }
            None => Ok(0),
        }
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Script {
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

struct Echo;

impl Service for Echo {
    fn call(&mut self, req: &Request<'_>, body: &mut Vec<u8>) -> Reply {
        body.extend_from_slice(req.path);
        body.push(b' ');
        body.extend_from_slice(req.query);
        body.push(b' ');
        body.extend_from_slice(req.body);
        Reply::new(200)
    }
    fn framing_error(&mut self, err: Error, body: &mut Vec<u8>) -> Reply {
        body.extend_from_slice(err.message.as_bytes());
        Reply::new(err.status)
    }
}

fn run(reads: Vec<Vec<u8>>) -> Vec<u8> {
    let now = Instant::now();
    let limits = Limits::default().conn();
    let mut pools = Pools::default();
    let mut body = Vec::new();
    let mut service = Echo;
    let mut conn = Conn::new(
        Script {
            // An empty read would mean EOF: only non-empty chunks.
            reads: reads.into_iter().filter(|r| !r.is_empty()).collect(),
            written: Vec::new(),
        },
        now,
    );
    conn.readable = true;
    conn.writable = true;
    for _ in 0..10_000 {
        let mut cx = Cx {
            service: &mut service,
            pools: &mut pools,
            limits: &limits,
            body: &mut body,
            now,
            budget: limits.max_buffered_bytes,
        };
        match conn.on_ready(&mut cx) {
            Step::Yield => continue,
            Step::Wait if conn.sock.reads.is_empty() => break,
            Step::Wait => conn.readable = true,
            Step::Close => break,
        }
    }
    conn.sock.written
}

fn strip_continue(out: Vec<u8>) -> Vec<u8> {
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut clean = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(CONTINUE) {
            i += CONTINUE.len();
        } else {
            clean.push(out[i]);
            i += 1;
        }
    }
    clean
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = strip_continue(run(vec![data.to_vec()]));
    let at = usize::from(split) * data.len() / 256;
    let parts = strip_continue(run(vec![data[..at].to_vec(), data[at..].to_vec()]));
    assert_eq!(whole, parts);
});
