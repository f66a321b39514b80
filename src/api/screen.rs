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

use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::query::{bad_query, query_param};
use super::sessions::find;
use super::Api;
use crate::http::{Hold, HoldKind, Reply};
use crate::journal::{self, Size};
use crate::ring::Kind;
use crate::session::Sessions;
use crate::writer::Job;

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

/// A screen's checkpoint, beside the session's journal, replaced whole
/// (temp file and rename; not synced: a lost one only costs a longer
/// replay). First line: JSON `{seq, cols, rows, sizeMs}`; the rest: the
/// grid's redraw bytes (`write_ansi`), which rebuild it on an empty grid.
/// What the redraw does not carry is lost at a checkpoint: the primary
/// screen behind an alternate one, the scroll region, a cursor saved with
/// `ESC 7`.
pub const CHECKPOINT_FILE: &str = "screen.ckpt";
/// A grid that took this much output since its last checkpoint writes a
/// new one when its build ends and when it is dropped.
pub const CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// A checkpoint past this size is neither written nor read (a read on the
/// loop stays a bounded step): a screen that large (hundreds of thousands
/// of cells, every one in its own colours) is replayed instead.
const MAX_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(serde::Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointHead {
    pub seq: u64,
    pub cols: u16,
    pub rows: u16,
    /// When the newest size it includes was recorded.
    pub size_ms: u64,
}

/// The grids of the sessions whose screen was asked for lately.
#[derive(Default)]
pub struct Screens {
    grids: HashMap<usize, Grid>,
    /// A grid took a step of output this loop turn.
    stepped: bool,
}

pub struct Grid {
    /// Which incarnation of the slab key (`Session::serial`).
    serial: u64,
    term: vt100::Parser<Title>,
    /// The newest event fed to it.
    seq: u64,
    /// Sizes still to apply, oldest first.
    sizes: VecDeque<Size>,
    /// The start of a sequence `feed` rewrites, split from its end.
    carry: Vec<u8>,
    asked: Instant,
    /// The session's directory (for its checkpoint).
    dir: Option<Box<std::path::Path>>,
    /// Output bytes fed since the last checkpoint.
    fed: u64,
    /// When the newest size applied was recorded.
    size_ms: u64,
    /// The JSON and redraw answers for the screen as it is, once written,
    /// with the seq they name.
    answers: [Option<(u64, Box<[u8]>)>; 2],
    /// Where its first build from disk is.
    loading: Loading,
}

/// A grid's first build, before replay: its sizes file and checkpoint are
/// read by the writer (no file is opened on the loop), then the
/// checkpoint's redraw is fed a step at a time like any output.
enum Loading {
    Ready,
    /// The writer's task `ticket` reads the files. `last_seq`: the
    /// session's newest event then; `tail`: where replay starts without a
    /// checkpoint.
    Reading {
        ticket: u64,
        last_seq: u64,
        tail: u64,
    },
    /// A checkpoint's redraw being fed from `at`; it stands for the
    /// events through `head.seq`.
    Feeding {
        bytes: Vec<u8>,
        at: usize,
        head: CheckpointHead,
        tail: u64,
    },
}

/// What the writer read for a grid.
struct Loaded {
    sizes: Vec<Size>,
    checkpoint: Option<Vec<u8>>,
}

/// Keeps the window title a program sets (OSC 0 or 2).
#[derive(Default)]
pub struct Title(String);

impl vt100::Callbacks for Title {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        let mut kept = String::new();
        for c in String::from_utf8_lossy(title).chars() {
            if kept.len() + c.len_utf8() > MAX_TITLE_BYTES {
                break;
            }
            if !c.is_control() {
                kept.push(c);
            }
        }
        self.0 = kept;
    }
}

fn parser(cols: u16, rows: u16) -> vt100::Parser<Title> {
    let nz = |n: u16| std::num::NonZeroU16::new(n.max(1)).expect("at least 1");
    vt100::Parser::new_with_callbacks(nz(rows), nz(cols), 0, Title::default())
}

impl Grid {
    /// An empty grid of `cols`×`rows`, with the sizes still to come.
    fn new(serial: u64, cols: u16, rows: u16, sizes: VecDeque<Size>, now: Instant) -> Grid {
        Grid {
            serial,
            term: parser(cols, rows),
            seq: 0,
            sizes,
            carry: Vec::new(),
            asked: now,
            dir: None,
            fed: 0,
            size_ms: 0,
            answers: [None, None],
            loading: Loading::Ready,
        }
    }

    /// Cells it may hold: twice its size, for the alternate screen.
    fn cells(&self) -> usize {
        let (rows, cols) = self.term.screen().size();
        2 * usize::from(rows.get()) * usize::from(cols.get())
    }

    /// Feeds output to the grid. `vt100` does not know the ANSI.SYS
    /// save and restore (`CSI s`, `CSI u`), which terminals (tmux, xterm)
    /// treat as `ESC 7` and `ESC 8`: they are rewritten so, the only
    /// bytes looked at here (an `ESC [` ends any string sequence, so the
    /// rewrite cannot land inside one).
    ///
    /// Nothing is copied: the parser takes the output in pieces around
    /// each rewrite (it is a stream parser), and only an `ESC` or `ESC [`
    /// that ends an event is carried to the next (joined with it then).
    fn feed(&mut self, data: &[u8]) {
        self.answers = [None, None];
        let joined;
        let input = if self.carry.is_empty() {
            data
        } else {
            joined = [std::mem::take(&mut self.carry).as_slice(), data].concat();
            &joined[..]
        };
        let keep = if input.ends_with(b"\x1b[") {
            2
        } else {
            usize::from(input.ends_with(b"\x1b"))
        };
        let end = input.len() - keep;
        let finder = memchr::memmem::Finder::new(b"\x1b[");
        // Given to the parser up to `done`; searched up to `at`. A match
        // before `end` has its third byte (what `end` leaves out is an
        // `ESC` or `ESC [` at the very end).
        let (mut done, mut at) = (0, 0);
        while let Some(found) = finder.find(&input[at..end]) {
            let csi = at + found;
            at = csi + 2;
            let rewrite: &[u8] = match input[csi + 2] {
                b's' => b"\x1b7",
                b'u' => b"\x1b8",
                _ => continue,
            };
            self.term.process(&input[done..csi]);
            self.term.process(rewrite);
            done = csi + 3;
            at = done;
        }
        self.term.process(&input[done..end]);
        self.carry.extend_from_slice(&input[end..]);
    }

    fn apply(&mut self, size: Size) {
        self.answers = [None, None];
        let nz = |n: u16| std::num::NonZeroU16::new(n.max(1)).expect("at least 1");
        self.term.set_size(nz(size.rows), nz(size.cols));
        self.size_ms = size.unix_ms;
    }

    /// The grid's checkpoint, for the writer to write, if it took enough
    /// output since the last one.
    fn checkpoint(&mut self) -> Option<Job> {
        let dir = self.dir.as_ref()?;
        if self.fed < CHECKPOINT_BYTES || !matches!(self.loading, Loading::Ready) {
            return None;
        }
        let (rows, cols) = self.term.screen().size();
        let head = CheckpointHead {
            seq: self.seq,
            cols: cols.get(),
            rows: rows.get(),
            size_ms: self.size_ms,
        };
        let mut bytes = serde_json::to_vec(&head).unwrap_or_default();
        bytes.push(b'\n');
        write_ansi(self, &mut bytes);
        if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
            return None;
        }
        self.fed = 0;
        // Not synced: a lost checkpoint only costs a longer replay.
        Some(Job::WriteAtomic {
            dir: dir.to_path_buf(),
            name: CHECKPOINT_FILE,
            bytes,
            durable: false,
        })
    }

    /// Asks the writer for the session's sizes and checkpoint (read off
    /// the loop); `load` takes the answer.
    fn start_loading(&mut self, sessions: &mut Sessions, last_seq: u64, tail: u64) {
        let Some(dir) = self.dir.as_deref().map(std::path::Path::to_path_buf) else {
            return;
        };
        let ticket = sessions.submit_task(move || {
            let checkpoint = read_checkpoint(&dir.join(CHECKPOINT_FILE));
            Box::new(Loaded {
                sizes: journal::read_sizes(&dir),
                checkpoint,
            })
        });
        self.loading = Loading::Reading {
            ticket,
            last_seq,
            tail,
        };
    }

    /// Moves the first build on by at most `budget` bytes of checkpoint:
    /// whether the grid is ready for replay, and whether it fed anything.
    fn load(&mut self, sessions: &mut Sessions, budget: usize) -> (bool, bool) {
        match std::mem::replace(&mut self.loading, Loading::Ready) {
            Loading::Ready => (true, false),
            Loading::Reading {
                ticket,
                last_seq,
                tail,
            } => {
                let Some(answer) = sessions.take_answer(ticket) else {
                    self.loading = Loading::Reading {
                        ticket,
                        last_seq,
                        tail,
                    };
                    return (false, false);
                };
                let loaded = answer.downcast::<Loaded>().map_or(
                    Loaded {
                        sizes: Vec::new(),
                        checkpoint: None,
                    },
                    |l| *l,
                );
                self.take_sizes(loaded.sizes);
                match loaded
                    .checkpoint
                    .and_then(|b| self.checkpoint_of(b, last_seq))
                {
                    Some((bytes, at, head)) => {
                        self.term = parser(head.cols, head.rows);
                        self.loading = Loading::Feeding {
                            bytes,
                            at,
                            head,
                            tail,
                        };
                        self.load(sessions, budget)
                    }
                    None => {
                        self.start_at_tail(tail);
                        (true, false)
                    }
                }
            }
            Loading::Feeding {
                bytes,
                at,
                head,
                tail,
            } => {
                let end = bytes.len().min(at + budget);
                self.term.process(&bytes[at..end]);
                if end < bytes.len() {
                    self.loading = Loading::Feeding {
                        bytes,
                        at: end,
                        head,
                        tail,
                    };
                    return (false, true);
                }
                self.seq = head.seq;
                self.size_ms = head.size_ms;
                self.sizes.retain(|s| {
                    s.after > head.seq || (s.after == head.seq && s.unix_ms > head.size_ms)
                });
                self.start_at_tail(tail);
                (true, true)
            }
        }
    }

    /// The sizes read from disk: the first, if it is the launch's, is the
    /// grid's size; the rest apply as events pass them.
    fn take_sizes(&mut self, sizes: Vec<Size>) {
        let mut sizes: VecDeque<Size> = sizes.into();
        if let Some(first) = sizes.front().filter(|f| f.after == 0).copied() {
            sizes.pop_front();
            self.term = parser(first.cols, first.rows);
            self.size_ms = first.unix_ms;
        }
        self.sizes = sizes;
    }

    /// A checkpoint's redraw (the bytes, where it starts) and head, if it
    /// is of use: readable, no newer than the session's events
    /// (`last_seq`), and of a size the daemon could have given (a damaged
    /// or crafted file would make the grid as large as it says).
    fn checkpoint_of(
        &self,
        bytes: Vec<u8>,
        last_seq: u64,
    ) -> Option<(Vec<u8>, usize, CheckpointHead)> {
        let head = checkpoint_head(&bytes).filter(|(h, _)| h.seq <= last_seq);
        let Some(head) = head else {
            // Damaged, crafted, or newer than the session's events.
            log::warn!(
                "{}/{CHECKPOINT_FILE}: a checkpoint of no use; ignored",
                self.dir
                    .as_deref()
                    .map_or(String::new(), |d| d.display().to_string())
            );
            return None;
        };
        Some((bytes, head.1, head.0))
    }

    /// No checkpoint within reach: replay starts from the history's tail,
    /// at the size it had there.
    fn start_at_tail(&mut self, tail: u64) {
        if self.seq < tail {
            self.seq = tail;
            self.apply_sizes_before(tail + 1);
        }
    }

    /// Applies the sizes that took effect before event `seq` (all of them
    /// for `u64::MAX`).
    fn apply_sizes_before(&mut self, seq: u64) {
        while let Some(&size) = self.sizes.front().filter(|s| s.after < seq) {
            self.sizes.pop_front();
            self.apply(size);
        }
    }
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
            if let Some(data) = super::wire::payload_data(&e.payload) {
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

/// The `format` a request asks for: JSON (0) or redraw bytes (1), kept in
/// its hold's `limit`.
const ANSI: usize = 1;

pub fn on_screen(
    api: &mut Api,
    id: &str,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let format = match query_param(query, "format")?.as_deref() {
        None | Some("json") => 0,
        Some("ansi") => ANSI,
        Some(other) => {
            return Err(bad_query(
                "format",
                other,
                "`format` must be `json` or `ansi`.",
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
        limit: format,
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
        let format = usize::from(hold.limit == ANSI);
        match &g.answers[format] {
            Some((seq, kept)) if *seq == g.seq => out.extend_from_slice(kept),
            _ => {
                if format == 1 {
                    write_ansi(g, out);
                } else {
                    write_json(g, out);
                }
                g.answers[format] = Some((g.seq, out.as_slice().into()));
            }
        }
        if format == 1 {
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

fn write_json(g: &Grid, out: &mut Vec<u8>) {
    let screen = g.term.screen();
    let (rows, cols) = screen.size();
    let (row, col) = screen.cursor_position();
    let lines: Vec<String> = screen
        .rows(0, cols.get())
        .map(|mut line| {
            line.truncate(line.trim_end_matches(' ').len());
            line
        })
        .collect();
    super::wire::write_json(
        out,
        &json!({
            "cols": cols.get(),
            "rows": rows.get(),
            "cursor": { "row": row, "col": col, "visible": !screen.hide_cursor() },
            "title": g.term.callbacks().0,
            "alternateScreen": screen.alternate_screen(),
            "lines": lines,
            "seq": g.seq,
        }),
    );
}

/// Bytes that draw the screen on an empty terminal of its size: the
/// title, the alternate screen if it is on, then `vt100`'s redraw (cells
/// with their colours and attributes, the cursor's place and visibility)
/// and the input modes the program set.
fn write_ansi(g: &Grid, out: &mut Vec<u8>) {
    let screen = g.term.screen();
    let title = &g.term.callbacks().0;
    if !title.is_empty() {
        out.extend_from_slice(b"\x1b]2;");
        out.extend_from_slice(title.as_bytes());
        out.push(0x07);
    }
    if screen.alternate_screen() {
        out.extend_from_slice(b"\x1b[?1049h");
    }
    out.extend_from_slice(screen.state_formatted().as_bytes());
}

/// Reads a checkpoint file (on the writer's thread), if it is no larger
/// than `MAX_CHECKPOINT_BYTES`: the length is checked before anything is
/// allocated for it.
fn read_checkpoint(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_CHECKPOINT_BYTES).then_some(bytes)
}

/// A checkpoint's head, if its first line is one and its size is one the
/// daemon could have given, and where its redraw starts. Never trusts what
/// it reads: the fuzz target `checkpoint` feeds it anything.
pub fn checkpoint_head(bytes: &[u8]) -> Option<(CheckpointHead, usize)> {
    let nl = memchr::memchr(b'\n', bytes)?;
    let head = serde_json::from_slice::<CheckpointHead>(&bytes[..nl]).ok()?;
    journal::size_fits(head.cols, head.rows).then_some((head, nl + 1))
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
