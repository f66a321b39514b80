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
    Help,
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
}

/// A command and its output form.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    /// `--json`: machine-readable output.
    pub json: bool,
}

pub const USAGE: &str = "\
usage: coven <command> [--json]

commands:
  daemon serve                      run the daemon in the foreground
  daemon start | stop | status | restart
                                    the daemon in the background (log: <COVEN_HOME>/daemon.log)
  health                            the daemon's health
  harnesses                         harnesses and whether each is installed
  sessions                          list sessions, newest first
  show <id>                         one session
  events <id> [--after SEQ] [--follow]
                                    a session's output (--json: event records);
                                    --follow streams until the session ends
  input <id> <text>                 send text to a session's terminal
  kill <id> [--signal SIG] [--grace MS]
  resize <id> <cols> <rows>
  help, version

<id> may be any unique prefix of a session id.

environment:
  COVEN_HOME      the daemon's home (default: $HOME/.coven)
  COVEN_LOG       error, warn, info (default) or debug
";

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut json = false;
    let mut after = None;
    let mut signal = None;
    let mut grace_ms = None;
    let mut follow = false;
    let number = |v: std::ffi::OsString, what: &str| -> Result<u64, String> {
        v.into_string()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} must be a non-negative integer"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("json") => json = true,
            Long("follow") | Short('f') => follow = true,
            Long("help") | Short('h') => words = vec!["help".into()],
            Long("version") | Short('V') => words = vec!["version".into()],
            Long("after") => {
                after = Some(number(
                    parser.value().map_err(|e| e.to_string())?,
                    "--after",
                )?)
            }
            Long("grace") => {
                grace_ms = Some(number(
                    parser.value().map_err(|e| e.to_string())?,
                    "--grace",
                )?)
            }
            Long("signal") => {
                signal = Some(
                    parser
                        .value()
                        .map_err(|e| e.to_string())?
                        .to_string_lossy()
                        .into_owned(),
                )
            }
            Value(v) => words.push(
                v.into_string()
                    .map_err(|_| "arguments must be UTF-8".to_string())?,
            ),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let id = |s: &str| s.to_owned();
    let command = match w.as_slice() {
        ["daemon", "serve"] => Command::Serve,
        ["daemon", "start"] => Command::DaemonStart,
        ["daemon", "stop"] => Command::DaemonStop,
        ["daemon", "status"] => Command::DaemonStatus,
        ["daemon", "restart"] => Command::DaemonRestart,
        ["harnesses"] => Command::Harnesses,
        [] | ["help"] => Command::Help,
        ["version"] => Command::Version,
        ["health"] => Command::Health,
        ["sessions"] => Command::Sessions,
        ["show", s] => Command::Show { id: id(s) },
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
        _ => return Err(format!("unknown command: {}", w.join(" "))),
    };
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
            client.stream(
                &format!("/api/v1/sessions/{id}/stream?afterSeq={after}"),
                |e| {
                    write_event(out, json, e)?;
                    out.flush()
                },
            )
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
            let mut cursor = *after;
            loop {
                let page = client.call(
                    "GET",
                    &format!("/api/v1/sessions/{id}/events?afterSeq={cursor}&limit=10000"),
                    None,
                )?;
                for e in page["events"].as_array().into_iter().flatten() {
                    if inv.json {
                        print_json(out, e).map_err(io)?;
                    } else if e["kind"] == "output" {
                        let payload: Value =
                            serde_json::from_str(e["payload_json"].as_str().unwrap_or("{}"))
                                .unwrap_or(Value::Null);
                        out.write_all(payload["data"].as_str().unwrap_or("").as_bytes())
                            .map_err(io)?;
                    }
                    cursor = e["seq"].as_u64().unwrap_or(cursor);
                }
                if page["hasMore"] != true {
                    return out.flush().map_err(io);
                }
            }
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
        Command::Serve
        | Command::Help
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
        let payload: Value =
            serde_json::from_str(e["payload_json"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
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
    command: &Command,
    home: &std::path::Path,
    exe: &std::path::Path,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Protocol(e.to_string());
    let running = || client.call("GET", "/api/v1/health", None).ok();
    match command {
        Command::DaemonStatus => match running() {
            Some(h) => {
                let d = &h["daemon"];
                let up = d["startedAt"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| d.as_secs());
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
            // Only the pid that health confirms gets the signal.
            let pid = h["daemon"]["pid"].as_i64().unwrap_or(0) as i32;
            let recorded = crate::home::read_info(home).map(|i| i.pid as i32);
            if pid <= 0 || recorded != Some(pid) {
                return Err(ClientError::Protocol(format!(
                    "health names pid {pid}, daemon.json {recorded:?}: not signalling"
                )));
            }
            let target = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM)
                .map_err(|e| io(e.into()))?;
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
            lifecycle(client, &Command::DaemonStop, home, exe, out)?;
            lifecycle(client, &Command::DaemonStart, home, exe, out)
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
        assert_eq!(p("--help").unwrap().command, Command::Help);
        assert_eq!(p("").unwrap().command, Command::Help);
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
