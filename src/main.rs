//! The `coven` binary: parse arguments, read the environment once, build the
//! configuration, and hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use coven::cli::{self, Command};
use coven::{config::Config, daemon, logger};

fn coven_home() -> Result<PathBuf, String> {
    match std::env::var_os("COVEN_HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".coven")),
            _ => Err("neither COVEN_HOME nor HOME is set".into()),
        },
    }
}

/// Whether the terminal answers status queries (a `dumb` one does not):
/// `coven attach` then drops its answers to the replay's old queries.
fn answers_queries() -> bool {
    std::env::var_os("TERM").is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The home, absolute, and the logger set up: what both daemon processes
/// start with.
fn daemon_home() -> Result<PathBuf, String> {
    let level = logger::parse_level(std::env::var("COVEN_LOG").ok().as_deref())?;
    logger::init(level);
    let home = coven_home()?;
    if home.is_relative() {
        let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
        return Ok(cwd.join(home));
    }
    Ok(home)
}

/// `coven daemon serve`: the supervisor (it starts the server).
fn serve() -> Result<u8, String> {
    let home = daemon_home()?;
    let code = daemon::serve(&home).map_err(|e| e.to_string())?;
    Ok(u8::try_from(code).unwrap_or(1))
}

/// `coven daemon _server`: the serving process.
fn server() -> Result<(), String> {
    let home = daemon_home()?;
    let mut config = Config::load(home).map_err(|e| e.to_string())?;
    config.path = std::env::var_os("PATH").unwrap_or_default();
    daemon::serve_server(&config).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let inv = match cli::parse(std::env::args().skip(1)) {
        Ok(inv) => inv,
        Err(e) if e.contains("usage:") => {
            eprintln!("coven: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("coven: {e}\n(coven help lists the commands)");
            return ExitCode::from(2);
        }
    };
    match inv.command {
        Command::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("coven {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve => match serve() {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("coven: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Server => match server() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("coven: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Handover => {
            // What a running daemon asks before it restarts into this
            // build: what it takes over, and whether it would start.
            let config = coven_home()
                .and_then(|home| Config::load(home).map_err(|e| e.to_string()))
                .map(drop);
            println!(
                "{}",
                coven::handover::describe(config, coven::supervisor::proto::PROTOCOL)
            );
            ExitCode::SUCCESS
        }
        _ => {
            let home = match coven_home() {
                Ok(home) => home,
                Err(e) => {
                    eprintln!("coven: {e}");
                    return ExitCode::from(2);
                }
            };
            let client = coven::cli::client::Client::new(&home);
            let out = &mut std::io::stdout().lock();
            let result = match &inv.command {
                Command::Run(args) => coven::cli::attach::run(&client, args, inv.json, out),
                Command::Wait { .. } => coven::cli::commands::wait(&client, &inv, out),
                Command::Attach { id } => client
                    .resolve_id(id)
                    .and_then(|id| coven::cli::attach::attach(&client, &id, answers_queries())),
                Command::DaemonStart
                | Command::DaemonStop
                | Command::DaemonStatus
                | Command::DaemonRestart => match std::env::current_exe() {
                    Ok(exe) => cli::lifecycle(&client, &inv, &home, &exe, out).map(|()| 0),
                    Err(e) => Err(coven::cli::client::ClientError::Unreachable(e)),
                },
                _ => cli::run(&client, &inv, out).map(|()| 0),
            };
            match result {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("coven: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
