//! `coven daemon install | uninstall`: the service files it writes parse as
//! their managers read them, what they start (run the way the manager runs
//! it) is a daemon that answers and stops cleanly, and the manager is told
//! the right things. The managers themselves are stand-ins on `PATH` that
//! log their arguments and do what the real one would (start or stop the
//! daemon), so no test touches the machine's own services.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::*;

/// A temporary user: a home with a COVEN_HOME inside, and a bin directory
/// with the stand-in manager first on PATH.
struct User {
    dir: tempfile::TempDir,
    coven_home: PathBuf,
    _reap: Reap,
}

impl User {
    fn new(manager: &str) -> User {
        let dir = tempfile::tempdir().unwrap();
        let coven_home = dir.path().join("coven");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // Logs its arguments; starts the daemon where the manager would,
        // and stops it where the manager would.
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\ncase \"$*\" in\n  *enable*|bootstrap*) exec '{coven}' daemon start >/dev/null ;;\n  *disable*|bootout*) exec '{coven}' daemon stop >/dev/null ;;\nesac\n",
            log = dir.path().join("manager.log").display(),
            coven = coven_bin(),
        );
        let path = bin.join(manager);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        User {
            _reap: Reap(coven_home.clone()),
            coven_home,
            dir,
        }
    }

    fn coven(&self, args: &[&str]) -> Output {
        Command::new(coven_bin())
            .args(args)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("COVEN_HOME", &self.coven_home)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.dir.path().join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .unwrap()
    }

    fn manager_said(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("manager.log")).unwrap_or_default()
    }

    /// A daemon run as the manager runs the service's command: only its
    /// environment, no stdin, output appended to its log.
    fn run_as_manager(&self, program: &str, args: &[String], env: &[(String, String)], log: &Path) {
        let log_file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file());
        let mut d = Daemon {
            socket: self.coven_home.join("coven.sock"),
            home: self.coven_home.clone(),
            dir: tempfile::tempdir().unwrap(),
            child: Some(cmd.spawn().unwrap()),
        };
        wait_for("the service's daemon to answer", || {
            std::os::unix::net::UnixStream::connect(&d.socket).ok()
        });
        d.assert_alive();
        assert_eq!(d.get("/api/v1/health").status, 200);
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("listening on"), "{text}");
        // Both managers stop a service with SIGTERM; a clean stop is 0.
        d.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(d.wait_exit().success());
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `Key=value` lines of a unit's `[Service]` section.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// A unit's quoted word, unquoted (as systemd reads `"…"` with `\"`).
fn unquoted(s: &str) -> String {
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[test]
fn systemd_unit_installs_runs_and_uninstalls() {
    let user = User::new("systemctl");
    let o = user.coven(&["daemon", "install", "--manager", "systemd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let unit_path = user.dir.path().join("config/systemd/user/coven.service");
    assert!(
        stdout(&o).contains(&format!("wrote systemd user unit {}", unit_path.display())),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("started (pid "), "{}", stdout(&o));
    assert_eq!(
        user.manager_said(),
        "--user daemon-reload\n--user enable --now coven.service\n"
    );
    let o = user.coven(&["daemon", "status"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains(&format!("installed as a service ({})", unit_path.display())),
        "{}",
        stdout(&o)
    );

    // systemd's own reading of it.
    let o = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze (Debian's systemd), to verify the unit");
    assert!(o.status.success(), "{}", stderr(&o));

    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1);
    let program = exec[0].strip_suffix(" daemon serve").unwrap();
    assert_eq!(unquoted(program), coven_bin());
    let env: Vec<(String, String)> = unit_values(&unit, "Environment")
        .iter()
        .map(|e| {
            let e = unquoted(e);
            let (k, v) = e.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("COVEN_HOME").unwrap(),
        user.coven_home.display().to_string()
    );
    assert!(get("PATH").unwrap().contains("/bin"));
    assert_eq!(unit_values(&unit, "LimitNOFILE"), ["8192"]);
    let log = user.coven_home.join("daemon.log");
    assert_eq!(
        unit_values(&unit, "StandardOutput"),
        [format!("append:{}", log.display())]
    );
    assert_eq!(unit_values(&unit, "KillMode"), ["mixed"]);
    assert_eq!(unit_values(&unit, "WantedBy"), ["default.target"]);

    // Installing again, while its daemon runs, leaves the daemon be.
    let o = user.coven(&["daemon", "install", "--manager", "systemd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("the running daemon goes on"),
        "{}",
        stdout(&o)
    );

    // What the unit starts, started as systemd would.
    let o = user.coven(&["daemon", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    user.run_as_manager(
        &unquoted(program),
        &["daemon".into(), "serve".into()],
        &env,
        &log,
    );

    let o = user.coven(&["daemon", "uninstall", "--manager", "systemd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!unit_path.exists());
    assert!(user
        .manager_said()
        .ends_with("--user disable --now coven.service\n--user daemon-reload\n"));
    let o = user.coven(&["daemon", "uninstall", "--manager", "systemd"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("not installed"), "{}", stdout(&o));
}

#[test]
fn launchd_agent_installs_runs_and_uninstalls() {
    let user = User::new("launchctl");
    let o = user.coven(&["daemon", "install", "--manager", "launchd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plist_path = user
        .dir
        .path()
        .join("Library/LaunchAgents/dev.coven.daemon.plist");
    let uid = nix::unistd::getuid();
    assert_eq!(
        user.manager_said(),
        format!("bootstrap gui/{uid} {}\n", plist_path.display())
    );

    // Apple's format, read by a reader other than ours.
    let o = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&plist_path)
        .output()
        .expect("python3, to read the plist with plistlib");
    assert!(
        o.status.success(),
        "the plist does not parse: {}",
        stderr(&o)
    );
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["Label"], "dev.coven.daemon");
    assert_eq!(p["RunAtLoad"], true);
    assert_eq!(
        p["KeepAlive"]["SuccessfulExit"], false,
        "a clean stop stays stopped"
    );
    // Room for the default limits' descriptors (launchd starts a job at
    // 256): 1,024 connections and 256 sessions with two each.
    let files = p["SoftResourceLimits"]["NumberOfFiles"].as_u64();
    assert!(files.is_some_and(|n| n >= 1024 + 2 * 256), "{files:?}");
    let args: Vec<String> = p["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args, [coven_bin(), "daemon", "serve"]);
    let log = user.coven_home.join("daemon.log");
    assert_eq!(p["StandardErrorPath"], log.display().to_string());
    assert_eq!(p["StandardOutPath"], log.display().to_string());
    let env: Vec<(String, String)> = p["EnvironmentVariables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert!(env.contains(&("COVEN_HOME".into(), user.coven_home.display().to_string())));

    // A daemon outside the service: a second install must not fight it.
    let o = user.coven(&["daemon", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&plist_path).unwrap();
    let o = user.coven(&["daemon", "start"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = user.coven(&["daemon", "install", "--manager", "launchd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("coven daemon stop"), "{}", stderr(&o));
    assert!(!plist_path.exists());
    let o = user.coven(&["daemon", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // What the agent starts, started as launchd would.
    user.run_as_manager(&args[0], &args[1..], &env, &log);

    let o = user.coven(&["daemon", "install", "--manager", "launchd", "--no-start"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(plist_path.exists());
    let o = user.coven(&["daemon", "uninstall", "--manager", "launchd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!plist_path.exists());
    assert!(user
        .manager_said()
        .ends_with(&format!("bootout gui/{uid}/dev.coven.daemon\n")));
}

#[test]
fn print_shows_the_file_and_installs_nothing() {
    let user = User::new("systemctl");
    let o = user.coven(&["daemon", "install", "--print", "--manager", "systemd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ExecStart="));
    let o = user.coven(&["daemon", "install", "--print", "--manager", "launchd"]);
    assert!(stdout(&o).contains("<key>ProgramArguments</key>"));
    assert_eq!(user.manager_said(), "");
    assert!(!user.dir.path().join("config").exists());
    assert!(!user.dir.path().join("Library").exists());
}
