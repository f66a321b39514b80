//! Criterion benches for the HTTP path: head parsing (whole and split),
//! routing plus handler, and a health round trip over a real socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use coven::api::Api;
use coven::http::parse::{parse_head, HeadStatus, Limits};
use coven::http::{Method, Request, Service};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LIMITS: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    max_body_bytes: 1024 * 1024,
};

const CURL: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_head");
    g.throughput(Throughput::Bytes(CURL.len() as u64));
    g.bench_function("whole", |b| {
        b.iter(
            || match parse_head(std::hint::black_box(CURL), 0, &LIMITS) {
                Ok(HeadStatus::Complete(h)) => h.len,
                _ => unreachable!(),
            },
        )
    });
    g.bench_function("split_at_random", |b| {
        // A fixed pseudo-random sequence of split points.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        b.iter(|| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mid = 1 + (x >> 33) as usize % (CURL.len() - 1);
            let from = match parse_head(&CURL[..mid], 0, &LIMITS) {
                Ok(HeadStatus::Partial(f)) => f,
                _ => unreachable!(),
            };
            match parse_head(std::hint::black_box(CURL), from, &LIMITS) {
                Ok(HeadStatus::Complete(h)) => h.len,
                _ => unreachable!(),
            }
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let mut api = Api::standalone();
    let mut body = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("dispatch");
    for (name, path) in [("health", "/api/v1/health"), ("not_found", "/api/v1/nope")] {
        g.bench_function(name, |b| {
            b.iter(|| {
                body.clear();
                let req = Request {
                    method: Method::Get,
                    path: path.as_bytes(),
                    query: b"",
                    last_event_id: None,
                    host: None,
                    cookie: None,
                    origin: None,
                    web: false,
                    body: b"",
                };
                api.call(&req, &mut body).status
            })
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coven"))
        .args(["daemon", "serve"])
        .env("COVEN_HOME", &home)
        .env("COVEN_LOG", "warn")
        .spawn()
        .unwrap();
    let socket = home.join("coven.sock");
    let mut s = loop {
        if let Ok(s) = UnixStream::connect(&socket) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut buf = vec![0u8; 8192];
    c.bench_function("health_round_trip", |b| {
        b.iter(|| {
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\n\r\n").unwrap();
            // The whole response arrives in one read on a local socket;
            // check that it is complete (ends with the JSON's closing brace).
            let mut n = 0;
            loop {
                n += s.read(&mut buf[n..]).unwrap();
                if buf[..n].ends_with(b"}}") {
                    break;
                }
            }
            n
        })
    });
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, parsing, routing, round_trip);
criterion_main!(benches);
