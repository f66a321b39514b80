//! The one table of the command line: every command, its arguments and its
//! options, with their help. The parser (`args`), the help texts, the shell
//! completions and the man page (`docs`) are all made from it, so none of
//! them can name a command or an option the others do not.

/// An option, as every command that takes it reads it.
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's placeholder (`MS`), or `None` for a flag.
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// A positional argument.
pub struct Arg {
    pub name: &'static str,
    /// One or more (`<id>...`).
    pub many: bool,
    /// May be left out.
    pub optional: bool,
}

const fn one(name: &'static str) -> Arg {
    Arg {
        name,
        many: false,
        optional: false,
    }
}

const fn many(name: &'static str) -> Arg {
    Arg {
        name,
        many: true,
        optional: false,
    }
}

const fn maybe(name: &'static str) -> Arg {
    Arg {
        name,
        many: false,
        optional: true,
    }
}

/// A command.
pub struct Cmd {
    /// Its words: `sessions`, `daemon start`.
    pub name: &'static str,
    pub args: &'static [Arg],
    /// The long names of the options it takes, besides `--help`.
    pub opts: &'static [&'static str],
    /// Whether `--json` applies (it prints something a program may read).
    pub json: bool,
    /// What follows the name in its usage line, when the arguments and
    /// options alone do not say it (`wait`'s one-of).
    pub synopsis: Option<&'static str>,
    /// One line, for the overview.
    pub summary: &'static str,
    /// Its help, after the usage line.
    pub about: &'static str,
    /// Internal: left out of help, completions and the man page.
    pub hidden: bool,
}

const BASE: Cmd = Cmd {
    name: "",
    args: &[],
    opts: &[],
    json: true,
    synopsis: None,
    summary: "",
    about: "",
    hidden: false,
};

/// Every option any command takes (a long name means the same everywhere).
pub const OPTS: &[Opt] = &[
    Opt {
        long: "json",
        short: None,
        value: None,
        help: "print the API's JSON (errors too: the error envelope, on stdout)",
    },
    Opt {
        long: "help",
        short: Some('h'),
        value: None,
        help: "print this command's help",
    },
    Opt {
        long: "version",
        short: Some('V'),
        value: None,
        help: "print the version",
    },
    Opt {
        long: "all",
        short: Some('a'),
        value: None,
        help: "include archived sessions",
    },
    Opt {
        long: "limit",
        short: Some('n'),
        value: Some("N"),
        help: "at most N sessions (N >= 1)",
    },
    Opt {
        long: "ids",
        short: None,
        value: None,
        help: "print only the ids, one per line",
    },
    Opt {
        long: "after",
        short: None,
        value: Some("SEQ"),
        help: "only events after this sequence number",
    },
    Opt {
        long: "follow",
        short: Some('f'),
        value: None,
        help: "keep following until the session ends",
    },
    Opt {
        long: "literal",
        short: Some('l'),
        value: None,
        help: "send every argument as text (no key names)",
    },
    Opt {
        long: "signal",
        short: Some('s'),
        value: Some("SIG"),
        help: "TERM, INT, HUP or KILL (default TERM)",
    },
    Opt {
        long: "grace",
        short: None,
        value: Some("MS"),
        help: "send KILL after MS milliseconds if it still runs (default: the daemon's killGraceMs)",
    },
    Opt {
        long: "root",
        short: None,
        value: Some("DIR"),
        help: "the project root (default: the current directory)",
    },
    Opt {
        long: "cwd",
        short: None,
        value: Some("DIR"),
        help: "where the harness starts: absolute, or relative to the root (default: the current directory when inside the root, else the root)",
    },
    Opt {
        long: "title",
        short: None,
        value: Some("T"),
        help: "the session's title (default: the prompt)",
    },
    Opt {
        long: "detach",
        short: Some('d'),
        value: None,
        help: "print the new session's id (--json: its record) and return at once",
    },
    Opt {
        long: "exit",
        short: None,
        value: None,
        help: "until the session has ended",
    },
    Opt {
        long: "quiet",
        short: None,
        value: Some("MS"),
        help: "until it has printed nothing for MS milliseconds",
    },
    Opt {
        long: "match",
        short: None,
        value: Some("RE"),
        help: "until it prints text matching the regular expression RE (as shown: escapes removed, lines joined across reads; from now on)",
    },
    Opt {
        long: "timeout",
        short: None,
        value: Some("MS"),
        help: "give up after MS milliseconds (default and most: 600000)",
    },
    Opt {
        long: "ansi",
        short: None,
        value: None,
        help: "bytes that redraw the screen, colours included",
    },
    Opt {
        long: "idle-limit",
        short: None,
        value: Some("S"),
        help: "pauses longer than S seconds (a decimal) count as S",
    },
    Opt {
        long: "port",
        short: Some('p'),
        value: Some("P"),
        help: "the port (default 7373; 0: any free one)",
    },
    Opt {
        long: "address",
        short: None,
        value: Some("A"),
        help: "a loopback address to listen on (default 127.0.0.1)",
    },
    Opt {
        long: "open",
        short: Some('o'),
        value: None,
        help: "open the sign-in link in the browser",
    },
    Opt {
        long: "off",
        short: None,
        value: None,
        help: "stop the web view (every browser signed in is signed out)",
    },
    Opt {
        long: "manager",
        short: None,
        value: Some("M"),
        help: "systemd or launchd (default: this system's)",
    },
    Opt {
        long: "print",
        short: None,
        value: None,
        help: "print the service file instead of installing it",
    },
    Opt {
        long: "no-start",
        short: None,
        value: None,
        help: "write the service file, but do not load or start it",
    },
];

/// Every command, in the order the help lists them.
pub const COMMANDS: &[Cmd] = &[
    Cmd {
        name: "daemon serve",
        json: false,
        summary: "run the daemon in the foreground, logging to stderr",
        about: "Runs the daemon in the foreground, logging to stderr (COVEN_LOG sets the\nlevel). SIGTERM or SIGINT stop it; SIGUSR2 is a live restart.\n",
        ..BASE
    },
    Cmd {
        name: "daemon start",
        summary: "start the daemon in the background",
        about: "Starts the daemon in the background (its log: <COVEN_HOME>/daemon.log) and\nwaits until it answers. Says so and succeeds when one already runs. When it\nexits at start, prints the cause from its log.\n",
        ..BASE
    },
    Cmd {
        name: "daemon stop",
        summary: "stop the daemon (it ends its running sessions)",
        about: "Asks the daemon to stop and waits until it is gone; it kills its running\nsessions first. Succeeds, saying \"not running\", when none runs.\n",
        ..BASE
    },
    Cmd {
        name: "daemon status",
        summary: "whether it runs: pid, uptime, socket, sessions, service",
        about: "Pid, uptime, socket, live sessions, and whether it is installed as a\nservice. Exits 1 when no daemon runs.\n",
        ..BASE
    },
    Cmd {
        name: "daemon restart",
        summary: "a live restart: the installed binary takes over, sessions go on",
        about: "A live restart: the binary now at the daemon's path takes over and every\nsession keeps running. Starts the daemon when none runs.\n",
        ..BASE
    },
    Cmd {
        name: "daemon install",
        opts: &["manager", "print", "no-start"],
        json: false,
        summary: "run the daemon as a service (systemd user unit or launchd agent)",
        about: "Writes a service for this binary and this COVEN_HOME, then loads and starts\nit: a systemd user unit (~/.config/systemd/user/coven.service) on Linux, a\nlaunchd agent (~/Library/LaunchAgents/dev.coven.daemon.plist) on macOS. It\nstarts at login, logs to <COVEN_HOME>/daemon.log, has the PATH this command\nran with (harnesses are looked up on it) and 8192 descriptors. Installing\nagain replaces the file. A daemon already running outside the service must\nbe stopped first.\n",
        ..BASE
    },
    Cmd {
        name: "daemon uninstall",
        opts: &["manager"],
        json: false,
        summary: "stop the service and remove its file",
        about: "Stops the service (its daemon ends its running sessions), unloads it and\nremoves its file. Says so and succeeds when none is installed.\n",
        ..BASE
    },
    Cmd {
        name: "daemon _server",
        json: false,
        hidden: true,
        ..BASE
    },
    Cmd {
        name: "daemon _handover",
        json: false,
        hidden: true,
        ..BASE
    },
    Cmd {
        name: "health",
        summary: "the daemon's health",
        about: "The daemon's version, pid, socket and counters.\n",
        ..BASE
    },
    Cmd {
        name: "harnesses",
        summary: "harnesses and whether each is installed",
        about: "The harnesses the daemon knows (built-in and declared in config.json), the\nexecutable each resolves to on the daemon's PATH, and how to install the\nbuilt-in ones that are missing.\n",
        ..BASE
    },
    Cmd {
        name: "run",
        args: &[one("harness"), many("prompt")],
        opts: &["root", "cwd", "title", "detach"],
        synopsis: Some("<harness> [--root DIR] [--cwd DIR] [--title T] [--detach] [--] <prompt>..."),
        summary: "start a session and attach to it",
        about: "Starts a session of <harness> with the prompt (the words after the harness,\njoined by spaces; put them after -- when one starts with a dash), then\nattaches to it as `coven attach` does, and ends with the session's exit\nstatus. --json needs --detach.\n",
        ..BASE
    },
    Cmd {
        name: "sessions",
        opts: &["all", "limit", "ids"],
        summary: "list sessions, newest first",
        about: "Sessions, newest first, fetched a page at a time. Archived ones are left out\nunless --all is given.\n",
        ..BASE
    },
    Cmd {
        name: "show",
        args: &[one("id")],
        summary: "one session",
        about: "One session's record.\n",
        ..BASE
    },
    Cmd {
        name: "attach",
        args: &[one("id")],
        json: false,
        summary: "a session's terminal (Ctrl-] detaches)",
        about: "Draws the session's screen as it is now, then follows it live (to a file\nor pipe: its output from the start). What you type goes to the session's\nterminal (the local terminal is in raw mode); your terminal's size is sent\non attach and whenever it changes. Ctrl-] detaches and leaves the session\nrunning. Ends when the session does, with its exit status (128+N for a\nsession ended by signal N); 0 on detach; 1 when the daemon goes away. The\nterminal is restored on every way out.\n",
        ..BASE
    },
    Cmd {
        name: "events",
        args: &[one("id")],
        opts: &["after", "follow"],
        summary: "a session's output",
        about: "The session's output as text, or (--json) its event records, one per line.\n",
        ..BASE
    },
    Cmd {
        name: "input",
        args: &[one("id"), many("text|key")],
        opts: &["literal"],
        summary: "type text and keys into a session's terminal",
        about: "Sends the arguments to the session's terminal as if typed, one after\nanother with nothing between them (quote text that holds spaces). An\nargument that is a key name sends that key, as tmux's send-keys does:\n  Enter Tab BTab Escape Space BSpace Up Down Left Right Home End\n  PageUp PageDown Insert Delete F1..F12\n  C-a..C-z, C-@, C-[, C-\\, C-], C-^, C-_   control keys (C-c interrupts)\n  M-<key>                                   the key with Alt (Escape first)\nAnything else is sent as it is; no escapes are read (type Enter, not \\n).\nWith --literal, every argument is text. After --, an argument that starts\nwith a dash is text too.\nExample: coven input 7f3 'make test' Enter\n",
        ..BASE
    },
    Cmd {
        name: "kill",
        args: &[many("id")],
        opts: &["signal", "grace"],
        summary: "end sessions",
        about: "Ends each session: SIG goes to its process group, and KILL follows after\nthe grace period if it is still alive.\n",
        ..BASE
    },
    Cmd {
        name: "resize",
        args: &[one("id"), one("cols"), one("rows")],
        summary: "set a session's terminal size",
        about: "Sets the session's terminal size (1..=1000 each).\n",
        ..BASE
    },
    Cmd {
        name: "wait",
        args: &[one("id")],
        opts: &["exit", "quiet", "match", "timeout"],
        synopsis: Some("<id> --exit | --quiet MS | --match RE [--timeout MS]"),
        summary: "until a session ends, goes quiet or prints RE",
        about: "Waits until the session has ended, printed nothing for a while, or printed\ntext matching a pattern; prints what met the wait. Exit status: 0 met, 1\nnot met by the timeout (or an error).\n",
        ..BASE
    },
    Cmd {
        name: "screen",
        args: &[one("id")],
        opts: &["ansi"],
        summary: "what a session's screen shows now",
        about: "Prints what the session's terminal shows now, one line per row, without\nthe blank rows below the last text (--json: the API's snapshot with size,\ncursor and title; --ansi: bytes that redraw it, for a terminal of the\nsession's size).\n",
        ..BASE
    },
    Cmd {
        name: "cast",
        args: &[one("id")],
        opts: &["idle-limit"],
        json: false,
        synopsis: Some("<id> [--idle-limit S] > session.cast"),
        summary: "a session as an asciicast recording (stdout)",
        about: "Writes the session's output, input and resizes so far as an asciicast v2\nrecording, which `asciinema play` and asciinema's web player read.\n",
        ..BASE
    },
    Cmd {
        name: "archive",
        args: &[many("id")],
        summary: "hide sessions from the list",
        about: "Hides each session from `coven sessions` (a running one keeps running).\n",
        ..BASE
    },
    Cmd {
        name: "unarchive",
        args: &[many("id")],
        summary: "bring archived sessions back to the list",
        about: "Brings each archived session back to `coven sessions`.\n",
        ..BASE
    },
    Cmd {
        name: "rm",
        args: &[many("id")],
        summary: "delete finished sessions and their history",
        about: "Deletes each finished session: its record, its history and its files.\nA running session is refused (kill it first).\n",
        ..BASE
    },
    Cmd {
        name: "web",
        opts: &["port", "address", "open", "off"],
        synopsis: Some("[--port P] [--address A] [--open] | --off"),
        summary: "every session's screen in a browser (loopback only)",
        about: "Asks the daemon to serve the web view on http://127.0.0.1:P/ (it stays on\nthrough restarts until --off) and prints a sign-in link: it works once,\nwithin a minute, and signs that browser in with a cookie. --open opens it.\nThe page shows every running session's screen live; a click opens one full\nsize, with the keyboard going to it. Only loopback addresses are allowed;\ndocs/SECURITY.md describes how the view is protected.\n",
        ..BASE
    },
    Cmd {
        name: "completions",
        args: &[one("shell")],
        json: false,
        summary: "a completion script for bash, zsh or fish",
        about: "Prints a completion script for the shell. To use it:\n  bash: coven completions bash > ~/.local/share/bash-completion/completions/coven\n  zsh:  coven completions zsh > \"${fpath[1]}/_coven\"\n  fish: coven completions fish > ~/.config/fish/completions/coven.fish\n",
        ..BASE
    },
    Cmd {
        name: "man",
        json: false,
        summary: "the manual page (roff): coven man | man -l -",
        about: "Prints the manual page in roff. Read it with `coven man | man -l -`, or\ninstall it: coven man > ~/.local/share/man/man1/coven.1\n",
        ..BASE
    },
    Cmd {
        name: "help",
        args: &[maybe("command")],
        json: false,
        summary: "the commands, or one command's help",
        about: "The commands, or one command's help (as `coven <command> --help`).\n",
        ..BASE
    },
    Cmd {
        name: "version",
        summary: "the version of this coven",
        about: "The version of this coven and the API it speaks.\n",
        ..BASE
    },
];

/// An option by its long name.
pub fn opt(long: &str) -> Option<&'static Opt> {
    OPTS.iter().find(|o| o.long == long)
}

/// An option by its short name.
pub fn short(c: char) -> Option<&'static Opt> {
    OPTS.iter().find(|o| o.short == Some(c))
}

/// A command by its name.
pub fn command(name: &str) -> Option<&'static Cmd> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The commands a person can run (not the internal ones).
pub fn visible() -> impl Iterator<Item = &'static Cmd> {
    COMMANDS.iter().filter(|c| !c.hidden)
}

/// The options a command takes, `--json` (where it applies) and `--help`
/// included.
pub fn options_of(cmd: &Cmd) -> impl Iterator<Item = &'static Opt> + '_ {
    OPTS.iter().filter(move |o| {
        cmd.opts.contains(&o.long) || (o.long == "json" && cmd.json) || o.long == "help"
    })
}

impl Cmd {
    /// What follows `coven <name>` in its usage line.
    pub fn synopsis(&self) -> String {
        if let Some(s) = self.synopsis {
            return s.to_owned();
        }
        let mut parts: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let mut s = format!("<{}>", a.name);
                if a.many {
                    s.push_str("...");
                }
                if a.optional {
                    s = format!("[{s}]");
                }
                s
            })
            .collect();
        for o in options_of(self).filter(|o| o.long != "help" && o.long != "json") {
            parts.push(match o.value {
                Some(v) => format!("[--{} {v}]", o.long),
                None => format!("[--{}]", o.long),
            });
        }
        parts.join(" ")
    }

    /// `usage: coven <name> <synopsis> [--json]`.
    pub fn usage(&self) -> String {
        let mut line = format!("usage: coven {}", self.name);
        let synopsis = self.synopsis();
        if !synopsis.is_empty() {
            line.push(' ');
            line.push_str(&synopsis);
        }
        if self.json {
            line.push_str(" [--json]");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_option_exists_once() {
        for c in COMMANDS {
            for o in c.opts {
                assert!(opt(o).is_some(), "{}: --{o}", c.name);
            }
        }
        for (i, o) in OPTS.iter().enumerate() {
            assert!(
                OPTS[i + 1..]
                    .iter()
                    .all(|p| p.long != o.long && (o.short.is_none() || p.short != o.short)),
                "--{} twice",
                o.long
            );
        }
    }
}
