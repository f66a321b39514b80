//! A session's newest events in memory, within a byte budget.
//!
//! Events are stored ready to serve: the payload is kept as the JSON string
//! literal of `payload_json` (already escaped twice), and the timestamp as
//! its RFC 3339 bytes, so a page of events is encoded by copying. The
//! ring grows only as events arrive (an idle session holds nothing) and
//! drops its oldest events past the budget. No I/O here.

use std::collections::VecDeque;

/// Bytes charged per event on top of its payload, for the struct itself.
pub const EVENT_OVERHEAD_BYTES: usize = std::mem::size_of::<Event>() + 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Output,
    Input,
    Kill,
    Exit,
    /// Events here could not be kept (the disk refused them).
    OutputTruncated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Output => "output",
            Kind::Input => "input",
            Kind::Kill => "kill",
            Kind::Exit => "exit",
            Kind::OutputTruncated => "output_truncated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Daemon-wide, strictly increasing.
    pub seq: u64,
    pub kind: Kind,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or (recorded before event times had
    /// milliseconds) `YYYY-MM-DDTHH:MM:SSZ` and four zero bytes: `stamp`.
    pub created_at: [u8; 24],
    /// `payload_json` as a JSON string literal, quotes included.
    pub payload: Box<[u8]>,
}

impl Event {
    /// `created_at` as served.
    pub fn stamp(&self) -> &[u8] {
        stamp_bytes(&self.created_at)
    }

    /// The event seen through a view, as a page reads it.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            seq: self.seq,
            kind: self.kind,
            stamp: self.stamp(),
            payload: &self.payload,
        }
    }

    pub fn charge(&self) -> usize {
        self.payload.len() + EVENT_OVERHEAD_BYTES
    }
}

/// An event borrowed from where it lies (the ring, or a journal record in
/// a read buffer): what a page, a stream or a screen reads, with nothing
/// copied until it is written out.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    pub seq: u64,
    pub kind: Kind,
    stamp: &'a [u8],
    /// `payload_json` as a JSON string literal, quotes included.
    pub payload: &'a [u8],
}

impl<'a> EventRef<'a> {
    /// A view of parts already checked (`journal::decode_ref`).
    pub fn new(seq: u64, kind: Kind, stamp: &'a [u8], payload: &'a [u8]) -> EventRef<'a> {
        EventRef {
            seq,
            kind,
            stamp,
            payload,
        }
    }

    /// `created_at` as served.
    pub fn stamp(&self) -> &'a [u8] {
        self.stamp
    }

    pub fn to_event(self) -> Event {
        let mut created_at = [0u8; 24];
        created_at[..self.stamp.len()].copy_from_slice(self.stamp);
        Event {
            seq: self.seq,
            kind: self.kind,
            created_at,
            payload: self.payload.into(),
        }
    }
}

/// The RFC 3339 text of a stored event time (20 or 24 bytes).
pub fn stamp_bytes(created_at: &[u8; 24]) -> &[u8] {
    if created_at[19] == b'Z' {
        &created_at[..20]
    } else {
        &created_at[..]
    }
}

#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Event>,
    /// Sum of `charge()` over `events`.
    bytes: usize,
    max_bytes: usize,
    /// Seq of the newest event ever dropped (0 if none).
    dropped_through: u64,
}

impl Ring {
    pub fn new(max_bytes: usize) -> Ring {
        Ring {
            events: VecDeque::new(),
            bytes: 0,
            max_bytes,
            dropped_through: 0,
        }
    }

    /// Appends an event (its seq must exceed every seq held), dropping the
    /// oldest ones past the budget. The newest event always stays.
    pub fn push(&mut self, event: Event) {
        debug_assert!(self.events.back().is_none_or(|e| e.seq < event.seq));
        self.bytes += event.charge();
        self.events.push_back(event);
        while self.bytes > self.max_bytes && self.events.len() > 1 {
            let old = self.events.pop_front().expect("non-empty");
            self.bytes -= old.charge();
            self.dropped_through = old.seq;
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Seq of the newest event dropped from memory, if any was.
    pub fn dropped_through(&self) -> u64 {
        self.dropped_through
    }

    pub fn back(&self) -> Option<&Event> {
        self.events.back()
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.events.front().map(|e| e.seq)
    }

    /// Forgets every event held: they live on disk, through `seq`.
    /// Returns the bytes freed.
    pub fn release_through(&mut self, seq: u64) -> usize {
        let freed = self.bytes;
        self.events = VecDeque::new();
        self.bytes = 0;
        self.dropped_through = self.dropped_through.max(seq);
        freed
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.events.back().map(|e| e.seq)
    }

    pub fn get(&self, seq: u64) -> Option<&Event> {
        let i = self.events.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.events.get(i)
    }

    /// Events with `seq > after`, oldest first.
    pub fn after(&self, after: u64) -> impl Iterator<Item = &Event> {
        let start = self.events.partition_point(|e| e.seq <= after);
        self.events.range(start..)
    }

    /// Frees memory held beyond the events themselves.
    pub fn shrink(&mut self) {
        self.events.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, len: usize) -> Event {
        Event {
            seq,
            kind: Kind::Output,
            created_at: *b"2026-01-01T00:00:00.000Z",
            payload: vec![b'x'; len].into_boxed_slice(),
        }
    }

    #[test]
    fn budget_drops_oldest() {
        let per = 100 + EVENT_OVERHEAD_BYTES;
        let mut ring = Ring::new(per * 3);
        for seq in 1..=5 {
            ring.push(ev(seq * 10, 100));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.bytes(), per * 3);
        assert_eq!(ring.dropped_through(), 20);
        let seqs: Vec<u64> = ring.after(0).map(|e| e.seq).collect();
        assert_eq!(seqs, [30, 40, 50]);
        let seqs: Vec<u64> = ring.after(35).map(|e| e.seq).collect();
        assert_eq!(seqs, [40, 50]);
        assert_eq!(ring.after(50).count(), 0);
        assert!(ring.get(40).is_some());
        assert!(ring.get(41).is_none());
        // One event larger than the budget still stays.
        ring.push(ev(60, per * 10));
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.last_seq(), Some(60));
    }

    /// Against a `Vec` model: the ring holds a suffix of what was pushed,
    /// within budget.
    #[test]
    fn model() {
        let mut ring = Ring::new(2000);
        let mut all = Vec::new();
        let mut x = 7u64;
        for seq in 1..500u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (x >> 33) as usize % 300;
            ring.push(ev(seq, len));
            all.push(seq);
            let held: Vec<u64> = ring.after(0).map(|e| e.seq).collect();
            assert!(all.ends_with(&held));
            assert!(ring.bytes() <= 2000 || held.len() == 1);
            assert_eq!(ring.dropped_through() + held.len() as u64, seq);
        }
    }
}
