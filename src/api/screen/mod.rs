//! `GET /api/v1/sessions/:id/screen`: what a session's terminal shows now,
//! as rows of text (JSON) or as bytes that redraw it (`?format=ansi`).
//!
//! A screen is a `vt100` grid (32 bytes a cell, one grid per screen the
//! program drew on: the alternate screen has its own) fed the session's
//! output. A session nobody asks about has none and costs nothing more.
//! The first request builds the grid: from the session's screen
//! checkpoint if it has one, then by replaying the output after it,
//! journal first, at most `STEP_BYTES` of it per loop turn, whatever the
//! number of screens being built (one step a turn, `Screens::new_turn`).
//! Meanwhile the request is held (`HoldKind::Step`: resumed every turn),
//! so other clients are served between steps. Later requests only feed the
//! grid what is new. A grid goes when it has not been asked for in `KEEP`,
//! when the daemon goes quiet, or when grids together pass `MAX_CELLS`
//! (the least recently asked first); what it replayed stays in the
//! checkpoint, so building it again replays only what came after.
//!
//! The terminal's size over time comes from the session's sizes file
//! (`journal::read_sizes`), applied between the events it falls between.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::query::{bad_query, query_param};
use super::sessions::find;
use super::Api;
use crate::http::{Fill, Hold, HoldKind, HoldState, Reply};
use crate::journal::Size;
use crate::ring::Kind;
use crate::session::Sessions;
mod grid;
pub use grid::{checkpoint_head, CheckpointHead, Title, CHECKPOINT_BYTES, CHECKPOINT_FILE};
use grid::{parser, write_ansi, write_cells, write_json, Grid, Loading};

/// Output replayed into grids per loop turn, at most: some 5 ms of CPU
/// here, the longest a build keeps other clients waiting.
pub const STEP_BYTES: usize = 256 * 1024;
/// What a screen may still take in a turn whose step another took.
const SHARED_STEP_BYTES: usize = 16 * 1024;
/// A grid not asked for in this long is dropped.
pub const KEEP: Duration = Duration::from_secs(30);
/// Cells the grids may hold together (32 bytes each: 64 MiB), each grid
/// counted at twice its size for its alternate screen; past it the least
/// recently asked grids go. One grid is always allowed, whatever
/// its size.
pub const MAX_CELLS: usize = 2 * 1024 * 1024;
/// A window title longer than this is cut.
pub const MAX_TITLE_BYTES: usize = 1024;
/// A first build replays at most about this much of the journal, its
/// newest part: the screen of a longer history is what its last
/// `MAX_REPLAY_BYTES` draw on an empty terminal (exact for output that
/// scrolls and for programs that redraw within it; a mode, title or
/// alternate screen set only before it is lost). About 0.3 s of CPU here.
pub const MAX_REPLAY_BYTES: u64 = 16 * 1024 * 1024;
/// A session launched before sizes were recorded had the launch default.
const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// How often a screen whose files the writer is reading looks again.
const LOAD_POLL: Duration = Duration::from_millis(2);

/// The grids of the sessions whose screen was asked for lately.
#[derive(Default)]
pub struct Screens {
    grids: HashMap<usize, Grid>,
    /// A grid took a step of output this loop turn.
    stepped: bool,
}

impl Screens {
    /// A new loop turn: one more step of replay may run.
    pub fn new_turn(&mut self) {
        self.stepped = false;
    }

    /// Drops every grid (the daemon went quiet: nobody is asking); their
    /// checkpoints go to the writer.
    pub fn clear(&mut self, sessions: &mut Sessions) {
        for g in self.grids.values_mut() {
            sessions.submit(g.checkpoint());
        }
        self.grids.clear();
        self.grids.shrink_to_fit();
    }

    /// Drops the grids not asked for in `KEEP`.
    pub fn sweep(&mut self, sessions: &mut Sessions, now: Instant) {
        self.grids.retain(|_, g| {
            let keep = now.saturating_duration_since(g.asked) < KEEP;
            if !keep {
                sessions.submit(g.checkpoint());
            }
            keep
        });
    }

    /// A live session was resized: its grid (if any) takes the new size
    /// after the events it has seen so far.
    pub fn resized(&mut self, key: usize, serial: u64, size: Size) {
        if let Some(g) = self.grids.get_mut(&key).filter(|g| g.serial == serial) {
            g.sizes.push_back(size);
        }
    }

    /// The session's grid, made empty (at its first size) if it has none;
    /// keeps the grids within `MAX_CELLS`, this one aside.
    fn grid(
        &mut self,
        sessions: &mut Sessions,
        key: usize,
        serial: u64,
        now: Instant,
    ) -> &mut Grid {
        let stale = self.grids.get(&key).is_some_and(|g| g.serial != serial);
        if stale {
            self.grids.remove(&key);
        }
        if !self.grids.contains_key(&key) {
            let s = sessions.get(key);
            let dir = s.and_then(|s| s.dir()).map(Into::into);
            let last_seq = s.map_or(0, |s| s.last_seq());
            let tail = s.map_or(0, |s| s.tail_start(MAX_REPLAY_BYTES));
            let (cols, rows) = DEFAULT_SIZE;
            let mut grid = Grid {
                dir,
                ..Grid::new(serial, cols, rows, VecDeque::new(), now)
            };
            if grid.dir.is_some() {
                grid.start_loading(sessions, last_seq, tail);
            } else {
                grid.start_at_tail(tail);
            }
            self.make_room(sessions, grid.cells());
            self.grids.insert(key, grid);
        }
        let g = self.grids.get_mut(&key).expect("inserted");
        g.asked = now;
        g
    }

    fn make_room(&mut self, sessions: &mut Sessions, wanted: usize) {
        loop {
            let held: usize = self.grids.values().map(Grid::cells).sum();
            if held + wanted <= MAX_CELLS || self.grids.is_empty() {
                return;
            }
            let oldest = self
                .grids
                .iter()
                .min_by_key(|(_, g)| g.asked)
                .map(|(&k, _)| k)
                .expect("not empty");
            if let Some(mut g) = self.grids.remove(&oldest) {
                sessions.submit(g.checkpoint());
            }
        }
    }
}

/// Feeds the grid the session's events it lacks, about `budget` bytes of
/// them at most; whether it has caught up, and whether it fed anything.
fn step(sessions: &mut Sessions, key: usize, g: &mut Grid, budget: usize) -> (bool, bool) {
    let (ready, loaded) = g.load(sessions, budget);
    if !ready {
        return (false, loaded);
    }
    if loaded {
        // A turn's step went to the checkpoint.
        return (false, true);
    }
    let mut fed = 0;
    let more = sessions.visit(key, g.seq, usize::MAX, budget, |_, e| {
        if fed >= budget {
            // The ring may hold more than a step (its size is configured).
            return false;
        }
        fed += e.payload.len();
        g.apply_sizes_before(e.seq);
        if e.kind == Kind::Output {
            if let Some(data) = super::wire::payload_data(e.payload) {
                g.fed += data.len() as u64;
                g.feed(data.as_bytes());
            }
        }
        g.seq = e.seq;
        true
    });
    if !more {
        g.apply_sizes_before(u64::MAX);
        sessions.submit(g.checkpoint());
    }
    (!more, fed > 0)
}

/// The `format` a request asks for, kept in its hold's state: JSON rows
/// of text, redraw bytes, or JSON with styled cells (the web view's).
const JSON: u8 = 0;
const ANSI: u8 = 1;
const CELLS: u8 = 2;

/// Writes the grid in a format, or copies what was written for it at the
/// same event (a quiet screen asked again costs a copy).
fn write_format(g: &mut Grid, format: u8, out: &mut Vec<u8>) {
    let slot = usize::from(format);
    match &g.answers[slot] {
        Some((seq, kept)) if *seq == g.seq => out.extend_from_slice(kept),
        _ => {
            let start = out.len();
            match format {
                ANSI => write_ansi(g, out),
                CELLS => write_cells(g, out),
                _ => write_json(g, out),
            }
            g.answers[slot] = Some((g.seq, out[start..].into()));
        }
    }
}

pub fn on_screen(
    api: &mut Api,
    id: &str,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let format = match query_param(query, "format")?.as_deref() {
        None | Some("json") => JSON,
        Some("ansi") => ANSI,
        Some("cells") => CELLS,
        Some(other) => {
            return Err(bad_query(
                "format",
                other,
                "`format` must be `json`, `ansi` or `cells`.",
            ))
        }
    };
    let now = Instant::now();
    api.screens.sweep(&mut api.sessions, now);
    let (key, s) = find(&mut api.sessions, id)?;
    let hold = Hold {
        kind: HoldKind::Step,
        topic: key,
        tag: s.serial,
        cursor: 0,
        state: HoldState::Screen { format },
        until: Some(now),
    };
    Ok(resume(api, &hold, out))
}

/// Builds or updates the grid one step; answers once it has caught up,
/// else holds the request for the next step.
pub fn resume(api: &mut Api, hold: &Hold, out: &mut Vec<u8>) -> Reply {
    out.clear();
    let Api {
        screens, sessions, ..
    } = api;
    if sessions
        .get(hold.topic)
        .is_none_or(|s| s.serial != hold.tag)
    {
        return ApiError::new(404, "session_not_found", "Session was not found.").write(out);
    }
    let now = Instant::now();
    // One full step a turn for all the screens; once it is taken, the
    // others only take what little is new (a screen kept up to date) and
    // go on next turn.
    let budget = if screens.stepped {
        SHARED_STEP_BYTES
    } else {
        STEP_BYTES
    };
    let g = screens.grid(sessions, hold.topic, hold.tag, now);
    // The terminal emulator is another crate's code run on a program's
    // output: if it panics, the request fails and the grid goes, not the
    // daemon (a resumed step runs outside the handler's own guard).
    let mut fed = false;
    let waiting = matches!(g.loading, Loading::Reading { .. });
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (done, any) = step(sessions, hold.topic, g, budget);
        fed = any;
        if !done {
            return None;
        }
        // The answer is kept until the screen changes: a client polling a
        // quiet screen costs a copy, not a walk over every cell.
        let format = match hold.state {
            HoldState::Screen { format } => format,
            _ => JSON,
        };
        write_format(g, format, out);
        if format == ANSI {
            return Some(Reply {
                content_type: "application/octet-stream",
                seq: Some(g.seq),
                ..Reply::new(200)
            });
        }
        Some(Reply::new(200))
    }));
    screens.stepped |= fed;
    match answer {
        Ok(Some(reply)) => reply,
        // Resumed next turn; while the writer reads its files, a little
        // later (nothing wakes it when they come).
        Ok(None) => Reply {
            hold: Some(Hold {
                until: Some(if waiting { now + LOAD_POLL } else { now }),
                ..*hold
            }),
            ..Reply::new(200)
        },
        Err(_) => {
            log::error!(
                "the terminal emulator panicked on session key {}",
                hold.topic
            );
            screens.grids.remove(&hold.topic);
            out.clear();
            ApiError::internal().write(out)
        }
    }
}

/// The least time between two frames of one session's screen on a stream:
/// at most 10 a second, whatever the session prints.
pub const PACE: Duration = Duration::from_millis(100);
/// Sessions one stream may watch.
pub const MAX_WATCHED: usize = 256;

/// What a screen stream watches: each session, and the frame it sent last.
pub struct Watch {
    items: Vec<Watched>,
}

struct Watched {
    id: String,
    key: usize,
    serial: u64,
    /// The seq of the screen sent last, and when.
    sent: Option<(u64, Instant)>,
    /// Gone (deleted), and said so.
    gone: bool,
}

/// `GET /api/v1/screens/stream?ids=A,B,…`: an event stream of the screens
/// (`format=cells`) of these sessions: each at once, then again whenever it
/// changed, at most every `PACE`, nothing while it is still. An id that is
/// not (or no longer) a session gets one `gone` frame.
pub fn on_stream(api: &mut Api, query: &[u8]) -> Result<Reply, ApiError> {
    let ids = query_param(query, "ids")?.unwrap_or_default();
    let mut items = Vec::new();
    for id in ids.split(',').filter(|s| !s.is_empty()) {
        if items.len() == MAX_WATCHED {
            return Err(bad_query("ids", &ids, "`ids` names at most 256 sessions."));
        }
        let found = find(&mut api.sessions, id).ok().map(|(k, s)| (k, s.serial));
        items.push(Watched {
            id: id.to_owned(),
            key: found.map_or(usize::MAX, |f| f.0),
            serial: found.map_or(0, |f| f.1),
            sent: None,
            gone: false,
        });
    }
    let slot = api.watches.insert(Watch { items });
    Ok(Reply {
        hold: Some(Hold {
            kind: HoldKind::Stream,
            topic: crate::session::SCREENS_TOPIC,
            tag: 0,
            cursor: 0,
            state: HoldState::Slot(slot),
            until: None,
        }),
        ..Reply::new(200)
    })
}

/// Fills a screen stream: a frame for each watched screen that changed
/// and may be sent now; when one may only be sent later, asks to be
/// filled again then.
pub fn stream(api: &mut Api, hold: &mut Hold, out: &mut Vec<u8>, budget: usize) -> Fill {
    let Api {
        screens,
        sessions,
        watches,
        ..
    } = api;
    let Some(watch) = watches.get_mut(super::slot_of(hold)) else {
        return Fill::End;
    };
    let now = Instant::now();
    let start = out.len();
    let mut later: Option<Instant> = None;
    let mut soon = |t: Instant| later = Some(later.map_or(t, |l: Instant| l.min(t)));
    for w in watch.items.iter_mut().filter(|w| !w.gone) {
        let Some(last) = sessions
            .get(w.key)
            .filter(|s| s.serial == w.serial)
            .map(|s| s.last_seq())
        else {
            w.gone = true;
            out.extend_from_slice(b"event: gone\ndata: ");
            super::wire::write_json(out, &serde_json::json!({ "id": w.id }));
            out.extend_from_slice(b"\n\n");
            continue;
        };
        if let Some((seq, at)) = w.sent {
            if seq >= last {
                continue;
            }
            if now < at + PACE {
                soon(at + PACE);
                continue;
            }
        }
        let budget_step = if screens.stepped {
            SHARED_STEP_BYTES
        } else {
            STEP_BYTES
        };
        let g = screens.grid(sessions, w.key, w.serial, now);
        let key = w.key;
        let waiting = matches!(g.loading, Loading::Reading { .. });
        let mut fed = false;
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (done, any) = step(sessions, key, g, budget_step);
            fed = any;
            if done {
                out.extend_from_slice(b"event: screen\ndata: {\"id\":");
                super::wire::write_json(out, &w.id);
                out.extend_from_slice(b",\"screen\":");
                write_format(g, CELLS, out);
                out.extend_from_slice(b"}\n\n");
                w.sent = Some((g.seq, now));
            }
            done
        }));
        screens.stepped |= fed;
        match built {
            Ok(true) => {}
            // Still being built: on with it next turn (a little later
            // while the writer reads its files).
            Ok(false) => soon(if waiting { now + LOAD_POLL } else { now }),
            Err(_) => {
                log::error!("the terminal emulator panicked on session key {key}");
                screens.grids.remove(&key);
                w.gone = true;
            }
        }
        if out.len() - start >= budget {
            return Fill::Full;
        }
    }
    match later {
        Some(t) => Fill::Later(t),
        None => Fill::Idle,
    }
}

/// Replays output chunks into a fresh grid of `cols`×`rows` and returns
/// its redraw bytes (what `?format=ansi` answers): for fuzzing the feed.
pub fn redraw_of(cols: u16, rows: u16, chunks: &[&[u8]]) -> Vec<u8> {
    let mut g = Grid::new(0, cols, rows, VecDeque::new(), Instant::now());
    for chunk in chunks {
        g.feed(chunk);
    }
    let mut out = Vec::new();
    write_ansi(&g, &mut out);
    out
}

/// Restores a grid from checkpoint bytes as a first build does, in steps
/// of `step` bytes, and returns its redraw: for fuzzing what a checkpoint
/// read from disk can do.
pub fn restored_from(bytes: Vec<u8>, step: usize) -> Option<Vec<u8>> {
    let (head, at) = checkpoint_head(&bytes)?;
    let mut g = Grid::new(
        0,
        DEFAULT_SIZE.0,
        DEFAULT_SIZE.1,
        VecDeque::new(),
        Instant::now(),
    );
    g.term = parser(head.cols, head.rows);
    g.loading = Loading::Feeding {
        bytes,
        at,
        head,
        tail: 0,
    };
    let mut sessions = Sessions::new(
        crate::config::Limits::default().sessions(),
        Vec::new(),
        std::ffi::OsString::new(),
    );
    while !g.load(&mut sessions, step.max(1)).0 {}
    let mut out = Vec::new();
    write_ansi(&g, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cut_and_cleaned() {
        let mut p = parser(20, 5);
        p.process(b"\x1b]2;hello\x07");
        assert_eq!(p.callbacks().0, "hello");
        let long = format!("\x1b]0;{}\x07", "\u{e9}".repeat(MAX_TITLE_BYTES));
        p.process(long.as_bytes());
        assert_eq!(p.callbacks().0.len(), MAX_TITLE_BYTES);
    }

    #[test]
    fn a_checkpoint_restored_in_any_steps_draws_the_same() {
        // What the checkpoint fuzz target found: a step that cut `\u{7cb}`
        // lost the `w` after it.
        let bytes =
            "{\"seq\":4,\"cols\":5,\"rows\":3,\"sizeMs\":0}\nu:4,\"\u{7cb}w\u{7cb}\u{e9}x\u{e9}"
                .as_bytes()
                .to_vec();
        let whole = restored_from(bytes.clone(), 1 << 20).expect("a head");
        for step in 1..12 {
            let stepped = restored_from(bytes.clone(), step).expect("a head");
            assert_eq!(stepped, whole, "steps of {step}");
        }
    }

    #[test]
    fn ansi_sys_save_and_restore_split_anywhere() {
        let stream = b"abc\x1b[s\x1b[3;3Hxy\x1b[uDEF\x1b[1mB\x1b[0m";
        let mut whole = parser(10, 4);
        whole.process(b"abc\x1b7\x1b[3;3Hxy\x1b8DEF\x1b[1mB\x1b[0m");
        for cut in 0..stream.len() {
            let mut g = Grid::new(1, 10, 4, VecDeque::new(), Instant::now());
            g.feed(&stream[..cut]);
            g.feed(&stream[cut..]);
            assert_eq!(
                g.term.screen().contents_formatted(),
                whole.screen().contents_formatted(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn sizes_apply_between_events() {
        let later = Size {
            after: 5,
            unix_ms: 0,
            cols: 40,
            rows: 10,
        };
        let mut g = Grid::new(1, 10, 3, VecDeque::from([later]), Instant::now());
        g.apply_sizes_before(5);
        assert_eq!(g.cells(), 2 * 30);
        g.apply_sizes_before(6);
        assert_eq!(g.cells(), 2 * 400);
    }
}
