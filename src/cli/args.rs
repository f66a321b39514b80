//! argv to an `Invocation` (with `lexopt`), checked against the one table
//! (`table`): the command, its arguments, its options. Every mistake found
//! here is a usage error (exit 2), named, with a "did you mean" where a
//! known word is close and the command's own usage line. No I/O here.

use super::table::{self, Cmd, Opt};

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
    Help(String),
    Version,
    DaemonStart,
    DaemonStop,
    DaemonStatus,
    DaemonRestart,
    DaemonInstall {
        manager: Option<Manager>,
        /// Print the file instead.
        print: bool,
        /// Write the file only.
        no_start: bool,
    },
    DaemonUninstall {
        manager: Option<Manager>,
    },
    Health,
    Harnesses,
    Sessions {
        /// Archived sessions too.
        all: bool,
        /// At most this many (all of them when `None`).
        limit: Option<u64>,
        /// Only the ids.
        ids: bool,
    },
    Archive {
        ids: Vec<String>,
        /// `unarchive`: bring them back to the default list.
        undo: bool,
    },
    Remove {
        ids: Vec<String>,
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
        /// What the arguments type: text and keys, joined.
        data: String,
    },
    Kill {
        ids: Vec<String>,
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
    Completions(Shell),
    Man,
    Web {
        port: Option<u16>,
        address: Option<String>,
        open: bool,
        off: bool,
    },
}

/// A service manager `daemon install` writes for.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Manager {
    Systemd,
    Launchd,
}

/// A shell `completions` writes for.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
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

/// A usage error: what is wrong, and the usage of the command it concerns.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub command: Option<&'static str>,
    /// `--json` was given: the error goes to stdout as an envelope too.
    pub json: bool,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        match (self.command, self.command.and_then(table::command)) {
            (_, Some(cmd)) => write!(f, "\n\n{}\n(coven help {} for more)", cmd.usage(), cmd.name),
            (Some("daemon"), None) => write!(f, "\n\n{}", super::docs::daemon_usage()),
            _ => write!(f, "\n(coven help lists the commands)"),
        }
    }
}

/// The closest of `candidates` to a mistyped `word`, if one is close.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let most = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= most || (c.starts_with(word) && word.len() >= 2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn suggestion(word: &str, candidates: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = candidates.collect();
    match did_you_mean(word, all.iter().map(String::as_str)) {
        Some(c) => format!("; did you mean {c:?}?"),
        None => String::new(),
    }
}

/// The top-level words: `daemon` and every other visible command.
fn first_words() -> impl Iterator<Item = &'static str> {
    table::visible().map(|c| c.name.split(' ').next().unwrap_or(c.name))
}

/// The daemon's subcommands a person runs.
fn daemon_words() -> impl Iterator<Item = &'static str> {
    table::visible().filter_map(|c| c.name.strip_prefix("daemon "))
}

/// The command `words` name, and the arguments after its name.
fn find(words: &[String], json: bool) -> Result<Option<(&'static Cmd, &[String])>, UsageError> {
    let usage = |message: String, command: Option<&'static str>| UsageError {
        message,
        command,
        json,
    };
    let Some(first) = words.first() else {
        return Ok(None);
    };
    if first == "daemon" {
        let Some(sub) = words.get(1) else {
            return Err(usage(
                "daemon: which command? serve, start, stop, status, restart, install or uninstall"
                    .into(),
                Some("daemon"),
            ));
        };
        let name = format!("daemon {sub}");
        return match table::COMMANDS.iter().find(|c| c.name == name) {
            Some(cmd) => Ok(Some((cmd, &words[2..]))),
            None => Err(usage(
                format!(
                    "daemon: unknown command {sub:?}{}",
                    suggestion(sub, daemon_words().map(String::from))
                ),
                Some("daemon"),
            )),
        };
    }
    match table::visible().find(|c| c.name == first && !c.name.contains(' ')) {
        Some(cmd) => Ok(Some((cmd, &words[1..]))),
        None => Err(usage(
            format!(
                "unknown command {first:?}{}",
                suggestion(first, first_words().map(String::from))
            ),
            None,
        )),
    }
}

/// An option's value, as UTF-8.
fn text(parser: &mut lexopt::Parser, o: &Opt) -> Result<String, String> {
    parser
        .value()
        .map_err(|_| format!("--{} needs a value ({})", o.long, o.value.unwrap_or("")))?
        .into_string()
        .map_err(|_| "arguments must be UTF-8".to_string())
}

/// What the parser gathered before it knows the command.
struct Given {
    words: Vec<String>,
    /// Options in order, with their values.
    opts: Vec<(&'static Opt, Option<String>)>,
}

impl Given {
    fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(o, _)| o.long == long)
    }

    fn value(&self, long: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(o, _)| o.long == long)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The options a mistyped one may have meant: the command's (as far as the
/// words so far name one), else every option.
fn option_names(words: &[String]) -> Vec<String> {
    let cmd = find(words, false).ok().flatten().map(|(c, _)| c);
    table::OPTS
        .iter()
        .filter(|o| cmd.is_none_or(|c| table::options_of(c).any(|p| p.long == o.long)))
        .map(|o| o.long.to_owned())
        .collect()
}

fn gather<I: IntoIterator<Item = String>>(args: I) -> Result<Given, (String, Vec<String>)> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut given = Given {
        words: Vec::new(),
        opts: Vec::new(),
    };
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => return Ok(given),
            Err(e) => return Err((e.to_string(), given.words)),
        };
        let o = match arg {
            Value(v) => {
                let v = v
                    .into_string()
                    .map_err(|_| ("arguments must be UTF-8".to_string(), given.words.clone()))?;
                given.words.push(v);
                continue;
            }
            Long(name) => match table::opt(name) {
                Some(o) => o,
                None => {
                    let names = option_names(&given.words);
                    let hint = match did_you_mean(name, names.iter().map(String::as_str)) {
                        Some(near) => format!("; did you mean --{near}?"),
                        None => String::new(),
                    };
                    return Err((format!("unknown option --{name}{hint}"), given.words));
                }
            },
            Short(c) => match table::short(c) {
                Some(o) => o,
                None => return Err((format!("unknown option -{c}"), given.words)),
            },
        };
        let value = match o.value {
            Some(_) => Some(text(&mut parser, o).map_err(|e| (e, given.words.clone()))?),
            None => None,
        };
        given.opts.push((o, value));
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, UsageError> {
    let args: Vec<String> = args.into_iter().collect();
    let json = args.iter().any(|a| a == "--json");
    let given = match gather(args) {
        Ok(g) => g,
        Err((message, words)) => {
            let command = find(&words, json).ok().flatten().map(|(c, _)| c.name);
            return Err(UsageError {
                message,
                command,
                json,
            });
        }
    };
    let json = given.has("json");
    if given.has("help") || given.words.first().is_some_and(|w| w == "help") {
        let text = help_of(&given.words, json)?;
        return Ok(Invocation {
            command: Command::Help(text),
            json: false,
        });
    }
    let Some((cmd, rest)) = find(&given.words, json)? else {
        if given.has("version") {
            return Ok(Invocation {
                command: Command::Version,
                json,
            });
        }
        return Ok(Invocation {
            command: Command::Help(super::docs::overview()),
            json: false,
        });
    };
    let err = |message: String| UsageError {
        message,
        command: Some(cmd.name),
        json,
    };
    // Options that do not apply to this command.
    for (o, _) in &given.opts {
        let applies = o.long == "help"
            || (o.long == "json" && cmd.json)
            || (o.long == "version" && cmd.name == "version")
            || cmd.opts.contains(&o.long);
        if !applies {
            return Err(err(format!("--{} does not apply to {}", o.long, cmd.name)));
        }
    }
    // The arguments' count.
    let need = cmd.args.iter().filter(|a| !a.optional).count();
    let open = cmd.args.iter().any(|a| a.many);
    if rest.len() < need {
        let missing = &cmd.args[rest.len().min(cmd.args.len() - 1)];
        return Err(err(format!("{}: missing <{}>", cmd.name, missing.name)));
    }
    if !open && rest.len() > cmd.args.len() {
        return Err(err(format!(
            "{}: unexpected argument {:?}",
            cmd.name,
            rest[cmd.args.len()]
        )));
    }
    let command = build(cmd, rest, &given).map_err(err)?;
    Ok(Invocation { command, json })
}

/// `--help` or `help …`: the text for the words given.
fn help_of(words: &[String], json: bool) -> Result<String, UsageError> {
    let words: Vec<String> = match words.first().map(String::as_str) {
        Some("help") => words[1..].to_vec(),
        _ => words.to_vec(),
    };
    match words.as_slice() {
        [] => Ok(super::docs::overview()),
        [first, ..] if first == "help" => Ok(super::docs::help(
            table::command("help").expect("help is in the table"),
        )),
        [d] if d == "daemon" => Ok(super::docs::daemon_usage()),
        _ => match find(&words, json)? {
            Some((cmd, _)) => Ok(super::docs::help(cmd)),
            None => Ok(super::docs::overview()),
        },
    }
}

/// A non-negative number, or the error that names the option.
fn number(given: &Given, long: &str) -> Result<Option<u64>, String> {
    given
        .value(long)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("--{long} must be a non-negative integer, not {v:?}"))
        })
        .transpose()
}

fn build(cmd: &Cmd, rest: &[String], given: &Given) -> Result<Command, String> {
    let id = || rest[0].clone();
    let ids = || rest.to_vec();
    let manager = || -> Result<Option<Manager>, String> {
        match given.value("manager") {
            None => Ok(None),
            Some("systemd") => Ok(Some(Manager::Systemd)),
            Some("launchd") => Ok(Some(Manager::Launchd)),
            Some(m) => Err(format!(
                "--manager must be systemd or launchd, not {m:?}{}",
                suggestion(m, ["systemd", "launchd"].into_iter().map(String::from))
            )),
        }
    };
    Ok(match cmd.name {
        "daemon serve" => Command::Serve,
        "daemon _server" => Command::Server,
        "daemon _handover" => Command::Handover,
        "daemon start" => Command::DaemonStart,
        "daemon stop" => Command::DaemonStop,
        "daemon status" => Command::DaemonStatus,
        "daemon restart" => Command::DaemonRestart,
        "daemon install" => Command::DaemonInstall {
            manager: manager()?,
            print: given.has("print"),
            no_start: given.has("no-start"),
        },
        "daemon uninstall" => Command::DaemonUninstall {
            manager: manager()?,
        },
        "health" => Command::Health,
        "harnesses" => Command::Harnesses,
        "version" => Command::Version,
        "man" => Command::Man,
        "completions" => Command::Completions(match rest[0].as_str() {
            "bash" => Shell::Bash,
            "zsh" => Shell::Zsh,
            "fish" => Shell::Fish,
            s => {
                return Err(format!(
                    "completions: no shell {s:?} (bash, zsh or fish){}",
                    suggestion(s, ["bash", "zsh", "fish"].into_iter().map(String::from))
                ))
            }
        }),
        "sessions" => {
            let limit = number(given, "limit")?;
            if limit == Some(0) {
                return Err("--limit must be at least 1".into());
            }
            Command::Sessions {
                all: given.has("all"),
                limit,
                ids: given.has("ids"),
            }
        }
        "web" => {
            if given.has("off") && (given.has("port") || given.has("address") || given.has("open"))
            {
                return Err("--off goes alone".into());
            }
            let port =
                match given.value("port") {
                    None => None,
                    Some(p) => Some(p.parse::<u16>().map_err(|_| {
                        format!("--port must be a number from 0 to 65535, not {p:?}")
                    })?),
                };
            if let Some(a) = given.value("address") {
                let ip: std::net::IpAddr = a
                    .parse()
                    .map_err(|_| format!("--address must be an IP address, not {a:?}"))?;
                if !ip.is_loopback() {
                    return Err(format!(
                        "--address {a}: the web view listens on loopback addresses only (127.0.0.0/8, ::1)"
                    ));
                }
            }
            Command::Web {
                port,
                address: given.value("address").map(str::to_owned),
                open: given.has("open"),
                off: given.has("off"),
            }
        }
        "show" => Command::Show { id: id() },
        "attach" => Command::Attach { id: id() },
        "archive" | "unarchive" => Command::Archive {
            ids: ids(),
            undo: cmd.name == "unarchive",
        },
        "rm" => Command::Remove { ids: ids() },
        "screen" => {
            if given.has("ansi") && given.has("json") {
                return Err("--ansi and --json do not go together: choose one".into());
            }
            Command::Screen {
                id: id(),
                ansi: given.has("ansi"),
            }
        }
        "cast" => Command::Cast {
            id: id(),
            idle_limit: given.value("idle-limit").map(str::to_owned),
        },
        "events" => Command::Events {
            id: id(),
            after: number(given, "after")?.unwrap_or(0),
            follow: given.has("follow"),
        },
        "input" => Command::Input {
            id: id(),
            data: if given.has("literal") {
                rest[1..].concat()
            } else {
                super::keys::typed(&rest[1..])
            },
        },
        "kill" => Command::Kill {
            ids: ids(),
            signal: given.value("signal").map(str::to_owned),
            grace_ms: number(given, "grace")?,
        },
        "resize" => {
            let side = |what: &str, v: &str| -> Result<u16, String> {
                v.parse::<u16>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        format!("resize: {what} must be a number from 1 to 1000, not {v:?}")
                    })
            };
            Command::Resize {
                id: id(),
                cols: side("cols", &rest[1])?,
                rows: side("rows", &rest[2])?,
            }
        }
        "wait" => {
            let mut what = Vec::new();
            if given.has("exit") {
                what.push(WaitFor::Exit);
            }
            if let Some(ms) = number(given, "quiet")? {
                if ms == 0 {
                    return Err("--quiet must be at least 1 (milliseconds)".into());
                }
                what.push(WaitFor::Quiet(ms));
            }
            if let Some(re) = given.value("match") {
                what.push(WaitFor::Match(re.to_owned()));
            }
            if what.len() != 1 {
                return Err("wait: give one of --exit, --quiet MS, --match RE".into());
            }
            Command::Wait {
                id: id(),
                what: what.remove(0),
                timeout_ms: number(given, "timeout")?,
            }
        }
        "run" => {
            if given.has("json") && !given.has("detach") {
                return Err("--json applies to run only with --detach".into());
            }
            Command::Run(RunArgs {
                harness: rest[0].clone(),
                prompt: rest[1..].join(" "),
                root: given.value("root").map(str::to_owned),
                cwd: given.value("cwd").map(str::to_owned),
                title: given.value("title").map(str::to_owned),
                detach: given.has("detach"),
            })
        }
        other => unreachable!("{other} is in the table but not built"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Invocation, UsageError> {
        parse(s.split_whitespace().map(String::from))
    }

    fn message(s: &str) -> String {
        p(s).unwrap_err().message
    }

    #[test]
    fn commands() {
        assert_eq!(p("daemon serve").unwrap().command, Command::Serve);
        assert!(matches!(p("--help").unwrap().command, Command::Help(_)));
        assert!(matches!(p("").unwrap().command, Command::Help(_)));
        assert_eq!(p("--version").unwrap().command, Command::Version);
        let v = p("version --json").unwrap();
        assert!(v.json && v.command == Command::Version);
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
            p("kill abc def --signal INT --grace 500").unwrap().command,
            Command::Kill {
                ids: vec!["abc".into(), "def".into()],
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
        assert_eq!(
            p("input abc ls Enter C-c").unwrap().command,
            Command::Input {
                id: "abc".into(),
                data: "ls\r\x03".into()
            }
        );
        assert_eq!(
            p("input abc -l ls Enter").unwrap().command,
            Command::Input {
                id: "abc".into(),
                data: "lsEnter".into()
            }
        );
        assert_eq!(
            p("rm a b c").unwrap().command,
            Command::Remove {
                ids: vec!["a".into(), "b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(message("sesions").contains("did you mean \"sessions\""));
        assert!(message("daemon bogus").contains("\"bogus\""));
        assert!(
            message("daemon stat").contains("did you mean \"start\"")
                || message("daemon stat").contains("did you mean \"status\"")
        );
        assert!(message("sessions --limt 3").contains("did you mean --limit"));
        assert!(message("resize abc x 40").contains("\"x\""));
        assert!(message("resize abc 0 40").contains("1 to 1000"));
        assert!(message("sessions --limit 0").contains("at least 1"));
        assert!(message("screen x --json --ansi").contains("--ansi"));
        assert!(message("cast x --json").contains("--json does not apply to cast"));
        assert!(message("run sh --json hi").contains("--detach"));
        assert!(message("events abc --after -1").contains("--after"));
        assert!(message("show").contains("missing <id>"));
        assert!(message("health --after 3").contains("does not apply"));
        let e = p("run").unwrap_err();
        assert_eq!(e.command, Some("run"));
        assert!(e.to_string().contains("usage: coven run <harness>"));
        assert!(p("bogus --nope").is_err());
        assert!(p("wait x").is_err());
        assert!(p("wait x --exit --quiet 5").is_err());
    }

    #[test]
    fn did_you_mean_is_for_near_words_only() {
        let words = ["sessions", "show", "screen"];
        assert_eq!(did_you_mean("sesions", words.into_iter()), Some("sessions"));
        assert_eq!(did_you_mean("scren", words.into_iter()), Some("screen"));
        assert_eq!(did_you_mean("xyzzy", words.into_iter()), None);
    }
}
