//! `coven daemon install | uninstall`: the daemon as a service of the
//! user's service manager, a systemd user unit (Linux) or a launchd agent
//! (macOS), for the binary that runs this command and the current
//! `COVEN_HOME`. The files are written here, from the same facts every
//! time, so there is nothing to copy or edit by hand.
//!
//! What the service runs is `coven daemon serve` in the foreground: the
//! supervisor is the service's main process, and handles a crash of the
//! serving process itself (the sessions go on); the manager starts the
//! whole daemon again only if it dies whole, and leaves it stopped after a
//! clean stop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use serde_json::Value;

use super::args::Manager;
use super::client::{Client, ClientError};

/// The systemd unit's name.
pub const UNIT: &str = "coven.service";
/// The launchd agent's label.
pub const LABEL: &str = "dev.coven.daemon";
/// The descriptors the service starts with: 1,024 connections and 256
/// sessions with two each fit, with room (launchd starts a job at 256).
pub const FILES: u32 = 8192;

/// This system's service manager, if it has one the daemon installs into.
pub fn native() -> Option<Manager> {
    if cfg!(target_os = "macos") {
        Some(Manager::Launchd)
    } else if cfg!(target_os = "linux") {
        Some(Manager::Systemd)
    } else {
        None
    }
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Where the service's file goes.
pub fn file_path(m: Manager) -> Result<PathBuf, ClientError> {
    let home = env_dir("HOME")
        .ok_or_else(|| ClientError::failed("no_home", "HOME is not set (or not absolute)"));
    match m {
        Manager::Systemd => Ok(env_dir("XDG_CONFIG_HOME")
            .map_or_else(|| home.map(|h| h.join(".config")), Ok)?
            .join("systemd/user")
            .join(UNIT)),
        Manager::Launchd => Ok(home?
            .join("Library/LaunchAgents")
            .join(format!("{LABEL}.plist"))),
    }
}

/// The installed service's file, if there is one.
pub fn installed(m: Manager) -> Option<PathBuf> {
    file_path(m).ok().filter(|p| p.exists())
}

/// A word for systemd's unit syntax, quoted: `\` and `"` escaped, `%`
/// doubled (specifiers), and `$` doubled where the line expands variables.
fn systemd_quoted(s: &str, dollars: bool) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '"' => q.push_str("\\\""),
            '%' => q.push_str("%%"),
            '$' if dollars => q.push_str("$$"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The systemd user unit.
pub fn unit(exe: &Path, home: &Path, path: &str) -> String {
    let log = home
        .join("daemon.log")
        .display()
        .to_string()
        .replace('%', "%%");
    format!(
        "\
# The Coven daemon as a systemd user service, written by `coven daemon install`
# (`coven daemon uninstall` removes it). Installing again rewrites it.

[Unit]
Description=Coven daemon (coding-agent sessions in PTYs)

[Service]
Type=simple
ExecStart={exe} daemon serve
Environment={home_env}
Environment=COVEN_LOG=info
# Harnesses are looked up on this PATH: the one `coven daemon install` ran with.
Environment={path_env}
LimitNOFILE={FILES}
StandardOutput=append:{log}
StandardError=append:{log}
# The main process is the daemon's supervisor, which holds every session;
# the serving process is its child, restarted by it at once if it crashes
# (the sessions go on). SIGTERM goes to the supervisor alone: it has the
# server kill the sessions (TERM, then KILL after killGraceMs) and record
# their exits. Whatever is left when the stop times out is killed.
KillMode=mixed
TimeoutStopSec=30
# `systemctl --user reload coven` is a live restart: the binary at ExecStart's
# path (a new build, after an upgrade) takes over, every session keeps running.
ExecReload=/bin/kill -USR2 $MAINPID
# A clean stop (`coven daemon stop`) stays stopped; if the whole daemon dies,
# it is started again, and the sessions it was running come back `orphaned`.
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
",
        exe = systemd_quoted(&exe.display().to_string(), true),
        home_env = systemd_quoted(&format!("COVEN_HOME={}", home.display()), false),
        path_env = systemd_quoted(&format!("PATH={path}"), false),
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The launchd agent.
pub fn plist(exe: &Path, home: &Path, path: &str) -> String {
    let exe = xml(&exe.display().to_string());
    let log = xml(&home.join("daemon.log").display().to_string());
    let home = xml(&home.display().to_string());
    let path = xml(path);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- The Coven daemon as a launchd agent, written by coven daemon install
     (coven daemon uninstall removes it). Installing again rewrites it. -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LABEL}</string>
    <key>ProgramArguments</key>
    <array>
        <string>{exe}</string>
        <string>daemon</string>
        <string>serve</string>
    </array>
    <key>EnvironmentVariables</key>
    <dict>
        <key>COVEN_HOME</key>
        <string>{home}</string>
        <!-- Harnesses are looked up on this PATH: the one install ran with. -->
        <key>PATH</key>
        <string>{path}</string>
    </dict>
    <key>RunAtLoad</key>
    <true/>
    <!-- The daemon restarts its own serving process after a crash (the
         sessions go on); launchd starts the whole daemon again if it dies.
         A clean stop stays stopped. -->
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <!-- A launchd job starts with a soft limit of 256 descriptors. -->
    <key>SoftResourceLimits</key>
    <dict>
        <key>NumberOfFiles</key>
        <integer>{FILES}</integer>
    </dict>
    <key>ProcessType</key>
    <string>Background</string>
    <!-- SIGTERM, then this many seconds for the daemon to kill its sessions. -->
    <key>ExitTimeOut</key>
    <integer>30</integer>
    <key>StandardErrorPath</key>
    <string>{log}</string>
    <key>StandardOutPath</key>
    <string>{log}</string>
</dict>
</plist>
"#
    )
}

/// The service manager's commands for each step.
fn steps(m: Manager, file: &Path, step: &str) -> Vec<Vec<String>> {
    let uid = nix::unistd::getuid();
    let s = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let file = file.display().to_string();
    match (m, step) {
        (Manager::Systemd, "load") => vec![s(&["systemctl", "--user", "daemon-reload"])],
        (Manager::Systemd, "start") => vec![s(&["systemctl", "--user", "enable", "--now", UNIT])],
        (Manager::Systemd, "stop") => vec![s(&["systemctl", "--user", "disable", "--now", UNIT])],
        (Manager::Systemd, "unload") => vec![s(&["systemctl", "--user", "daemon-reload"])],
        (Manager::Launchd, "load") => vec![],
        (Manager::Launchd, "start") => {
            vec![s(&["launchctl", "bootstrap", &format!("gui/{uid}"), &file])]
        }
        (Manager::Launchd, "stop") => {
            vec![s(&["launchctl", "bootout", &format!("gui/{uid}/{LABEL}")])]
        }
        _ => vec![],
    }
}

/// Runs the manager's commands; the first that fails is the error.
fn perform(commands: Vec<Vec<String>>) -> Result<(), ClientError> {
    for c in commands {
        let shown = c.join(" ");
        let o = Process::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| ClientError::failed("service_failed", format!("{shown}: {e}")))?;
        if !o.status.success() {
            let said = String::from_utf8_lossy(&o.stderr);
            let last = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(ClientError::Failed {
                code: "service_failed",
                message: format!("{shown} failed ({})", o.status),
                details: serde_json::json!({ "said": last }),
            });
        }
    }
    Ok(())
}

fn manager_or_native(m: Option<Manager>) -> Result<Manager, ClientError> {
    m.or_else(native).ok_or_else(|| {
        ClientError::failed(
            "service_unsupported",
            "this system has no service manager coven installs into (systemd or launchd); \
             run `coven daemon start` from your rc scripts instead",
        )
    })
}

fn name(m: Manager) -> &'static str {
    match m {
        Manager::Systemd => "systemd user unit",
        Manager::Launchd => "launchd agent",
    }
}

/// `coven daemon install`.
pub fn install(
    client: &Client,
    manager: Option<Manager>,
    print: bool,
    no_start: bool,
    home: &Path,
    exe: &Path,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let io = ClientError::Output;
    let m = manager_or_native(manager)?;
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    // The home as the daemon will see it: absolute.
    let home = if home.is_relative() {
        std::env::current_dir()
            .map_err(|e| ClientError::failed("no_cwd", format!("the current directory: {e}")))?
            .join(home)
    } else {
        home.to_owned()
    };
    let text = match m {
        Manager::Systemd => unit(exe, &home, &path),
        Manager::Launchd => plist(exe, &home, &path),
    };
    if print {
        return out.write_all(text.as_bytes()).map_err(io);
    }
    let file = file_path(m)?;
    let again = file.exists();
    let running: Option<Value> = client.call("GET", "/api/v1/health", None).ok();
    if let (Some(h), false, false) = (&running, again, no_start) {
        return Err(ClientError::Failed {
            code: "daemon_running",
            message: format!(
                "a daemon already runs outside the service (pid {}); stop it first \
                 (coven daemon stop), then install",
                h["daemon"]["pid"]
            ),
            details: Value::Null,
        });
    }
    let failed = |what: &str, e: std::io::Error| {
        ClientError::failed("service_failed", format!("{what} {}: {e}", file.display()))
    };
    crate::home::prepare(&home).map_err(|e| failed("preparing the home for", e))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed("creating the directory of", e))?;
    }
    std::fs::write(&file, &text).map_err(|e| failed("writing", e))?;
    writeln!(out, "wrote {} {}", name(m), file.display()).map_err(io)?;
    perform(steps(m, &file, "load"))?;
    if no_start {
        return writeln!(out, "not started (--no-start)").map_err(io);
    }
    if running.is_some() {
        // Reinstalled under a running service: its daemon (and sessions)
        // go on; the new file applies from its next start.
        return writeln!(
            out,
            "the running daemon goes on; the new {} applies at its next start",
            name(m)
        )
        .map_err(io);
    }
    perform(steps(m, &file, "start"))?;
    let start = std::time::Instant::now();
    loop {
        if let Ok(h) = client.call("GET", "/api/v1/health", None) {
            return writeln!(
                out,
                "started (pid {}); it starts at login, logs to {}",
                h["daemon"]["pid"],
                home.join("daemon.log").display()
            )
            .map_err(io);
        }
        if start.elapsed() > super::commands::LIFECYCLE_WAIT {
            return Err(ClientError::failed(
                "service_failed",
                format!(
                    "the service did not answer in time; see {}",
                    home.join("daemon.log").display()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `coven daemon uninstall`.
pub fn uninstall(manager: Option<Manager>, out: &mut impl Write) -> Result<(), ClientError> {
    let io = ClientError::Output;
    let m = manager_or_native(manager)?;
    let file = file_path(m)?;
    if !file.exists() {
        return writeln!(out, "not installed ({} absent)", file.display()).map_err(io);
    }
    // Stopping fails when it is not loaded: that is no reason to keep it.
    let stopped = perform(steps(m, &file, "stop"));
    std::fs::remove_file(&file).map_err(|e| {
        ClientError::failed(
            "service_failed",
            format!("removing {}: {e}", file.display()),
        )
    })?;
    perform(steps(m, &file, "unload"))?;
    writeln!(out, "removed {} {}", name(m), file.display()).map_err(io)?;
    if let Err(e) = stopped {
        writeln!(
            out,
            "(stopping it said: {})",
            super::report::text(&e, Path::new(""))
        )
        .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_quotes_what_systemd_would_expand() {
        let u = unit(
            Path::new("/opt/my bin/co%ven$x"),
            Path::new("/h/a\"b"),
            "/bin",
        );
        assert!(
            u.contains(r#"ExecStart="/opt/my bin/co%%ven$$x" daemon serve"#),
            "{u}"
        );
        assert!(u.contains(r#"Environment="COVEN_HOME=/h/a\"b""#), "{u}");
    }
}
