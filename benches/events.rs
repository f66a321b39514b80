//! Criterion benches for events: an output's payload (escaping), ring
//! append and read, journal append and read, and encoding a 500-event page.

use coven::api::events::write_event;
use coven::api::wire::data_payload;
use coven::journal::Journal;
use coven::ring::{Event, Kind, Ring};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn event(seq: u64, text: &str) -> Event {
    Event {
        seq,
        kind: Kind::Output,
        created_at: *b"2026-11-27T08:00:00.000Z",
        payload: data_payload(text),
    }
}

/// A line of terminal output, as harnesses print it.
fn line() -> String {
    "\u{1b}[32m✓\u{1b}[0m src/session/mod.rs: 42 tests passed in 0.31s\r\n".repeat(4)
}

/// Escaping 48 KiB of output (a loop turn's event at most) into its
/// payload: a flood of one letter, coloured test results, source code.
fn payload(c: &mut Criterion) {
    let fit = |s: String| s.chars().cycle().take(48 * 1024).collect::<String>();
    let source = include_str!("../src/session/record.rs").replace('\n', "\r\n");
    let inputs = [
        ("flood", "x".repeat(48 * 1024)),
        ("coloured", fit(line())),
        ("source", fit(source)),
    ];
    let mut g = c.benchmark_group("payload");
    for (name, text) in &inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| b.iter(|| data_payload(text).len()));
    }
    g.finish();
}

fn ring(c: &mut Criterion) {
    let text = line();
    let proto = event(1, &text);
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Bytes(proto.payload.len() as u64));
    g.bench_function("append_evicting", |b| {
        let mut ring = Ring::new(256 * 1024);
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            ring.push(Event {
                seq,
                ..proto.clone()
            });
        })
    });
    let mut ring = Ring::new(64 * 1024 * 1024);
    for seq in 1..=10_000 {
        ring.push(Event {
            seq,
            ..proto.clone()
        });
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("read_100_mid", |b| {
        b.iter(|| {
            ring.after(5_000)
                .take(100)
                .map(|e| e.payload.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn page(c: &mut Criterion) {
    let text = line();
    let events: Vec<Event> = (1..=500).map(|seq| event(seq, &text)).collect();
    let mut out = Vec::with_capacity(1 << 20);
    let bytes: usize = {
        for e in &events {
            write_event(&mut out, "1795767746031-eaac2e28", &e.view());
        }
        out.len()
    };
    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("encode_500_events", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(b"{\"events\":[");
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_event(&mut out, "1795767746031-eaac2e28", &e.view());
            }
            out.extend_from_slice(b"],\"nextCursor\":{\"afterSeq\":500},\"hasMore\":false}");
            out.len()
        })
    });
    g.finish();
}

fn journal(c: &mut Criterion) {
    let text = "x".repeat(8 * 1024);
    let proto = event(1, &text);
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Bytes(64 * proto.payload.len() as u64));
    let mut n = 0;
    g.bench_function("append_64x8k", |b| {
        b.iter_batched_ref(
            || {
                n += 1;
                Journal::create(dir.path().join(format!("append{n}"))).unwrap()
            },
            |j| {
                for seq in 1..=64 {
                    j.append(
                        &Event {
                            seq,
                            ..proto.clone()
                        },
                        false,
                    )
                    .unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    let mut j = Journal::create(dir.path().join("read")).unwrap();
    let small = event(1, &line());
    for seq in 1..=20_000 {
        j.append(
            &Event {
                seq,
                ..small.clone()
            },
            false,
        )
        .unwrap();
    }
    g.throughput(Throughput::Elements(500));
    g.bench_function("read_500_mid", |b| {
        b.iter(|| j.read(10_000, u64::MAX, 500, 512 * 1024).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, payload, ring, page, journal);
criterion_main!(benches);
