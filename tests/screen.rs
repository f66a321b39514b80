//! `GET /sessions/:id/screen`: the screen a session's program drew, checked
//! against tmux. Each scripted byte stream is played by a session and, in
//! the same size, by a tmux pane; the snapshot's rows, cursor and screen
//! mode must equal what `tmux capture-pane` and `display` report. The
//! `format=ansi` redraw is played into a second tmux pane, which must then
//! show the same cells, colours and attributes (`capture-pane -e`) as the
//! pane that played the original.

mod support;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

/// A tmux server of its own (its own socket, no user configuration).
struct Tmux {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g status off\n").unwrap();
        let socket = dir.path().join("tmux.sock");
        Tmux { dir, socket }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(self.dir.path().join("tmux.conf"))
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs (Debian package `tmux`)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Plays `file` in a new pane of the given size, then sets the pane's
    /// title to `DONE` and waits until tmux has shown that (so it has taken
    /// every byte before it).
    fn play(&self, name: &str, file: &Path, cols: u16, rows: u16) {
        let cmd = format!(
            "cat '{}'; printf '\\033]2;DONE\\007'; sleep 600",
            file.display()
        );
        let (c, r) = (cols.to_string(), rows.to_string());
        self.run(&["new-session", "-d", "-s", name, "-x", &c, "-y", &r, &cmd]);
        wait_for("tmux to play the script", || {
            (self.display(name, "#{pane_title}") == "DONE").then_some(())
        });
        assert_eq!(
            self.display(name, "#{pane_width}x#{pane_height}"),
            format!("{cols}x{rows}")
        );
    }

    fn display(&self, name: &str, format: &str) -> String {
        self.run(&["display", "-p", "-t", name, format])
            .trim_end()
            .to_owned()
    }

    /// The pane's rows, trailing blanks trimmed (as `capture-pane -p` does).
    fn lines(&self, name: &str) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", name])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The pane's cells with their attributes (`capture-pane -e`), in a
    /// form that does not depend on where tmux put the attribute changes.
    fn cells(&self, name: &str) -> Vec<Vec<(char, String)>> {
        cells(&self.run(&["capture-pane", "-p", "-e", "-t", name]))
    }

    /// `(row, col, alternate screen, cursor visible)`.
    fn cursor(&self, name: &str) -> (u64, u64, bool, bool) {
        let v = self.display(
            name,
            "#{cursor_y} #{cursor_x} #{alternate_on} #{cursor_flag}",
        );
        let f: Vec<u64> = v.split(' ').map(|n| n.parse().unwrap()).collect();
        (f[0], f[1], f[2] == 1, f[3] == 1)
    }
}

/// Each row of a `capture-pane -e` text as (character, attributes) cells,
/// without the blank default cells that end it. Attributes are the SGR
/// parameters in effect, applied in order to a small state (the test reads
/// tmux's output; it is not a terminal).
fn cells(text: &str) -> Vec<Vec<(char, String)>> {
    #[derive(Clone, Default, PartialEq, Debug)]
    struct Pen {
        fg: String,
        bg: String,
        flags: std::collections::BTreeSet<u16>,
    }
    let mut pen = Pen::default();
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut row: Vec<(char, String)> = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\x1b' {
                row.push((c, format!("{pen:?}")));
                continue;
            }
            assert_eq!(chars.next(), Some('['), "only SGR escapes in {line:?}");
            let mut params = String::new();
            for p in chars.by_ref() {
                if p == 'm' {
                    break;
                }
                params.push(p);
            }
            let nums: Vec<u16> = params
                .split([';', ':'])
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            let mut i = 0;
            while i < nums.len() {
                match nums[i] {
                    0 => pen = Pen::default(),
                    n @ (22..=29) => {
                        pen.flags.remove(&(n - 20));
                        if n == 22 {
                            pen.flags.remove(&1);
                        }
                    }
                    n @ (1..=9) => {
                        pen.flags.insert(n);
                    }
                    39 => pen.fg.clear(),
                    49 => pen.bg.clear(),
                    n @ (38 | 48) => {
                        let take = if nums.get(i + 1) == Some(&5) { 2 } else { 4 };
                        let end = (i + 1 + take).min(nums.len());
                        let colour = format!("{:?}", &nums[i + 1..end]);
                        if n == 38 {
                            pen.fg = colour;
                        } else {
                            pen.bg = colour;
                        }
                        i = end - 1;
                    }
                    n @ (30..=37 | 90..=97) => pen.fg = n.to_string(),
                    n @ (40..=47 | 100..=107) => pen.bg = n.to_string(),
                    _ => {}
                }
                i += 1;
            }
        }
        let blank = format!("{:?}", Pen::default());
        while row.last().is_some_and(|(c, a)| *c == ' ' && *a == blank) {
            row.pop();
        }
        rows.push(row);
    }
    rows
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// Scripted screens: each exercises what a full-screen program does.
fn scripts() -> Vec<(&'static str, u16, u16, String)> {
    let mut numbered = String::new();
    for i in 1..=30 {
        numbered.push_str(&format!("line {i}\r\n"));
    }
    numbered.push_str(&"wrap".repeat(24));
    let fill: String = (0..10)
        .map(|r| format!("\x1b[{};1H{}", r + 1, "X".repeat(40)))
        .collect();
    vec![
        ("wrap and scroll", 40, 10, numbered),
        (
            "erase in line and display",
            40,
            10,
            format!(
                "{fill}\x1b[2;5H\x1b[K\x1b[3;10H\x1b[1K\x1b[4;1H\x1b[2K\x1b[6;20H\x1b[1J\x1b[9;30H\x1b[J\x1b[8;3Hhere"
            ),
        ),
        (
            "scroll region, reverse index, insert and delete lines",
            40,
            10,
            "\x1b[2J\x1b[Htop\x1b[10;1Hbottom\x1b[3;7r\x1b[7;1H\
             a\r\nb\r\nc\r\nd\r\ne\r\nf\r\ng\r\nh\
             \x1b[3;1H\x1bM\x1bMreversed\x1b[5;1H\x1b[2L\x1b[6;1H\x1b[1M\x1b[r\x1b[1;10Hend"
                .into(),
        ),
        (
            "cursor save and restore",
            40,
            10,
            "abc\x1b7\x1b[5;5Hxyz\x1b8DEF\x1b[s\x1b[8;8Hmid\x1b[uGHI\r\n".into(),
        ),
        (
            "wide and combining characters",
            40,
            10,
            format!(
                "\u{65e5}\u{672c}\u{8a9e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}\r\n\
                 e\u{301}le\u{300}ve cafe\u{301}\r\n\
                 \u{1f44d} ok\r\n{}\u{6f22}\u{5b57}\r\n{}\u{6f22}x",
                "a".repeat(39),
                "b".repeat(38)
            ),
        ),
        (
            "alternate screen, drawn and left on",
            40,
            10,
            "$ prompt line\r\n\x1b[?1049h\x1b[H\x1b[2J\
             \u{250c}\u{2500}\u{2500}\u{2510}\r\n\u{2502}hi\u{2502}\r\n\u{2514}\u{2500}\u{2500}\u{2518}\
             \x1b[10;1H\x1b[7mstatus: ok\x1b[0m\x1b[?25l\x1b[5;3H"
                .into(),
        ),
        (
            "alternate screen, left",
            40,
            10,
            "$ before\r\n\x1b[?1049h\x1b[2J\x1b[Hfull screen\x1b[?1049lafter\r\n".into(),
        ),
        (
            "insert, delete and erase characters, tabs",
            40,
            10,
            "0123456789\x1b[1;3H\x1b[2@\x1b[1;1H\x1b[3P\r\n\ta\tb\r\nabcdefghij\x1b[3;3H\x1b[5X\r\n"
                .into(),
        ),
        (
            "a full-screen program's redraws, in colour",
            60,
            12,
            "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J\x1b[1;1H\x1b[44;97m Coven \x1b[K\x1b[0m\
             \x1b[3;2H\x1b[1mbold\x1b[22m \x1b[3munderlined? no, italic\x1b[23m \x1b[4munder\x1b[24m\
             \x1b[4;2H\x1b[38;5;208m256-colour\x1b[0m \x1b[38;2;10;200;30mtruecolour\x1b[0m\
             \x1b[12;1H\x1b[7m> \x1b[27m\x1b[5;2Hprogress [    ]\x1b[5;12H\x1b[32m##\x1b[0m\
             \x1b[3;6H\x1b[0K\x1b[6;1H\x1b[2K\x1b[12;3Htyped\x1b[?25h"
                .into(),
        ),
        (
            "long wrapped line, then a resize-free scroll of it",
            20,
            5,
            format!("{}\r\nnext\r\n\r\n\r\n\r\nlast", "abcdefghij".repeat(7)),
        ),
    ]
}

fn launch(d: &Daemon, script: &Path, cols: u16, rows: u16) -> String {
    let cmd = format!(
        "cat '{}'; printf '\\033]2;DONE\\007'; sleep 600",
        script.display()
    );
    d.launch_sized(&cmd, cols, rows)
}

fn screen(d: &Daemon, id: &str) -> Value {
    let r = d.get(&format!("/api/v1/sessions/{id}/screen"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The session's screen once it has shown the whole script.
fn played(d: &Daemon, id: &str) -> Value {
    wait_for("the session to play the script", || {
        let s = screen(d, id);
        (s["title"] == "DONE").then_some(s)
    })
}

#[test]
fn snapshots_match_tmux() {
    let d = Daemon::with_sessions("");
    let tmux = Tmux::new();
    let mut differ = Vec::new();
    for (i, (name, cols, rows, bytes)) in scripts().into_iter().enumerate() {
        let file = d.dir.path().join(format!("script{i}"));
        std::fs::write(&file, bytes).unwrap();
        let pane = format!("p{i}");
        tmux.play(&pane, &file, cols, rows);
        let id = launch(&d, &file, cols, rows);
        let got = played(&d, &id);

        assert_eq!(
            (got["cols"].as_u64(), got["rows"].as_u64()),
            (Some(cols.into()), Some(rows.into()))
        );
        let lines: Vec<String> = got["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        let want_lines = tmux.lines(&pane);
        let (row, col, alt, visible) = tmux.cursor(&pane);
        let cursor = (
            got["cursor"]["row"].as_u64().unwrap(),
            got["cursor"]["col"].as_u64().unwrap(),
            got["alternateScreen"].as_bool().unwrap(),
            got["cursor"]["visible"].as_bool().unwrap(),
        );
        if lines != want_lines || cursor != (row, col, alt, visible) {
            differ.push(format!(
                "{name}:\n  coven {cursor:?} {lines:#?}\n  tmux  {:?} {want_lines:#?}",
                (row, col, alt, visible)
            ));
            continue;
        }

        // The redraw, played on an empty pane of the same size, shows the
        // same cells with the same colours and attributes.
        let ansi = d.get_raw(&format!("/api/v1/sessions/{id}/screen?format=ansi"));
        let redraw = d.dir.path().join(format!("redraw{i}"));
        std::fs::write(&redraw, &ansi).unwrap();
        let again = format!("r{i}");
        tmux.play(&again, &redraw, cols, rows);
        if tmux.cells(&again) != tmux.cells(&pane) || tmux.cursor(&again) != tmux.cursor(&pane) {
            differ.push(format!(
                "{name} (redraw):\n  redrawn {:?}\n{:?}\n  original {:?}\n{:?}",
                tmux.cursor(&again),
                tmux.cells(&again),
                tmux.cursor(&pane),
                tmux.cells(&pane)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        scripts().len(),
        differ.join("\n")
    );
}

#[test]
fn follows_resizes_and_survives_a_restart() {
    let mut d = Daemon::with_sessions("");
    let id = d.launch_sized(
        r#"printf 'abcdefghijklmnopqrstuvwxyz'; read x; printf '\r\n[%s]' "$x"; read y"#,
        20,
        5,
    );
    d.wait_output(&id, "xyz");
    let before = screen(&d, &id);
    assert_eq!(before["lines"][0], "abcdefghijklmnopqrst");
    assert_eq!(before["lines"][1], "uvwxyz");
    assert_eq!(
        (before["cols"].clone(), before["rows"].clone()),
        (20.into(), 5.into())
    );
    assert_eq!(before["seq"], d.events(&id).last().unwrap()["seq"]);

    let r = d.post(
        &format!("/api/v1/sessions/{id}/resize"),
        br#"{"cols":30,"rows":6}"#,
    );
    assert_eq!(r.status, 200);
    let r = d.post(
        &format!("/api/v1/sessions/{id}/input"),
        br#"{"data":"go\n"}"#,
    );
    assert_eq!(r.status, 202);
    d.wait_output(&id, "[go]");
    let after = wait_for("the screen to show the answer", || {
        let s = screen(&d, &id);
        s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "[go]")
            .then_some(s)
    });
    assert_eq!(
        (after["cols"].clone(), after["rows"].clone()),
        (30.into(), 6.into())
    );

    let r = d.post(&format!("/api/v1/sessions/{id}/input"), br#"{"data":"\n"}"#);
    assert_eq!(r.status, 202);
    d.wait_exit_event(&id);
    let done = screen(&d, &id);
    d.stop();
    d.spawn();
    // Built from the journal and the sizes it recorded, by a new process.
    let again = screen(&d, &id);
    assert_eq!(again, done);
    assert_eq!(
        (again["cols"].clone(), again["rows"].clone()),
        (30.into(), 6.into())
    );
}

#[test]
fn a_long_history_is_replayed_in_steps_and_checkpointed() {
    // A ring far smaller than the history: the build reads the journal.
    let mut d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    // About 3 MiB of output (several replay steps), then a last screen.
    let id = d.launch_sized(r"i=0; while [ $i -lt 3000 ]; do printf '%01000d\r\n' $i; i=$((i+1)); done; printf '\033[2J\033[Hlast screen\033[3;5Hthere'",
        100,
        10,
    );
    d.wait_exit_event(&id);
    let got = screen(&d, &id);
    let lines: Vec<&str> = got["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines[0], "last screen");
    assert_eq!(lines[2], "    there");
    assert!(lines[3..].iter().all(|l| l.is_empty()), "{lines:?}");
    let last = d.events(&id).last().unwrap()["seq"].clone();
    assert_eq!(got["seq"], last);

    // The build left a checkpoint at the newest event: a new daemon starts
    // from it and replays nothing.
    let ckpt = d.session_dir(&id).join("screen.ckpt");
    let text = std::fs::read(&ckpt).expect("a checkpoint");
    let nl = text.iter().position(|&b| b == b'\n').unwrap();
    let head: Value = serde_json::from_slice(&text[..nl]).unwrap();
    assert_eq!(head["seq"], last);
    d.stop();
    d.spawn();
    assert_eq!(screen(&d, &id), got);
    // What the checkpoint says is what the screen shows (it is read, not
    // rebuilt from the journal).
    d.stop();
    let mut forged = text[..=nl].to_vec();
    forged.extend_from_slice(b"\x1b[H\x1b[2Jfrom the checkpoint");
    std::fs::write(&ckpt, forged).unwrap();
    d.spawn();
    assert_eq!(screen(&d, &id)["lines"][0], "from the checkpoint");

    // A checkpoint, or a recorded size, larger than the daemon could have
    // written is not trusted (it once made a grid of 65535 x 65535 cells):
    // the screen is rebuilt from the journal at the session's true size.
    d.stop();
    let mut huge = head.clone();
    huge["cols"] = 65535.into();
    huge["rows"] = 65535.into();
    let mut forged = serde_json::to_vec(&huge).unwrap();
    forged.push(b'\n');
    forged.extend_from_slice(b"\x1b[H\x1b[2Jfrom the checkpoint");
    std::fs::write(&ckpt, forged).unwrap();
    let sizes = d.session_dir(&id).join("sizes");
    let mut recorded = std::fs::read_to_string(&sizes).unwrap();
    recorded.push_str("0 1 65535 65535\n");
    std::fs::write(&sizes, recorded).unwrap();
    d.spawn();
    assert_eq!(screen(&d, &id), got);
    assert!(d.log().contains("a checkpoint of no use"), "{}", d.log());
}

#[test]
fn bad_requests_are_refused() {
    let d = Daemon::with_sessions("");
    let id = d.launch_sized("printf hi; sleep 30", 20, 5);
    let r = d.get(&format!("/api/v1/sessions/{id}/screen?format=svg"));
    assert_eq!((r.status, r.code()), (400, "invalid_request".to_owned()));
    let r = d.get("/api/v1/sessions/nope/screen");
    assert_eq!((r.status, r.code()), (404, "session_not_found".to_owned()));
    let r = d.post(&format!("/api/v1/sessions/{id}/screen"), b"{}");
    assert_eq!(r.status, 405);
    let r = d.get(&format!("/api/v1/sessions/{id}/screen?format=ansi"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn builds_at_once_share_the_loop_and_all_finish() {
    let d = Daemon::with_sessions(r#""ringBytes": 65536"#);
    // 4 MB of history each: 16 steps of replay per screen, one step a turn
    // for all of them, so building the three takes some 48 turns.
    let ids: Vec<String> = (0..3)
        .map(|n| {
            d.launch_sized(
                &format!(
                    r"yes {:0>99} | head -c 4000000; printf '\033[2J\033[Hsession {n}'",
                    0
                ),
                100,
                5,
            )
        })
        .collect();
    for id in &ids {
        d.wait_exit_event(id);
    }
    // The three screens are asked for first (their connections come first
    // in the listener's queue, and each request with its connect).
    let mut builds: Vec<UnixStream> = ids
        .iter()
        .map(|id| {
            let mut c = d.connect();
            send(
                &mut c,
                "GET",
                &format!("/api/v1/sessions/{id}/screen"),
                None,
            );
            c
        })
        .collect();
    // A client that is not building a screen is served meanwhile: its
    // answer comes while a build is still under way (its answer not sent).
    assert_eq!(d.get("/api/v1/health").status, 200);
    let unanswered = builds
        .iter()
        .filter(|c| {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() == 0
        })
        .count();
    assert!(unanswered > 0, "health waited for every build to end");
    for (n, c) in builds.iter_mut().enumerate() {
        let r = read_response(c).expect("a screen");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["lines"][0], format!("session {n}"));
    }
}
