//! One session's screen: a `vt100` grid fed its output (with the
//! rewrites `vt100` needs), its first build from disk (sizes and a
//! checkpoint read by the writer, the checkpoint's redraw fed in steps),
//! its checkpoints, and its answers (rows of text, redraw bytes, cells).

use std::collections::VecDeque;
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::MAX_TITLE_BYTES;
use crate::journal::{self, Size};
use crate::session::Sessions;
use crate::writer::Job;

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
pub(super) const MAX_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(serde::Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointHead {
    pub seq: u64,
    pub cols: u16,
    pub rows: u16,
    /// When the newest size it includes was recorded.
    pub size_ms: u64,
}

pub struct Grid {
    /// Which incarnation of the slab key (`Session::serial`).
    pub(super) serial: u64,
    pub(super) term: vt100::Parser<Title>,
    /// The newest event fed to it.
    pub(super) seq: u64,
    /// Sizes still to apply, oldest first.
    pub(super) sizes: VecDeque<Size>,
    /// The start of a sequence `feed` rewrites, split from its end.
    pub(super) carry: Vec<u8>,
    pub(super) asked: Instant,
    /// The session's directory (for its checkpoint).
    pub(super) dir: Option<Box<std::path::Path>>,
    /// Output bytes fed since the last checkpoint.
    pub(super) fed: u64,
    /// When the newest size applied was recorded.
    pub(super) size_ms: u64,
    /// The JSON and redraw answers for the screen as it is, once written,
    /// with the seq they name.
    pub(super) answers: [Option<(u64, Box<[u8]>)>; 3],
    /// Where its first build from disk is.
    pub(super) loading: Loading,
}

/// A grid's first build, before replay: its sizes file and checkpoint are
/// read by the writer (no file is opened on the loop), then the
/// checkpoint's redraw is fed a step at a time like any output.
pub(super) enum Loading {
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
pub(super) struct Loaded {
    sizes: Vec<Size>,
    checkpoint: Option<Vec<u8>>,
}

/// Keeps the window title a program sets (OSC 0 or 2).
#[derive(Default)]
pub struct Title(pub(super) String);

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

pub(super) fn parser(cols: u16, rows: u16) -> vt100::Parser<Title> {
    let nz = |n: u16| std::num::NonZeroU16::new(n.max(1)).expect("at least 1");
    vt100::Parser::new_with_callbacks(nz(rows), nz(cols), 0, Title::default())
}

impl Grid {
    /// An empty grid of `cols`×`rows`, with the sizes still to come.
    pub(super) fn new(
        serial: u64,
        cols: u16,
        rows: u16,
        sizes: VecDeque<Size>,
        now: Instant,
    ) -> Grid {
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
            answers: [None, None, None],
            loading: Loading::Ready,
        }
    }

    /// Cells it may hold: twice its size, for the alternate screen.
    pub(super) fn cells(&self) -> usize {
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
    /// An event never ends inside a character (output is read into whole
    /// characters, `session::complete_utf8_len`), as `vte` needs (see the
    /// steps of `load`).
    pub(super) fn feed(&mut self, data: &[u8]) {
        self.answers = [None, None, None];
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

    pub(super) fn apply(&mut self, size: Size) {
        self.answers = [None, None, None];
        let nz = |n: u16| std::num::NonZeroU16::new(n.max(1)).expect("at least 1");
        self.term.set_size(nz(size.rows), nz(size.cols));
        self.size_ms = size.unix_ms;
    }

    /// The grid's checkpoint, for the writer to write, if it took enough
    /// output since the last one.
    pub(super) fn checkpoint(&mut self) -> Option<Job> {
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
    pub(super) fn start_loading(&mut self, sessions: &mut Sessions, last_seq: u64, tail: u64) {
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
    pub(super) fn load(&mut self, sessions: &mut Sessions, budget: usize) -> (bool, bool) {
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
                // A step ends between characters, not inside one: `vte`
                // 0.15 loses the character after one it finishes across
                // two calls when another unfinished one follows.
                let mut end = bytes.len().min(at + budget);
                let most = bytes.len().min(end + 3);
                while end < most && bytes[end] & 0xc0 == 0x80 {
                    end += 1;
                }
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
    pub(super) fn take_sizes(&mut self, sizes: Vec<Size>) {
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
    pub(super) fn checkpoint_of(
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
    pub(super) fn start_at_tail(&mut self, tail: u64) {
        if self.seq < tail {
            self.seq = tail;
            self.apply_sizes_before(tail + 1);
        }
    }

    /// Applies the sizes that took effect before event `seq` (all of them
    /// for `u64::MAX`).
    pub(super) fn apply_sizes_before(&mut self, seq: u64) {
        while let Some(&size) = self.sizes.front().filter(|s| s.after < seq) {
            self.sizes.pop_front();
            self.apply(size);
        }
    }
}

pub(super) fn write_json(g: &Grid, out: &mut Vec<u8>) {
    let screen = g.term.screen();
    let (_, cols) = screen.size();
    let lines: Vec<String> = screen
        .rows(0, cols.get())
        .map(|mut line| {
            line.truncate(line.trim_end_matches(' ').len());
            line
        })
        .collect();
    write_snapshot(g, "lines", json!(lines), out);
}

/// The snapshot's members around its rows (`lines` or `cells`).
fn write_snapshot(g: &Grid, key: &str, rows_value: serde_json::Value, out: &mut Vec<u8>) {
    let screen = g.term.screen();
    let (rows, cols) = screen.size();
    let (row, col) = screen.cursor_position();
    let mut v = json!({
        "cols": cols.get(),
        "rows": rows.get(),
        "cursor": { "row": row, "col": col, "visible": !screen.hide_cursor() },
        "title": g.term.callbacks().0,
        "alternateScreen": screen.alternate_screen(),
        "seq": g.seq,
    });
    v[key] = rows_value;
    crate::api::wire::write_json(out, &v);
}

/// A colour as the web view's cells carry it: -1 the terminal's default,
/// 0..=255 a palette index, else `0x1000000 | rgb`.
fn colour(c: vt100::Color) -> i64 {
    match c {
        vt100::Color::Default => -1,
        vt100::Color::Idx(i) => i64::from(i),
        vt100::Color::Rgb(r, g, b) => {
            0x100_0000 | (i64::from(r) << 16) | (i64::from(g) << 8) | i64::from(b)
        }
    }
}

/// The screen as the web view draws it: the JSON snapshot, plus `cells`,
/// each row as runs of text of one style, `[text, fg, bg, attrs]` (attrs:
/// 1 bold, 2 dim, 4 italic, 8 underline, 16 inverse). A wide character's
/// second cell is left out (the character covers it).
pub(super) fn write_cells(g: &Grid, out: &mut Vec<u8>) {
    let screen = g.term.screen();
    let (rows, cols) = screen.size();
    let mut grid = Vec::with_capacity(usize::from(rows.get()));
    for r in 0..rows.get() {
        let mut runs: Vec<serde_json::Value> = Vec::new();
        let mut text = String::new();
        let mut style = (-1i64, -1i64, 0u8);
        for c in 0..cols.get() {
            let Some(cell) = screen.cell(r, c) else {
                continue;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let attrs = u8::from(cell.bold())
                | u8::from(cell.dim()) << 1
                | u8::from(cell.italic()) << 2
                | u8::from(cell.underline()) << 3
                | u8::from(cell.inverse()) << 4;
            let this = (colour(cell.fgcolor()), colour(cell.bgcolor()), attrs);
            if this != style && !text.is_empty() {
                runs.push(json!([
                    std::mem::take(&mut text),
                    style.0,
                    style.1,
                    style.2
                ]));
            }
            style = this;
            if cell.has_contents() {
                text.push_str(cell.contents());
            } else {
                text.push(' ');
            }
        }
        // Trailing blanks of the default style draw nothing.
        if style == (-1, -1, 0) {
            text.truncate(text.trim_end_matches(' ').len());
        }
        if !text.is_empty() {
            runs.push(json!([text, style.0, style.1, style.2]));
        }
        grid.push(serde_json::Value::Array(runs));
    }
    write_snapshot(g, "cells", serde_json::Value::Array(grid), out);
}

/// Bytes that draw the screen on an empty terminal of its size: the
/// title, the alternate screen if it is on, then `vt100`'s redraw (cells
/// with their colours and attributes, the cursor's place and visibility)
/// and the input modes the program set.
pub(super) fn write_ansi(g: &Grid, out: &mut Vec<u8>) {
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
pub(super) fn read_checkpoint(path: &std::path::Path) -> Option<Vec<u8>> {
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
