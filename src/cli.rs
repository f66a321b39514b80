//! argv to a `Command` (with `lexopt`), and the client commands' output.
//! Commands reach the daemon only through `client::Client`.

use std::io::Write;

use serde_json::{json, Value};

use crate::client::{Client, ClientError};

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `coven daemon serve`: run the daemon in the foreground.
    Serve,
    /// Print this text and exit 0: the overview, or one command's help.
    Help(&'static str),
    Version,
    DaemonStart,
    DaemonStop,
    DaemonStatus,
    DaemonRestart,
    Health,
    Harnesses,
    Sessions,
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
  sessions                          list sessions, newest first
  show <id>                         one session
  attach <id>                       a session's terminal (Ctrl-] detaches)
  events <id>                       a session's output
  input <id> <text>                 send text to a session's terminal
  kill <id>                         end a session
  resize <id> <cols> <rows>         set a session's terminal size
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
        "usage: coven sessions [--json]\n\nAll sessions, newest first.\n",
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
        ["sessions"] => Command::Sessions,
        ["show", s] => Command::Show { id: id(s) },
        ["attach", s] => Command::Attach { id: id(s) },
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

fn print_json(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "{v}")
}

/// Runs a client command, writing its output to `out`.
pub fn run(client: &Client, inv: &Invocation, out: &mut impl Write) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Protocol(format!("writing output: {e}"));
    match &inv.command {
        Command::Health => {
            let h = client.call("GET", "/api/v1/health", None)?;
            if inv.json {
                return print_json(out, &h).map_err(io);
            }
            let stats = &h["stats"];
            writeln!(
                out,
                "ok {}  coven {}  pid {}  socket {}\nsessions {} live / {} total  connections {}",
                h["apiVersion"].as_str().unwrap_or("?"),
                h["covenVersion"].as_str().unwrap_or("?"),
                h["daemon"]["pid"],
                h["daemon"]["socket"].as_str().unwrap_or("?"),
                stats["liveSessions"],
                stats["sessions"],
                stats["openConnections"],
            )
            .map_err(io)
        }
        Command::Sessions => {
            let list = client.call("GET", "/api/v1/sessions", None)?;
            if inv.json {
                return print_json(out, &list).map_err(io);
            }
            writeln!(
                out,
                "{:<23} {:<9} {:<8} {:<20} TITLE",
                "ID", "STATUS", "HARNESS", "CREATED"
            )
            .map_err(io)?;
            for s in list.as_array().into_iter().flatten() {
                let title: String = s["title"].as_str().unwrap_or("").chars().take(50).collect();
                writeln!(
                    out,
                    "{:<23} {:<9} {:<8} {:<20} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["harness"].as_str().unwrap_or(""),
                    s["created_at"].as_str().unwrap_or(""),
                    title.replace('\n', " ")
                )
                .map_err(io)?;
            }
            Ok(())
        }
        Command::Show { id } => {
            let id = client.resolve_id(id)?;
            let s = client.call("GET", &format!("/api/v1/sessions/{id}"), None)?;
            if inv.json {
                return print_json(out, &s).map_err(io);
            }
            for (k, v) in s.as_object().into_iter().flatten() {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                writeln!(out, "{k:<13} {v}").map_err(io)?;
            }
            Ok(())
        }
        Command::Events {
            id,
            after,
            follow: true,
        } => {
            let id = client.resolve_id(id)?;
            let json = inv.json;
            let mut ended = false;
            client.stream(
                &format!("/api/v1/sessions/{id}/stream?afterSeq={after}"),
                |e| {
                    ended |= e["kind"] == "exit";
                    write_event(out, json, e)?;
                    out.flush()
                },
            )?;
            // A session that never ran (failed, orphaned) has no exit event;
            // a live one whose stream broke lost its daemon.
            let live = || {
                client
                    .call("GET", &format!("/api/v1/sessions/{id}"), None)
                    .map_or(true, |s| s["status"] == "running")
            };
            if !ended && live() {
                return Err(ClientError::Unreachable(std::io::Error::other(
                    "the stream ended before the session did",
                )));
            }
            Ok(())
        }
        Command::Harnesses => {
            let h = client.call("GET", "/api/v1/harnesses", None)?;
            if inv.json {
                return print_json(out, &h).map_err(io);
            }
            for x in h["harnesses"].as_array().into_iter().flatten() {
                let id = x["id"].as_str().unwrap_or("");
                let exe = x["executable"].as_str().unwrap_or("");
                if x["available"] == true {
                    writeln!(out, "{id:<10} {exe}").map_err(io)?;
                } else {
                    writeln!(
                        out,
                        "{id:<10} not installed ({exe} is not on the daemon's PATH){}",
                        install_hint(id)
                    )
                    .map_err(io)?;
                }
            }
            Ok(())
        }
        Command::Events {
            id,
            after,
            follow: false,
        } => {
            let id = client.resolve_id(id)?;
            let json = inv.json;
            client.events(&id, *after, |e| {
                write_event(out, json, e).map(|()| None::<()>).map_err(io)
            })?;
            out.flush().map_err(io)
        }
        Command::Input { id, text } => {
            let id = client.resolve_id(id)?;
            let r = client.call(
                "POST",
                &format!("/api/v1/sessions/{id}/input"),
                Some(&json!({ "data": text })),
            )?;
            accepted(out, inv.json, &r).map_err(io)
        }
        Command::Kill {
            id,
            signal,
            grace_ms,
        } => {
            let id = client.resolve_id(id)?;
            let mut body = json!({});
            if let Some(s) = signal {
                body["signal"] = json!(s);
            }
            if let Some(g) = grace_ms {
                body["graceMs"] = json!(g);
            }
            let r = client.call("POST", &format!("/api/v1/sessions/{id}/kill"), Some(&body))?;
            accepted(out, inv.json, &r).map_err(io)
        }
        Command::Resize { id, cols, rows } => {
            let id = client.resolve_id(id)?;
            let r = client.call(
                "POST",
                &format!("/api/v1/sessions/{id}/resize"),
                Some(&json!({ "cols": cols, "rows": rows })),
            )?;
            accepted(out, inv.json, &r).map_err(io)
        }
        Command::Run(_) | Command::Attach { .. } => Ok(()),
        Command::Serve
        | Command::Help(_)
        | Command::Version
        | Command::DaemonStart
        | Command::DaemonStop
        | Command::DaemonStatus
        | Command::DaemonRestart => Ok(()),
    }
}

/// An event as `events` prints it: the record (`--json`) or its output.
fn write_event(out: &mut impl Write, json: bool, e: &Value) -> std::io::Result<()> {
    if json {
        return print_json(out, e);
    }
    if e["kind"] == "output" {
        let payload = crate::client::payload(e);
        out.write_all(payload["data"].as_str().unwrap_or("").as_bytes())?;
    }
    Ok(())
}

fn install_hint(id: &str) -> &'static str {
    match id {
        "codex" => "; install: npm install -g @openai/codex",
        "claude" => "; install: npm install -g @anthropic-ai/claude-code",
        "copilot" => "; install: npm install -g @github/copilot",
        _ => "",
    }
}

/// How long `daemon start` waits for health, and `stop` for the exit.
const LIFECYCLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `daemon start | stop | status | restart`.
pub fn lifecycle(
    client: &Client,
    inv: &Invocation,
    home: &std::path::Path,
    exe: &std::path::Path,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Protocol(e.to_string());
    let running = || client.call("GET", "/api/v1/health", None).ok();
    match &inv.command {
        Command::DaemonStatus => match running() {
            Some(h) => {
                let d = &h["daemon"];
                let up = d["startedAt"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| d.as_secs());
                if inv.json {
                    let status = json!({
                        "running": true,
                        "pid": d["pid"],
                        "startedAt": d["startedAt"],
                        "uptimeSeconds": up,
                        "socket": d["socket"],
                        "liveSessions": h["stats"]["liveSessions"],
                    });
                    return print_json(out, &status).map_err(io);
                }
                writeln!(
                    out,
                    "running  pid {}  up {}s  socket {}  live sessions {}",
                    d["pid"],
                    up,
                    d["socket"].as_str().unwrap_or("?"),
                    h["stats"]["liveSessions"]
                )
                .map_err(io)
            }
            None => Err(ClientError::Unreachable(std::io::Error::other(
                "not running",
            ))),
        },
        Command::DaemonStart => {
            if let Some(h) = running() {
                return writeln!(out, "already running (pid {})", h["daemon"]["pid"]).map_err(io);
            }
            crate::home::prepare(home).map_err(io)?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(home.join("daemon.log"))
                .map_err(io)?;
            let mut cmd = std::process::Command::new(exe);
            cmd.args(["daemon", "serve"])
                .env("COVEN_HOME", home)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().map_err(io)?)
                .stderr(log);
            // SAFETY: setsid in the child only: detach from our terminal.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    libc::setsid();
                    Ok(())
                });
            }
            let mut child = cmd.spawn().map_err(io)?;
            let start = std::time::Instant::now();
            loop {
                if let Some(h) = running() {
                    return writeln!(out, "started (pid {})", h["daemon"]["pid"]).map_err(io);
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(ClientError::Protocol(format!(
                        "the daemon exited at start ({status}); see {}",
                        home.join("daemon.log").display()
                    )));
                }
                if start.elapsed() > LIFECYCLE_WAIT {
                    return Err(ClientError::Protocol(
                        "the daemon did not answer in time".into(),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Command::DaemonStop => {
            let Some(h) = running() else {
                return writeln!(out, "not running").map_err(io);
            };
            // The daemon is asked by the identity health reported, so a
            // daemon that replaced it meanwhile is left alone (409).
            let pid = h["daemon"]["pid"].as_i64().unwrap_or(0) as i32;
            if pid <= 0 {
                return Err(ClientError::Protocol(format!(
                    "health names no daemon pid ({}): not stopping",
                    h["daemon"]
                )));
            }
            let ask = json!({ "apiVersion": h["apiVersion"], "daemon": h["daemon"] });
            match client.call("POST", "/api/v1/internal/lifecycle/shutdown", Some(&ask)) {
                Ok(_) => {}
                // An older daemon without the route: a signal, to the pid
                // that both health and daemon.json name, and only that one.
                Err(ClientError::Api { status: 404, .. }) => {
                    let recorded = crate::home::read_info(home).map(|i| i.pid as i32);
                    if recorded != Some(pid) {
                        return Err(ClientError::Protocol(format!(
                            "health names pid {pid}, daemon.json {recorded:?}: not signalling"
                        )));
                    }
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    )
                    .map_err(|e| io(e.into()))?;
                }
                Err(e) => return Err(e),
            }
            let target = nix::unistd::Pid::from_raw(pid);
            let start = std::time::Instant::now();
            while nix::sys::signal::kill(target, None).is_ok()
                && client.call("GET", "/api/v1/health", None).is_ok()
                || home.join("daemon.json").exists()
            {
                if start.elapsed() > LIFECYCLE_WAIT {
                    return Err(ClientError::Protocol(format!(
                        "pid {pid} did not stop in time"
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            writeln!(out, "stopped (pid {pid})").map_err(io)
        }
        Command::DaemonRestart => {
            let step = |command| Invocation {
                command,
                json: inv.json,
            };
            lifecycle(client, &step(Command::DaemonStop), home, exe, out)?;
            lifecycle(client, &step(Command::DaemonStart), home, exe, out)
        }
        _ => Ok(()),
    }
}

fn accepted(out: &mut impl Write, json: bool, r: &Value) -> std::io::Result<()> {
    if json {
        print_json(out, r)
    } else {
        writeln!(out, "accepted")
    }
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
