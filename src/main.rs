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

/// Writes a text to stdout; a closed pipe ends the process as SIGPIPE does.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let out = &mut std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            coven::sys::process::die_of_sigpipe()
        }
        Err(e) => {
            eprintln!("coven: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let inv = match cli::parse(std::env::args().skip(1)) {
        Ok(inv) => inv,
        Err(e) => {
            if e.json {
                let envelope = serde_json::json!({
                    "error": { "code": "usage", "message": e.message }
                });
                print_out(&format!("{envelope}\n"));
            }
            eprintln!("coven: {e}");
            return ExitCode::from(2);
        }
    };
    match inv.command {
        Command::Help(text) => print_out(&text),
        Command::Version => print_out(&if inv.json {
            format!(
                "{}\n",
                serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "apiVersion": coven::api::meta::CONTRACT,
                })
            )
        } else {
            format!("coven {}\n", env!("CARGO_PKG_VERSION"))
        }),
        Command::Completions(shell) => print_out(&cli::docs::completions(shell)),
        Command::Man => print_out(&cli::docs::man()),
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
            let client = cli::client::Client::new(&home);
            let out = &mut std::io::stdout().lock();
            let exe = || {
                std::env::current_exe().map_err(|e| {
                    cli::client::ClientError::failed(
                        "no_executable",
                        format!("this program's path: {e}"),
                    )
                })
            };
            let result = match &inv.command {
                Command::Run(args) => cli::attach::run(&client, args, inv.json, out),
                Command::Wait { .. } => cli::commands::wait(&client, &inv, out),
                Command::Attach { id } => client
                    .resolve_id(id)
                    .and_then(|id| cli::attach::attach(&client, &id, answers_queries())),
                Command::DaemonStart
                | Command::DaemonStop
                | Command::DaemonStatus
                | Command::DaemonRestart => {
                    exe().and_then(|exe| cli::lifecycle(&client, &inv, &home, &exe, out))
                }
                Command::DaemonInstall {
                    manager,
                    print,
                    no_start,
                } => exe().and_then(|exe| {
                    cli::service::install(&client, *manager, *print, *no_start, &home, &exe, out)
                        .map(|()| 0)
                }),
                Command::DaemonUninstall { manager } => {
                    cli::service::uninstall(*manager, out).map(|()| 0)
                }
                _ => cli::run(&client, &inv, out).map(|()| 0),
            };
            match result {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    cli::report::report(&e, &client.socket, inv.json);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
