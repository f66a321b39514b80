//! The service files in `contrib/`: the launchd agent parses as a property
//! list, and what it runs, started the way launchd starts it, is a daemon
//! that answers and stops cleanly.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

const PLIST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/launchd/dev.coven.daemon.plist"
);

/// The plist as JSON, read by Python's `plistlib` (Apple's format, parsed by
/// a reader other than ours).
fn plist() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
            PLIST,
        ])
        .output()
        .expect("python3, to read the plist with plistlib");
    assert!(
        out.status.success(),
        "the plist does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn launchd_agent_is_well_formed_and_runs_the_installed_command() {
    let p = plist();
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
    let args = strings(&p["ProgramArguments"]);
    // Where README's `cargo install` puts the binary.
    assert_eq!(args, ["/Users/YOU/.cargo/bin/coven", "daemon", "serve"]);

    // README installs it by substituting the home directory.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for step in [
        "cargo install --path . --locked",
        r#"sed "s#/Users/YOU#$HOME#g" contrib/launchd/dev.coven.daemon.plist"#,
        "launchctl bootstrap gui/$UID ~/Library/LaunchAgents/dev.coven.daemon.plist",
    ] {
        assert!(readme.contains(step), "README lacks {step:?}");
    }

    // Run it as launchd would: that program, only the plist's environment,
    // no stdin, output appended to the plist's log paths.
    let dir = tempfile::tempdir().unwrap();
    let home_dir = dir.path().display().to_string();
    let expand = |s: &str| s.replace("/Users/YOU", &home_dir);
    std::fs::create_dir_all(dir.path().join(".coven")).unwrap();
    let log_path = expand(p["StandardErrorPath"].as_str().unwrap());
    assert_eq!(log_path, expand(p["StandardOutPath"].as_str().unwrap()));
    let log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap()
    };
    let env = p["EnvironmentVariables"].as_object().unwrap();
    let mut cmd = Command::new(coven_bin());
    cmd.args(&args[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, expand(v.as_str().unwrap()))))
        .stdin(Stdio::null())
        .stdout(log())
        .stderr(log());
    let home = Path::new(&expand(env["COVEN_HOME"].as_str().unwrap())).to_owned();
    let mut d = Daemon {
        socket: home.join("coven.sock"),
        home,
        dir,
        child: Some(cmd.spawn().unwrap()),
    };
    wait_for("the agent's daemon to answer", || {
        std::os::unix::net::UnixStream::connect(&d.socket).ok()
    });
    d.assert_alive();
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(log_text.contains("listening on"), "{log_text}");
    // launchd stops an agent with SIGTERM; a clean exit is status 0.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit().success());
}
