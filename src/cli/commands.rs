//! The client commands: each turns an `Invocation` into calls on the
//! daemon's socket, through `client::Client` only, and prints the answer
//! (text for people, the API's JSON with `--json`).

use std::io::Write;

use serde_json::{json, Value};

use super::args::{Command, Invocation, WaitFor};
use super::client::{Client, ClientError};

fn print_json(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "{v}")
}

/// `coven wait`: 0 when met, 1 when the deadline came first.
pub fn wait(client: &Client, inv: &Invocation, out: &mut impl Write) -> Result<u8, ClientError> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let io = ClientError::Output;
    let Command::Wait {
        id,
        what,
        timeout_ms,
    } = &inv.command
    else {
        return Err(ClientError::Protocol("not a wait".into()));
    };
    let id = client.resolve_id(id)?;
    let mut path = format!("/api/v1/sessions/{id}/wait?");
    match what {
        WaitFor::Exit => path.push_str("for=exit"),
        WaitFor::Quiet(ms) => path.push_str(&format!("for=quiet&quietMs={ms}")),
        WaitFor::Match(re) => path.push_str(&format!(
            "for=match&pattern={}",
            utf8_percent_encode(re, NON_ALPHANUMERIC)
        )),
    }
    let timeout = timeout_ms.unwrap_or(600_000).min(600_000);
    path.push_str(&format!("&timeoutMs={timeout}"));
    let patience = std::time::Duration::from_millis(timeout + 30_000);
    let r = client.call_within("GET", &path, None, patience)?;
    let met = r["met"] == true;
    if inv.json {
        print_json(out, &r).map_err(io)?;
    } else if met {
        match r["match"].as_str() {
            Some(m) => writeln!(out, "matched at event {}: {m}", r["seq"]),
            None => writeln!(
                out,
                "{} at event {}",
                r["for"].as_str().unwrap_or("met"),
                r["seq"]
            ),
        }
        .map_err(io)?;
    } else {
        writeln!(out, "not met within {timeout} ms").map_err(io)?;
    }
    Ok(if met { 0 } else { 1 })
}

/// Runs a client command, writing its output to `out`.
pub fn run(client: &Client, inv: &Invocation, out: &mut impl Write) -> Result<(), ClientError> {
    let io = ClientError::Output;
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
        Command::Sessions { all, limit, ids } => {
            let mut list: Vec<Value> = Vec::new();
            let want = limit.map_or(usize::MAX, |n| n as usize);
            if want > 0 {
                client.sessions(*all, |s| {
                    list.push(s.clone());
                    list.len() < want
                })?;
            }
            if inv.json {
                return print_json(out, &Value::Array(list)).map_err(io);
            }
            if *ids {
                for s in &list {
                    writeln!(out, "{}", s["id"].as_str().unwrap_or("")).map_err(io)?;
                }
                return Ok(());
            }
            writeln!(
                out,
                "{:<23} {:<9} {:<8} {:<20} TITLE",
                "ID", "STATUS", "HARNESS", "CREATED"
            )
            .map_err(io)?;
            for s in &list {
                let title: String = s["title"].as_str().unwrap_or("").chars().take(50).collect();
                let archived = if s["archived_at"].is_string() {
                    " (archived)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<23} {:<9} {:<8} {:<20} {}{archived}",
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
        Command::Archive { ids, undo } => {
            let verb = if *undo { "unarchive" } else { "archive" };
            each(client, ids, inv.json, out, |id| {
                let r = client.call("POST", &format!("/api/v1/sessions/{id}/{verb}"), None)?;
                Ok((r, format!("{verb}d {id}")))
            })
        }
        Command::Remove { ids } => each(client, ids, inv.json, out, |id| {
            let r = client.call("DELETE", &format!("/api/v1/sessions/{id}"), None)?;
            Ok((r, format!("deleted {id}")))
        }),
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
        Command::Input { id, data } => {
            let id = client.resolve_id(id)?;
            let r = client.call(
                "POST",
                &format!("/api/v1/sessions/{id}/input"),
                Some(&json!({ "data": data })),
            )?;
            let n = data.len();
            let said = format!("sent {n} byte{} to {id}", if n == 1 { "" } else { "s" });
            print_answer(out, inv.json, &r, &said).map_err(io)
        }
        Command::Kill {
            ids,
            signal,
            grace_ms,
        } => {
            let mut body = json!({});
            if let Some(s) = signal {
                body["signal"] = json!(s);
            }
            if let Some(g) = grace_ms {
                body["graceMs"] = json!(g);
            }
            let sent = signal.as_deref().unwrap_or("TERM").to_ascii_uppercase();
            let sent = sent.strip_prefix("SIG").unwrap_or(&sent).to_owned();
            let then = match (sent.as_str(), grace_ms) {
                ("KILL", _) => String::new(),
                (_, Some(ms)) => format!("; KILL in {ms} ms if it still runs"),
                (_, None) => "; KILL after the daemon's killGraceMs if it still runs".into(),
            };
            each(client, ids, inv.json, out, |id| {
                let r = client.call("POST", &format!("/api/v1/sessions/{id}/kill"), Some(&body))?;
                Ok((
                    r,
                    format!("killing {id}: sent {sent} to its process group{then}"),
                ))
            })
        }
        Command::Resize { id, cols, rows } => {
            let id = client.resolve_id(id)?;
            let r = client.call(
                "POST",
                &format!("/api/v1/sessions/{id}/resize"),
                Some(&json!({ "cols": cols, "rows": rows })),
            )?;
            print_answer(out, inv.json, &r, &format!("resized {id} to {cols}x{rows}")).map_err(io)
        }
        Command::Screen { id, ansi } => {
            let id = client.resolve_id(id)?;
            let path = format!("/api/v1/sessions/{id}/screen");
            if *ansi {
                let (_, bytes) = client.fetch(
                    "GET",
                    &format!("{path}?format=ansi"),
                    None,
                    std::time::Duration::from_secs(120),
                )?;
                return out.write_all(&bytes).map_err(io);
            }
            let r = client.call("GET", &path, None)?;
            if inv.json {
                return print_json(out, &r).map_err(io);
            }
            // The rows below the last text are left out, as `tmux
            // capture-pane` leaves them out.
            let lines: Vec<&str> = r["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| l.as_str().unwrap_or(""))
                .collect();
            let used = lines
                .iter()
                .rposition(|l| !l.trim_end().is_empty())
                .map_or(0, |i| i + 1);
            for line in &lines[..used] {
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(())
        }
        Command::Cast { id, idle_limit } => {
            use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
            let id = client.resolve_id(id)?;
            let mut path = format!("/api/v1/sessions/{id}/cast");
            if let Some(s) = idle_limit {
                path.push_str(&format!(
                    "?idleLimit={}",
                    utf8_percent_encode(s, NON_ALPHANUMERIC)
                ));
            }
            // Streamed through: a recording of any size costs a buffer.
            let (mut stream, body) = client.open_stream(&path)?;
            out.write_all(&body).map_err(io)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) => return out.flush().map_err(io),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ClientError::Unreachable(e)),
                };
                out.write_all(&buf[..n]).map_err(io)?;
            }
        }
        Command::Run(_)
        | Command::Attach { .. }
        | Command::Wait { .. }
        | Command::DaemonInstall { .. }
        | Command::DaemonUninstall { .. }
        | Command::Completions(_)
        | Command::Man => Ok(()),
        Command::Web {
            port,
            address,
            open,
            off,
        } => {
            if *off {
                let r = client.call("DELETE", "/api/v1/web", None)?;
                return print_answer(
                    out,
                    inv.json,
                    &r,
                    "web view off; every browser signed in is signed out",
                )
                .map_err(io);
            }
            let mut body = json!({});
            if let Some(p) = port {
                body["port"] = json!(p);
            }
            if let Some(a) = address {
                body["address"] = json!(a);
            }
            let r = client.call("POST", "/api/v1/web", Some(&body))?;
            let login = r["loginUrl"].as_str().unwrap_or("");
            print_answer(
                out,
                inv.json,
                &r,
                &format!(
                    "web view on {}  sign in (once, within a minute): {login}",
                    r["url"].as_str().unwrap_or("?")
                ),
            )
            .map_err(io)?;
            if *open {
                out.flush().map_err(io)?;
                open_in_browser(login)?;
            }
            Ok(())
        }
        Command::Serve
        | Command::Server
        | Command::Handover
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
        let payload = super::client::payload(e);
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
pub const LIFECYCLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The last line the daemon logged after `from`: why it would not start.
fn cause_in_log(log: &std::path::Path, from: u64) -> Option<String> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    // The tail is enough: the cause is the last thing it said.
    let from = from.max(len.saturating_sub(64 * 1024));
    f.seek(std::io::SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    // What a process said as it gave up ("coven: …"), else its last error,
    // else its last line.
    let lines = || text.lines().rev().filter(|l| !l.trim().is_empty());
    let line = lines()
        .find_map(|l| l.strip_prefix("coven: "))
        .or_else(|| lines().find(|l| l.contains(" ERROR ")))
        .or_else(|| lines().next())?;
    Some(line.to_owned())
}

/// Whether the daemon is installed as a service, in words and for JSON.
fn service_status() -> (String, Value) {
    match super::service::native() {
        None => ("no service manager".into(), Value::Null),
        Some(m) => match super::service::installed(m) {
            Some(f) => (
                format!("installed as a service ({})", f.display()),
                json!({ "installed": true, "file": f }),
            ),
            None => (
                "not installed as a service (coven daemon install)".into(),
                json!({ "installed": false }),
            ),
        },
    }
}

/// `daemon start | stop | status | restart`: the exit status.
pub fn lifecycle(
    client: &Client,
    inv: &Invocation,
    home: &std::path::Path,
    exe: &std::path::Path,
    out: &mut impl Write,
) -> Result<u8, ClientError> {
    let io = ClientError::Output;
    let failed = |code: &'static str, what: &str, e: std::io::Error| {
        ClientError::failed(code, format!("{what}: {e}"))
    };
    let running = || client.call("GET", "/api/v1/health", None).ok();
    let say = |out: &mut dyn Write, v: Value, text: String| -> Result<u8, ClientError> {
        if inv.json {
            writeln!(out, "{v}").map_err(io)?;
        } else {
            writeln!(out, "{text}").map_err(io)?;
        }
        Ok(0)
    };
    match &inv.command {
        Command::DaemonStatus => {
            let (service, service_json) = service_status();
            let Some(h) = running() else {
                let socket = client.socket.display();
                say(
                    out,
                    json!({ "running": false, "socket": client.socket, "service": service_json }),
                    format!("not running (no daemon answers on {socket}); {service}"),
                )?;
                return Ok(1);
            };
            let d = &h["daemon"];
            let up = d["startedAt"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                .map_or(0, |d| d.as_secs());
            say(
                out,
                json!({
                    "running": true,
                    "pid": d["pid"],
                    "startedAt": d["startedAt"],
                    "uptimeSeconds": up,
                    "socket": d["socket"],
                    "liveSessions": h["stats"]["liveSessions"],
                    "service": service_json,
                }),
                format!(
                    "running  pid {}  up {}s  socket {}  live sessions {}\n{service}",
                    d["pid"],
                    up,
                    d["socket"].as_str().unwrap_or("?"),
                    h["stats"]["liveSessions"]
                ),
            )
        }
        Command::DaemonStart => {
            if let Some(h) = running() {
                let pid = &h["daemon"]["pid"];
                return say(
                    out,
                    json!({ "running": true, "started": false, "pid": pid }),
                    format!("already running (pid {pid})"),
                );
            }
            crate::home::prepare(home).map_err(|e| failed("daemon_start_failed", "the home", e))?;
            let log_path = home.join("daemon.log");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| failed("daemon_start_failed", "the log", e))?;
            let from = log.metadata().map_or(0, |m| m.len());
            let mut cmd = std::process::Command::new(exe);
            cmd.args(["daemon", "serve"])
                .env("COVEN_HOME", home)
                .stdin(std::process::Stdio::null())
                .stdout(
                    log.try_clone()
                        .map_err(|e| failed("daemon_start_failed", "the log", e))?,
                )
                .stderr(log);
            // Detached from our terminal: its signals are not the daemon's.
            crate::sys::process::new_session_on_exec(&mut cmd);
            let mut child = cmd
                .spawn()
                .map_err(|e| failed("daemon_start_failed", &exe.display().to_string(), e))?;
            let start = std::time::Instant::now();
            loop {
                if let Some(h) = running() {
                    let pid = &h["daemon"]["pid"];
                    return say(
                        out,
                        json!({ "running": true, "started": true, "pid": pid, "socket": h["daemon"]["socket"] }),
                        format!("started (pid {pid}); log: {}", log_path.display()),
                    );
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let cause = cause_in_log(&log_path, from);
                    return Err(ClientError::Failed {
                        code: "daemon_start_failed",
                        message: format!(
                            "the daemon exited at start ({status}){}",
                            cause.as_deref().map_or(String::new(), |c| format!(": {c}"))
                        ),
                        details: json!({ "log": log_path }),
                    });
                }
                if start.elapsed() > LIFECYCLE_WAIT {
                    return Err(ClientError::Failed {
                        code: "daemon_start_failed",
                        message: "the daemon did not answer in time".into(),
                        details: json!({ "log": log_path }),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Command::DaemonStop => {
            let Some(h) = running() else {
                return say(
                    out,
                    json!({ "running": false, "stopped": false }),
                    "not running".into(),
                );
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
                        return Err(ClientError::failed(
                            "daemon_stop_failed",
                            format!(
                                "health names pid {pid}, daemon.json {recorded:?}: not signalling"
                            ),
                        ));
                    }
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    )
                    .map_err(|e| failed("daemon_stop_failed", "signalling it", e.into()))?;
                }
                Err(e) => return Err(e),
            }
            let live = h["stats"]["liveSessions"].as_u64().unwrap_or(0);
            let target = nix::unistd::Pid::from_raw(pid);
            let start = std::time::Instant::now();
            while nix::sys::signal::kill(target, None).is_ok()
                && client.call("GET", "/api/v1/health", None).is_ok()
                || home.join("daemon.json").exists()
            {
                if start.elapsed() > LIFECYCLE_WAIT {
                    return Err(ClientError::failed(
                        "daemon_stop_failed",
                        format!("pid {pid} did not stop in time"),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let text = match live {
                0 => format!("stopped (pid {pid})"),
                1 => format!("stopped (pid {pid}); it ended 1 running session"),
                n => format!("stopped (pid {pid}); it ended {n} running sessions"),
            };
            say(
                out,
                json!({ "running": false, "stopped": true, "pid": pid, "endedSessions": live }),
                text,
            )
        }
        Command::DaemonRestart => {
            let step = |command| Invocation {
                command,
                json: inv.json,
            };
            let Some(h) = running() else {
                return lifecycle(client, &step(Command::DaemonStart), home, exe, out);
            };
            // A live restart: the program at the daemon's path takes over,
            // every session keeps running.
            let ask = json!({ "apiVersion": h["apiVersion"], "daemon": h["daemon"] });
            match client.call("POST", "/api/v1/internal/lifecycle/restart", Some(&ask)) {
                Ok(r) => {
                    // Answered by the new program (the old one accepts no
                    // more): the restart is done.
                    let now = client.call("GET", "/api/v1/health", None)?;
                    let kept = &now["stats"]["liveSessions"];
                    say(
                        out,
                        json!({ "restarted": true, "pid": now["daemon"]["pid"], "build": r["build"], "keptSessions": kept }),
                        format!(
                            "restarted (pid {}, {}); {kept} running session(s) kept",
                            now["daemon"]["pid"],
                            r["build"].as_str().unwrap_or("?"),
                        ),
                    )
                }
                // A daemon that predates live restarts: stop, then start.
                Err(ClientError::Api { status: 404, .. }) => {
                    lifecycle(client, &step(Command::DaemonStop), home, exe, out)?;
                    lifecycle(client, &step(Command::DaemonStart), home, exe, out)
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(0),
    }
}

/// Opens a link in the user's browser (`open` on macOS, `xdg-open`
/// elsewhere), without waiting for the browser.
fn open_in_browser(url: &str) -> Result<(), ClientError> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| {
            ClientError::failed(
                "open_failed",
                format!("{opener} {url}: {e} (open the link yourself)"),
            )
        })
}

/// An answer: the API's JSON, or what it means in words.
fn print_answer(out: &mut impl Write, json: bool, r: &Value, said: &str) -> std::io::Result<()> {
    if json {
        print_json(out, r)
    } else {
        writeln!(out, "{said}")
    }
}

/// Does `one` for each id (a prefix, resolved first), as `docker rm A B`
/// does: each answer printed as it comes, each failure reported and the
/// rest still done; fails when any failed.
fn each(
    client: &Client,
    ids: &[String],
    json: bool,
    out: &mut impl Write,
    mut one: impl FnMut(&str) -> Result<(Value, String), ClientError>,
) -> Result<(), ClientError> {
    let mut failed = Vec::new();
    for given in ids {
        match client.resolve_id(given).and_then(|id| one(&id)) {
            Ok((r, said)) => print_answer(out, json, &r, &said).map_err(ClientError::Output)?,
            Err(ClientError::Unreachable(e)) => return Err(ClientError::Unreachable(e)),
            Err(e) => failed.push(e),
        }
    }
    out.flush().map_err(ClientError::Output)?;
    match failed.len() {
        0 => Ok(()),
        1 if ids.len() == 1 => Err(failed.remove(0)),
        n => {
            for e in &failed {
                super::report::report(e, &client.socket, json);
            }
            Err(ClientError::Some(n))
        }
    }
}
