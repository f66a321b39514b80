//! The supervisor's protocol: the messages between it and the serving
//! process, over a Unix stream socket pair, with the PTY descriptors they
//! carry (`SCM_RIGHTS`).
//!
//! A frame is `len: u32 LE | fds: u8 | tag: u8 | fields`, `len` counting
//! what follows it. Fields are `u32`/`i32`/`u64` little-endian or byte
//! strings `len: u32 | bytes` (paths, arguments and the environment are
//! bytes, not text: they are passed on to `execve` as they are). A frame's
//! descriptors travel with its first byte, so they are in the receiver's
//! queue once the frame is whole, in frame order.
//!
//! Written by hand: a dozen small messages whose fields must survive as
//! bytes, between two builds of this same program (`PROTOCOL` says which).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::sys::process::{recv_with_fds, send_with_fds, MAX_FDS_PER_MESSAGE};

/// This build's protocol version. A serving process refuses a supervisor
/// that speaks another (and a live restart checks it before it lets go).
pub const PROTOCOL: u32 = 1;
/// A frame larger than this is a broken peer (a spawn request carries the
/// prompt, at most the request body limit).
const MAX_FRAME_BYTES: usize = 64 << 20;

/// What a harness is started with.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpawnRequest {
    pub id: String,
    pub exe: Vec<u8>,
    pub arg0: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Supervisor → server, first: its protocol and pid.
    Hello {
        protocol: u32,
        pid: u32,
    },
    /// Supervisor → server, after `Hello`: a session it holds (its master
    /// and slave descriptors attached), and its wait status if it ended.
    Held {
        id: String,
        pid: i32,
        status: Option<i32>,
    },
    /// Supervisor → server: every `Held` is sent.
    HeldEnd,
    /// Server → supervisor: start a harness.
    Spawn(SpawnRequest),
    /// Supervisor → server: it runs (master and slave attached).
    Spawned {
        id: String,
        pid: i32,
    },
    SpawnFailed {
        id: String,
        error: String,
    },
    /// Supervisor → server: a harness ended (raw wait status).
    Exited {
        pid: i32,
        status: i32,
    },
    /// Server → supervisor: forget a session whose harness ended and whose
    /// output is read; it closes its copies of the descriptors.
    Release {
        pid: i32,
    },
    /// Server → supervisor: it serves (start-up is over).
    Ready {
        pid: u32,
    },
}

impl Msg {
    fn tag(&self) -> u8 {
        match self {
            Msg::Hello { .. } => 1,
            Msg::Held { .. } => 2,
            Msg::HeldEnd => 3,
            Msg::Spawn(_) => 4,
            Msg::Spawned { .. } => 5,
            Msg::SpawnFailed { .. } => 6,
            Msg::Exited { .. } => 7,
            Msg::Release { .. } => 8,
            Msg::Ready { .. } => 9,
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// The frame of `msg` carrying `nfds` descriptors.
pub fn encode(msg: &Msg, nfds: usize) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.push(nfds as u8);
    out.push(msg.tag());
    match msg {
        Msg::Hello { protocol, pid } => {
            put_u32(&mut out, *protocol);
            put_u32(&mut out, *pid);
        }
        Msg::Held { id, pid, status } => {
            put_bytes(&mut out, id.as_bytes());
            put_u32(&mut out, *pid as u32);
            put_u32(&mut out, u32::from(status.is_some()));
            put_u32(&mut out, status.unwrap_or(0) as u32);
        }
        Msg::HeldEnd => {}
        Msg::Spawn(r) => {
            put_bytes(&mut out, r.id.as_bytes());
            put_bytes(&mut out, &r.exe);
            put_bytes(&mut out, &r.arg0);
            put_u32(&mut out, r.args.len() as u32);
            for a in &r.args {
                put_bytes(&mut out, a);
            }
            put_bytes(&mut out, &r.cwd);
            put_u32(&mut out, r.env.len() as u32);
            for (k, v) in &r.env {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
            put_u32(&mut out, u32::from(r.cols));
            put_u32(&mut out, u32::from(r.rows));
        }
        Msg::Spawned { id, pid } => {
            put_bytes(&mut out, id.as_bytes());
            put_u32(&mut out, *pid as u32);
        }
        Msg::SpawnFailed { id, error } => {
            put_bytes(&mut out, id.as_bytes());
            put_bytes(&mut out, error.as_bytes());
        }
        Msg::Exited { pid, status } => {
            put_u32(&mut out, *pid as u32);
            put_u32(&mut out, *status as u32);
        }
        Msg::Release { pid } => put_u32(&mut out, *pid as u32),
        Msg::Ready { pid } => put_u32(&mut out, *pid),
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// Reads fields off a frame's body; every read checks the bounds.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&mut self) -> Result<u32, &'static str> {
        let (head, rest) = self.0.split_at_checked(4).ok_or("frame too short")?;
        self.0 = rest;
        Ok(u32::from_le_bytes(head.try_into().expect("4 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, &'static str> {
        let n = self.u32()? as usize;
        let (head, rest) = self.0.split_at_checked(n).ok_or("frame too short")?;
        self.0 = rest;
        Ok(head.to_vec())
    }

    fn text(&mut self) -> Result<String, &'static str> {
        String::from_utf8(self.bytes()?).map_err(|_| "text is not UTF-8")
    }

    fn count(&mut self) -> Result<usize, &'static str> {
        let n = self.u32()? as usize;
        // Each item takes at least 4 bytes: a count past that is a lie.
        if n > self.0.len() / 4 {
            return Err("bad count");
        }
        Ok(n)
    }
}

fn decode_body(tag: u8, body: &[u8]) -> Result<Msg, &'static str> {
    let mut f = Fields(body);
    let msg = match tag {
        1 => Msg::Hello {
            protocol: f.u32()?,
            pid: f.u32()?,
        },
        2 => {
            let id = f.text()?;
            let pid = f.u32()? as i32;
            let ended = f.u32()? != 0;
            let status = f.u32()? as i32;
            Msg::Held {
                id,
                pid,
                status: ended.then_some(status),
            }
        }
        3 => Msg::HeldEnd,
        4 => {
            let id = f.text()?;
            let exe = f.bytes()?;
            let arg0 = f.bytes()?;
            let n = f.count()?;
            let args = (0..n).map(|_| f.bytes()).collect::<Result<_, _>>()?;
            let cwd = f.bytes()?;
            let n = f.count()?;
            let env = (0..n)
                .map(|_| Ok((f.bytes()?, f.bytes()?)))
                .collect::<Result<_, &'static str>>()?;
            let cols = u16::try_from(f.u32()?).map_err(|_| "bad size")?;
            let rows = u16::try_from(f.u32()?).map_err(|_| "bad size")?;
            Msg::Spawn(SpawnRequest {
                id,
                exe,
                arg0,
                args,
                cwd,
                env,
                cols,
                rows,
            })
        }
        5 => Msg::Spawned {
            id: f.text()?,
            pid: f.u32()? as i32,
        },
        6 => Msg::SpawnFailed {
            id: f.text()?,
            error: f.text()?,
        },
        7 => Msg::Exited {
            pid: f.u32()? as i32,
            status: f.u32()? as i32,
        },
        8 => Msg::Release {
            pid: f.u32()? as i32,
        },
        9 => Msg::Ready { pid: f.u32()? },
        _ => return Err("unknown message"),
    };
    if !f.0.is_empty() {
        return Err("trailing bytes in a frame");
    }
    Ok(msg)
}

/// Frames and descriptors as they come in, put back together.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.buf.extend_from_slice(bytes);
        self.fds.extend(fds);
    }

    /// The next whole frame, with its descriptors.
    pub fn next_frame(&mut self) -> Result<Option<(Msg, Vec<OwnedFd>)>, &'static str> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if !(2..=MAX_FRAME_BYTES).contains(&len) {
            return Err("bad frame length");
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let nfds = usize::from(self.buf[4]);
        let tag = self.buf[5];
        if nfds > MAX_FDS_PER_MESSAGE || nfds > self.fds.len() {
            return Err("a frame's descriptors are missing");
        }
        let msg = decode_body(tag, &self.buf[6..4 + len]);
        self.buf.drain(..4 + len);
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        let fds = self.fds.drain(..nfds).collect();
        Ok(Some((msg?, fds)))
    }
}

/// One end of the socket pair: a non-blocking stream, what came in and is
/// not yet whole, and what is queued to go out.
pub struct Channel {
    sock: UnixStream,
    decoder: Decoder,
    /// Frames not yet (wholly) sent: bytes, the offset sent so far, and
    /// descriptors that go with the first byte.
    out: VecDeque<(Vec<u8>, usize, Vec<OwnedFd>)>,
    /// The peer closed its end.
    pub eof: bool,
}

impl Channel {
    pub fn new(sock: UnixStream) -> io::Result<Channel> {
        sock.set_nonblocking(true)?;
        Ok(Channel {
            sock,
            decoder: Decoder::default(),
            out: VecDeque::new(),
            eof: false,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Queues a message (its descriptors closed here once sent) and sends
    /// what the socket takes now.
    pub fn send(&mut self, msg: &Msg, fds: Vec<OwnedFd>) -> io::Result<()> {
        self.out.push_back((encode(msg, fds.len()), 0, fds));
        self.flush()
    }

    /// Sends queued frames until done or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        while let Some((bytes, sent, fds)) = self.out.front_mut() {
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            match send_with_fds(self.sock.as_fd(), &bytes[*sent..], &raw) {
                Ok(n) => {
                    // The descriptors went with the first byte.
                    fds.clear();
                    *sent += n;
                    if *sent == bytes.len() {
                        self.out.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Reads what is there (until `WouldBlock` or EOF) into the decoder.
    pub fn receive(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut fds = Vec::new();
            match recv_with_fds(self.sock.as_fd(), &mut buf, &mut fds) {
                Ok(0) => {
                    self.decoder.feed(&[], fds);
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.decoder.feed(&buf[..n], fds),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole message received; an error means the peer is broken
    /// (the stream cannot be resynchronized).
    pub fn next_message(&mut self) -> io::Result<Option<(Msg, Vec<OwnedFd>)>> {
        self.decoder
            .next_frame()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Blocks until the socket is readable (or also writable, with
    /// output queued) or `deadline` passes. False at the deadline.
    pub fn wait(&self, deadline: Instant) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut flags = PollFlags::POLLIN;
        if self.wants_write() {
            flags |= PollFlags::POLLOUT;
        }
        let mut fds = [PollFd::new(self.sock.as_fd(), flags)];
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: Msg) {
        let mut d = Decoder::default();
        let frame = encode(&msg, 0);
        // Fed a byte at a time, it comes out whole once, and only once.
        for (i, b) in frame.iter().enumerate() {
            assert!(d.next_frame().unwrap().is_none(), "early at {i}");
            d.feed(&[*b], Vec::new());
        }
        let (got, fds) = d.next_frame().unwrap().unwrap();
        assert_eq!(got, msg);
        assert!(fds.is_empty());
        assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Msg::Hello {
            protocol: PROTOCOL,
            pid: 42,
        });
        round_trip(Msg::Held {
            id: "1700000000000-0000abcd".into(),
            pid: 7,
            status: Some(34),
        });
        round_trip(Msg::Held {
            id: "x".into(),
            pid: 7,
            status: None,
        });
        round_trip(Msg::HeldEnd);
        round_trip(Msg::Spawn(SpawnRequest {
            id: "s".into(),
            exe: b"/bin/sh".to_vec(),
            arg0: b"sh".to_vec(),
            args: vec![b"-c".to_vec(), b"\xff not utf-8".to_vec()],
            cwd: b"/tmp".to_vec(),
            env: vec![(b"A".to_vec(), b"b".to_vec())],
            cols: 80,
            rows: 24,
        }));
        round_trip(Msg::Spawned {
            id: "s".into(),
            pid: 9,
        });
        round_trip(Msg::SpawnFailed {
            id: "s".into(),
            error: "no such file".into(),
        });
        round_trip(Msg::Exited { pid: 9, status: 0 });
        round_trip(Msg::Release { pid: 9 });
        round_trip(Msg::Ready { pid: 1 });
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        for bad in [
            &[0u8, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 99],
            &[6, 0, 0, 0, 0, 7, 1, 2, 3, 4],
            &[2, 0, 0, 0, 1, 3],
            &[10, 0, 0, 0, 0, 4, 255, 255, 255, 255, 0, 0, 0, 0],
        ] {
            let mut d = Decoder::default();
            d.feed(bad, Vec::new());
            assert!(d.next_frame().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn descriptors_arrive_with_their_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut tx, mut rx) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        let (x, _keep) = UnixStream::pair().unwrap();
        tx.send(&Msg::Exited { pid: 1, status: 0 }, Vec::new())
            .unwrap();
        tx.send(
            &Msg::Spawned {
                id: "s".into(),
                pid: 2,
            },
            vec![OwnedFd::from(x.try_clone().unwrap()), OwnedFd::from(x)],
        )
        .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < 2 {
            assert!(rx.wait(deadline));
            rx.receive().unwrap();
            while let Some(m) = rx.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got[0].0, Msg::Exited { pid: 1, status: 0 });
        assert!(got[0].1.is_empty());
        assert_eq!(got[1].1.len(), 2);
    }
}
