//! argv to an `Invocation` (with `lexopt`): the command, its arguments,
//! and the help texts. No I/O here: `commands` and `attach` act on it.

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `coven daemon serve`: run the daemon in the foreground.
    Serve,
    /// `coven daemon _server` (internal): the serving process the
    /// supervisor starts.
    Server,
    /// `coven daemon _handover` (internal): what this build can take over
    /// from a running daemon, asked before a live restart.
    Handover,
    /// Print this text and exit 0: the overview, or one command's help.
    Help(&'static str),
    Version,
    DaemonStart,
    DaemonStop,
    DaemonStatus,
    DaemonRestart,
    Health,
    Harnesses,
    Sessions {
        /// Archived sessions too.
        all: bool,
        /// At most this many (all of them when `None`).
        limit: Option<u64>,
    },
    Archive {
        id: String,
        /// `unarchive`: bring it back to the default list.
        undo: bool,
    },
    Remove {
        id: String,
    },
    Show {
        id: String,
    },
    Events {
        id: String,
        after: u64,
        follow: bool,
    },
    Input {
        id: String,
        text: String,
    },
    Kill {
        id: String,
        signal: Option<String>,
        grace_ms: Option<u64>,
    },
    Resize {
        id: String,
        cols: u16,
        rows: u16,
    },
    Run(RunArgs),
    Attach {
        id: String,
    },
    Wait {
        id: String,
        what: WaitFor,
        timeout_ms: Option<u64>,
    },
    /// What the session's screen shows (`--ansi`: bytes that redraw it).
    Screen {
        id: String,
        ansi: bool,
    },
    /// The session as an asciicast v2 recording, on stdout.
    Cast {
        id: String,
        /// `--idle-limit S`: pauses longer than S seconds count as S.
        idle_limit: Option<String>,
    },
}

/// What `coven wait` waits for.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitFor {
    Exit,
    /// No output for this many milliseconds.
    Quiet(u64),
    /// Output (as shown, escapes stripped) matching this pattern.
    Match(String),
}

/// `coven run`'s arguments, as given (paths are resolved when it runs).
#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    pub harness: String,
    pub prompt: String,
    pub root: Option<String>,
    pub cwd: Option<String>,
    pub title: Option<String>,
    pub detach: bool,
}

/// A command and its output form.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    /// `--json`: machine-readable output.
    pub json: bool,
}

pub const USAGE: &str = "\
usage: coven <command> [options]

commands:
  daemon serve                      run the daemon in the foreground
  daemon start | stop | status | restart
                                    the daemon in the background
  health                            the daemon's health
  harnesses                         harnesses and whether each is installed
  run <harness> [--] <prompt...>    start a session and attach to it
  sessions [--all] [--limit N]      list sessions, newest first
  show <id>                         one session
  archive <id> | unarchive <id>     hide a session from the list, or show it again
  rm <id>                           delete a finished session and its history
  attach <id>                       a session's terminal (Ctrl-] detaches)
  events <id>                       a session's output
  input <id> <text>                 send text to a session's terminal
  kill <id>                         end a session
  resize <id> <cols> <rows>         set a session's terminal size
  wait <id> --exit | --quiet MS | --match RE [--timeout MS]
                                    until a session ends, goes quiet or prints RE
  screen <id> [--ansi]              what a session's screen shows now
  cast <id> [--idle-limit S]        a session as an asciicast recording (stdout)
  help [command], version

`coven help <command>` (or `coven <command> --help`) describes one command.
<id> may be any unique prefix of a session id. --json prints the API's JSON.
Exit status: 0 done, 1 failed, 2 usage; run and attach end with the session's.

environment:
  COVEN_HOME      the daemon's home (default: $HOME/.coven)
  COVEN_LOG       error, warn, info (default) or debug (daemon serve)
";

/// Each command's `--help`: (first word, text).
const HELP: &[(&str, &str)] = &[
    (
        "daemon",
        "\
usage: coven daemon serve | start | stop | status | restart [--json]

  serve     run the daemon in the foreground, logging to stderr
  start     start it in the background (log: <COVEN_HOME>/daemon.log) and wait
            until it answers; says so and succeeds when one already runs
  stop      send SIGTERM to the daemon (only to the pid that both health and
            daemon.json name) and wait until it is gone; it kills its running
            sessions first. Succeeds, saying \"not running\", when none runs
  status    pid, uptime, socket and live sessions (--json: as one object);
            exits 1 when none runs
  restart   stop, then start
",
    ),
    (
        "health",
        "usage: coven health [--json]\n\nThe daemon's version, pid, socket and counters.\n",
    ),
    (
        "harnesses",
        "\
usage: coven harnesses [--json]

The harnesses the daemon knows (built-in and declared in config.json), the
executable each resolves to on the daemon's PATH, and how to install the
built-in ones that are missing.
",
    ),
    (
        "run",
        "\
usage: coven run <harness> [--root DIR] [--cwd DIR] [--title T] [--detach] [--json] [--] <prompt...>

Starts a session of <harness> with the prompt (the words after the harness,
joined by spaces; put them after -- when one starts with a dash), then
attaches to it as `coven attach` does, and ends with the session's exit
status.

  --root DIR    the project root (default: the current directory)
  --cwd DIR     where the harness starts: absolute, or relative to the root
                (default: the current directory when it is inside the root,
                else the root)
  --title T     the session's title (default: the prompt)
  --detach      print the new session's id and return at once
  --json        with --detach: print the session record
",
    ),
    (
        "attach",
        "\
usage: coven attach <id>

Replays the session's output, then follows it live. What you type goes to the
session's terminal (the local terminal is in raw mode); your terminal's size
is sent on attach and whenever it changes. Ctrl-] detaches and leaves the
session running. Ends when the session does, with its exit status (128+N for
a session ended by signal N); 0 on detach; 1 when the daemon goes away. The
terminal is restored on every way out.
",
    ),
    (
        "sessions",
        "\
usage: coven sessions [--all] [--limit N] [--json]

Sessions, newest first, fetched a page at a time. Archived ones are left out
unless --all is given.
  --all         include archived sessions
  --limit N     at most N sessions
",
    ),
    (
        "archive",
        "usage: coven archive <id> [--json]\n\nHides a session from `coven sessions` (it keeps running if it runs).\n",
    ),
    (
        "unarchive",
        "usage: coven unarchive <id> [--json]\n\nBrings an archived session back to `coven sessions`.\n",
    ),
    (
        "rm",
        "usage: coven rm <id> [--json]\n\nDeletes a finished session: its record, its history and its files.\nA running session is refused (kill it first).\n",
    ),
    (
        "show",
        "usage: coven show <id> [--json]\n\nOne session's record.\n",
    ),
    (
        "events",
        "\
usage: coven events <id> [--after SEQ] [--follow] [--json]

The session's output as text, or (--json) its event records, one per line.
  --after SEQ   only events after this sequence number
  --follow, -f  keep following until the session ends
",
    ),
    (
        "input",
        "usage: coven input <id> <text> [--json]\n\nSends text to the session's terminal as if typed (add \\n yourself).\n",
    ),
    (
        "kill",
        "\
usage: coven kill <id> [--signal SIG] [--grace MS] [--json]

Ends a session: SIG (TERM, INT, HUP or KILL; default TERM) goes to its
process group, and KILL follows after MS milliseconds (default 3000) if it is
still alive.
",
    ),
    (
        "wait",
        "\
usage: coven wait <id> --exit | --quiet MS | --match RE [--timeout MS] [--json]

Waits until the session has ended (--exit), printed nothing for MS
milliseconds (--quiet), or prints text matching the regular expression RE
(--match; the text as shown on screen: escape sequences removed, lines
joined across reads; output from now on). Prints what met the wait.
  --timeout MS  give up after MS milliseconds (default and most: 10 minutes)
Exit status: 0 met, 1 not met by the timeout (or an error).
",
    ),
    (
        "screen",
        "\
usage: coven screen <id> [--ansi] [--json]

Prints what the session's terminal shows now, one line per row (--json:
the API's snapshot with size, cursor and title; --ansi: bytes that redraw
it, colours included, for a terminal of the session's size).
",
    ),
    (
        "cast",
        "\
usage: coven cast <id> [--idle-limit S] > session.cast

Writes the session's output, input and resizes so far as an asciicast v2
recording, which `asciinema play` and asciinema's web player read.
  --idle-limit S  pauses longer than S seconds (a decimal) count as S
",
    ),
    (
        "resize",
        "usage: coven resize <id> <cols> <rows> [--json]\n\nSets the session's terminal size (1..=1000 each).\n",
    ),
];

/// The help text for a command word, or the overview.
fn help_for(word: Option<&str>) -> Result<&'static str, String> {
    match word {
        None | Some("help") => Ok(USAGE),
        Some(w) => HELP
            .iter()
            .find(|(name, _)| *name == w)
            .map(|(_, text)| *text)
            .ok_or_else(|| format!("no such command: {w}")),
    }
}

/// Which options each command takes (`--json` and `--help` go anywhere).
fn allowed(command: &Command) -> &'static [&'static str] {
    match command {
        Command::Events { .. } => &["after", "follow"],
        Command::Kill { .. } => &["signal", "grace"],
        Command::Run(_) => &["root", "cwd", "title", "detach"],
        Command::Sessions { .. } => &["all", "limit"],
        Command::Wait { .. } => &["exit", "quiet", "match", "timeout"],
        Command::Screen { .. } => &["ansi"],
        Command::Cast { .. } => &["idle-limit"],
        _ => &[],
    }
}

/// An option's value, as UTF-8.
fn text(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "arguments must be UTF-8".to_string())
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut json = false;
    let mut help = false;
    let mut version = false;
    let mut given: Vec<&'static str> = Vec::new();
    let mut after = None;
    let mut signal = None;
    let mut grace_ms = None;
    let mut follow = false;
    let mut detach = false;
    let mut all = false;
    let mut limit = None;
    let mut waits: Vec<WaitFor> = Vec::new();
    let mut timeout_ms = None;
    let mut ansi = false;
    let mut idle_limit = None;
    let (mut root, mut cwd, mut title) = (None, None, None);
    let number = |v: String, what: &str| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{what} must be a non-negative integer"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("json") => json = true,
            Long("help") | Short('h') => help = true,
            Long("version") | Short('V') => version = true,
            Long("follow") | Short('f') => {
                follow = true;
                given.push("follow");
            }
            Long("detach") | Short('d') => {
                detach = true;
                given.push("detach");
            }
            Long("all") | Short('a') => {
                all = true;
                given.push("all");
            }
            Long("ansi") => {
                ansi = true;
                given.push("ansi");
            }
            Long("idle-limit") => {
                idle_limit = Some(text(&mut parser)?);
                given.push("idle-limit");
            }
            Long("exit") => {
                waits.push(WaitFor::Exit);
                given.push("exit");
            }
            Long("quiet") => {
                waits.push(WaitFor::Quiet(number(text(&mut parser)?, "--quiet")?));
                given.push("quiet");
            }
            Long("match") => {
                waits.push(WaitFor::Match(text(&mut parser)?));
                given.push("match");
            }
            Long("timeout") => {
                timeout_ms = Some(number(text(&mut parser)?, "--timeout")?);
                given.push("timeout");
            }
            Long("limit") => {
                limit = Some(number(text(&mut parser)?, "--limit")?);
                given.push("limit");
            }
            Long("after") => {
                after = Some(number(text(&mut parser)?, "--after")?);
                given.push("after");
            }
            Long("grace") => {
                grace_ms = Some(number(text(&mut parser)?, "--grace")?);
                given.push("grace");
            }
            Long("signal") => {
                signal = Some(text(&mut parser)?);
                given.push("signal");
            }
            Long("root") => {
                root = Some(text(&mut parser)?);
                given.push("root");
            }
            Long("cwd") => {
                cwd = Some(text(&mut parser)?);
                given.push("cwd");
            }
            Long("title") => {
                title = Some(text(&mut parser)?);
                given.push("title");
            }
            Value(v) => words.push(
                v.into_string()
                    .map_err(|_| "arguments must be UTF-8".to_string())?,
            ),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    if help {
        let text = help_for(w.first().copied())?;
        return Ok(Invocation {
            command: Command::Help(text),
            json,
        });
    }
    if version {
        return Ok(Invocation {
            command: Command::Version,
            json,
        });
    }
    let id = |s: &str| s.to_owned();
    let command = match w.as_slice() {
        ["daemon", "serve"] => Command::Serve,
        ["daemon", "_server"] => Command::Server,
        ["daemon", "_handover"] => Command::Handover,
        ["daemon", "start"] => Command::DaemonStart,
        ["daemon", "stop"] => Command::DaemonStop,
        ["daemon", "status"] => Command::DaemonStatus,
        ["daemon", "restart"] => Command::DaemonRestart,
        ["harnesses"] => Command::Harnesses,
        [] => Command::Help(USAGE),
        ["help"] => Command::Help(USAGE),
        ["help", topic] => Command::Help(help_for(Some(topic))?),
        ["version"] => Command::Version,
        ["health"] => Command::Health,
        ["sessions"] => Command::Sessions { all, limit },
        ["archive", s] => Command::Archive {
            id: id(s),
            undo: false,
        },
        ["unarchive", s] => Command::Archive {
            id: id(s),
            undo: true,
        },
        ["rm", s] => Command::Remove { id: id(s) },
        ["show", s] => Command::Show { id: id(s) },
        ["attach", s] => Command::Attach { id: id(s) },
        ["screen", s] => Command::Screen { id: id(s), ansi },
        ["cast", s] => Command::Cast {
            id: id(s),
            idle_limit: idle_limit.take(),
        },
        ["wait", s] => {
            if waits.len() != 1 {
                return Err("wait: give one of --exit, --quiet MS, --match RE".into());
            }
            Command::Wait {
                id: id(s),
                what: waits.remove(0),
                timeout_ms,
            }
        }
        ["events", s] => Command::Events {
            id: id(s),
            after: after.unwrap_or(0),
            follow,
        },
        ["input", s, text] => Command::Input {
            id: id(s),
            text: (*text).to_owned(),
        },
        ["kill", s] => Command::Kill {
            id: id(s),
            signal,
            grace_ms,
        },
        ["resize", s, cols, rows] => Command::Resize {
            id: id(s),
            cols: cols
                .parse()
                .map_err(|_| "cols must be a number".to_string())?,
            rows: rows
                .parse()
                .map_err(|_| "rows must be a number".to_string())?,
        },
        ["run"] => return Err("run: which harness? (coven harnesses lists them)".into()),
        ["run", _] => return Err("run: a prompt is required after the harness".into()),
        ["run", harness, prompt @ ..] => Command::Run(RunArgs {
            harness: (*harness).to_owned(),
            prompt: prompt.join(" "),
            root,
            cwd,
            title,
            detach,
        }),
        [first, ..] if help_for(Some(first)).is_ok() => {
            return Err(format!(
                "wrong arguments for {first}\n\n{}",
                help_for(Some(first))?
            ))
        }
        _ => return Err(format!("unknown command: {}\n\n{USAGE}", w.join(" "))),
    };
    let allowed = allowed(&command);
    if let Some(stray) = given.iter().find(|o| !allowed.contains(o)) {
        return Err(format!(
            "--{stray} does not apply to {}",
            w.first().copied().unwrap_or("")
        ));
    }
    Ok(Invocation { command, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Invocation, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn commands() {
        assert_eq!(p("daemon serve").unwrap().command, Command::Serve);
        assert_eq!(p("--help").unwrap().command, Command::Help(USAGE));
        assert_eq!(p("").unwrap().command, Command::Help(USAGE));
        assert_eq!(p("--version").unwrap().command, Command::Version);
        assert!(p("daemon").is_err());
        assert!(p("daemon serve extra").is_err());
        let inv = p("events abc --after 7 --json").unwrap();
        assert!(inv.json);
        assert_eq!(
            inv.command,
            Command::Events {
                id: "abc".into(),
                after: 7,
                follow: false
            }
        );
        assert_eq!(
            p("kill abc --signal INT --grace 500").unwrap().command,
            Command::Kill {
                id: "abc".into(),
                signal: Some("INT".into()),
                grace_ms: Some(500)
            }
        );
        assert_eq!(
            p("resize abc 100 40").unwrap().command,
            Command::Resize {
                id: "abc".into(),
                cols: 100,
                rows: 40
            }
        );
        assert!(p("resize abc x 40").is_err());
        assert!(p("events abc --after -1").is_err());
        assert!(p("show").is_err());
        assert!(p("bogus --nope").is_err());
    }
}
