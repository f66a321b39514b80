//! Texts made from the command table (`table`): the overview, each
//! command's help, the shell completions and the man page.

use std::fmt::Write;

use super::args::Shell;
use super::table::{self, Cmd, Opt};

const FOOTER: &str = "\
<id> may be any unique prefix of a session id. --json prints the API's JSON
(an error: its envelope, on stdout). Exit status: 0 done, 1 failed, 2 usage;
run and attach end with the session's.

environment:
  COVEN_HOME      the daemon's home (default: $HOME/.coven)
  COVEN_LOG       error, warn, info (default) or debug (daemon serve)
";

/// A command's name and arguments, as the overview lists it.
fn short_form(c: &Cmd) -> String {
    let mut s = c.name.to_owned();
    for a in c.args {
        let mut arg = format!("<{}>", a.name);
        if a.many {
            arg.push_str("...");
        }
        if a.optional {
            arg = format!("[{arg}]");
        }
        s.push(' ');
        s.push_str(&arg);
    }
    s
}

fn row(out: &mut String, left: &str, right: &str) {
    row_at(out, 32, left, right);
}

/// `  left   right`, `right` at column `width` + 2 (on the next line when
/// `left` reaches it).
fn row_at(out: &mut String, width: usize, left: &str, right: &str) {
    let lines = wrapped(right, 78 - 2 - width);
    let mut lines = lines.iter();
    let first = lines.next().map_or("", String::as_str);
    if left.len() < width {
        let _ = writeln!(out, "  {left:<width$}{first}");
    } else {
        let _ = writeln!(out, "  {left}\n  {:<width$}{first}", "");
    }
    for l in lines {
        let _ = writeln!(out, "  {:<width$}{l}", "");
    }
}

/// Words in lines of at most `width` characters (a longer word alone).
fn wrapped(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// `coven help`: every command in a line.
pub fn overview() -> String {
    let mut s = String::from("usage: coven <command> [options]\n\ncommands:\n");
    for c in table::visible() {
        row(&mut s, &short_form(c), c.summary);
    }
    s.push_str("\n`coven help <command>` (or `coven <command> --help`) describes one command.\n");
    s.push_str(FOOTER);
    s
}

/// `coven help daemon`: the daemon's commands.
pub fn daemon_usage() -> String {
    let subs: Vec<&str> = table::visible()
        .filter_map(|c| c.name.strip_prefix("daemon "))
        .collect();
    let mut s = format!("usage: coven daemon {}\n\n", subs.join(" | "));
    for c in table::visible().filter(|c| c.name.starts_with("daemon ")) {
        row(&mut s, &c.name["daemon ".len()..], c.summary);
    }
    s.push_str("\n`coven help daemon <command>` describes one.\n");
    s
}

fn flag(o: &Opt) -> String {
    let mut s = match o.short {
        Some(c) => format!("-{c}, --{}", o.long),
        None => format!("    --{}", o.long),
    };
    if let Some(v) = o.value {
        s.push(' ');
        s.push_str(v);
    }
    s
}

/// One command's help: its usage, what it does, its options.
pub fn help(c: &Cmd) -> String {
    let mut s = format!("{}\n\n{}", c.usage(), c.about);
    // Its own options first, then --json and --help.
    let mut opts: Vec<&Opt> = table::options_of(c).collect();
    opts.sort_by_key(|o| ["json", "help"].contains(&o.long));
    s.push_str("\noptions:\n");
    for o in opts {
        row_at(&mut s, 20, &flag(o), o.help);
    }
    s
}

/// The words a shell completes after `coven`.
fn top_words() -> Vec<&'static str> {
    let mut words: Vec<&str> = Vec::new();
    for c in table::visible() {
        let first = c.name.split(' ').next().unwrap_or(c.name);
        if !words.contains(&first) {
            words.push(first);
        }
    }
    words
}

fn long_opts(c: &Cmd) -> Vec<String> {
    table::options_of(c)
        .map(|o| format!("--{}", o.long))
        .collect()
}

/// Whether a command's arguments are session ids (completed from the
/// daemon's list).
fn takes_ids(c: &Cmd) -> bool {
    c.args.first().is_some_and(|a| a.name == "id")
}

/// A completion script for the shell.
pub fn completions(shell: Shell) -> String {
    match shell {
        Shell::Bash => bash(),
        Shell::Zsh => zsh(),
        Shell::Fish => fish(),
    }
}

fn bash() -> String {
    let mut s = String::from(
        "# bash completion for coven (coven completions bash)\n_coven() {\n    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words ids\n    if [ \"$COMP_CWORD\" -eq 1 ]; then\n",
    );
    let _ = writeln!(
        s,
        "        COMPREPLY=($(compgen -W '{}' -- \"$cur\")); return",
        top_words().join(" ")
    );
    s.push_str(
        "    fi\n    if [ \"$cmd\" = daemon ]; then\n        if [ \"$COMP_CWORD\" -eq 2 ]; then\n",
    );
    let subs: Vec<&str> = table::visible()
        .filter_map(|c| c.name.strip_prefix("daemon "))
        .collect();
    let _ = writeln!(
        s,
        "            COMPREPLY=($(compgen -W '{}' -- \"$cur\")); return",
        subs.join(" ")
    );
    s.push_str("        fi\n        cmd=\"daemon ${COMP_WORDS[2]}\"\n");
    s.push_str("    fi\n    case \"$cmd\" in\n");
    for c in table::visible() {
        let mut words = long_opts(c).join(" ");
        let ids = takes_ids(c);
        match c.name {
            "help" => words = format!("{} {words}", top_words().join(" ")),
            "completions" => words = format!("bash zsh fish {words}"),
            _ => {}
        }
        let _ = writeln!(
            s,
            "        '{}') words='{words}'; ids={} ;;",
            c.name,
            u8::from(ids)
        );
    }
    s.push_str("        *) words=''; ids=0 ;;\n    esac\n");
    s.push_str("    if [ \"$ids\" = 1 ] && [[ \"$cur\" != -* ]]; then\n        words=\"$words $(coven sessions --all --ids 2>/dev/null)\"\n    fi\n");
    s.push_str("    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -o default -F _coven coven\n");
    s
}

/// Single quotes for zsh and fish descriptions.
fn quoted(text: &str) -> String {
    text.replace('\'', "'\\''")
}

fn zsh() -> String {
    let mut s = String::from("#compdef coven\n# zsh completion for coven (coven completions zsh)\n\n_coven() {\n  local -a commands opts\n  if (( CURRENT == 2 )); then\n    commands=(\n");
    for w in top_words() {
        let summary = table::visible().find(|c| c.name == w).map_or(
            "the daemon: serve, start, stop, status, restart, install, uninstall",
            |c| c.summary,
        );
        let _ = writeln!(s, "      '{w}:{}'", quoted(&summary.replace(':', "\\:")));
    }
    s.push_str("    )\n    _describe command commands\n    return\n  fi\n  local cmd=$words[2]\n");
    s.push_str(
        "  if [[ $cmd == daemon ]]; then\n    if (( CURRENT == 3 )); then\n      commands=(",
    );
    for c in table::visible().filter(|c| c.name.starts_with("daemon ")) {
        let _ = write!(s, " '{}'", &c.name["daemon ".len()..]);
    }
    s.push_str(")\n      _describe command commands\n      return\n    fi\n    cmd=\"daemon $words[3]\"\n  fi\n  case $cmd in\n");
    for c in table::visible() {
        let _ = write!(s, "    '{}') opts=(", c.name);
        for o in table::options_of(c) {
            let _ = write!(
                s,
                " '--{}[{}]'",
                o.long,
                quoted(&o.help.replace([']', '['], ""))
            );
        }
        s.push_str(" ) ;;\n");
    }
    s.push_str("  esac\n  if [[ $PREFIX == -* ]]; then\n    _values option $opts\n  else\n");
    s.push_str("    case $cmd in\n");
    let ids: Vec<&str> = table::visible()
        .filter(|c| takes_ids(c))
        .map(|c| c.name)
        .collect();
    let _ = writeln!(
        s,
        "      {}) compadd -- ${{(f)\"$(coven sessions --all --ids 2>/dev/null)\"}} ;;",
        ids.iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join("|")
    );
    s.push_str("      completions) compadd bash zsh fish ;;\n      *) _files ;;\n    esac\n  fi\n}\n\ncompdef _coven coven\n");
    s
}

fn fish() -> String {
    let mut s = String::from(
        "# fish completion for coven (coven completions fish)\ncomplete -c coven -f\n",
    );
    let top = top_words().join(" ");
    for w in top_words() {
        let summary = table::visible()
            .find(|c| c.name == w)
            .map_or("the daemon", |c| c.summary);
        let _ = writeln!(
            s,
            "complete -c coven -n 'not __fish_seen_subcommand_from {top}' -a {w} -d '{}'",
            quoted(summary)
        );
    }
    for c in table::visible() {
        let (first, sub) = match c.name.split_once(' ') {
            Some((f, s)) => (f, Some(s)),
            None => (c.name, None),
        };
        let cond = match sub {
            Some(sub) => format!(
                "__fish_seen_subcommand_from {first}; and __fish_seen_subcommand_from {sub}"
            ),
            None => format!("__fish_seen_subcommand_from {first}"),
        };
        if let Some(sub) = sub {
            let subs: Vec<&str> = table::visible()
                .filter_map(|d| d.name.strip_prefix("daemon "))
                .collect();
            let _ = writeln!(
                s,
                "complete -c coven -n '__fish_seen_subcommand_from daemon; and not __fish_seen_subcommand_from {}' -a {sub} -d '{}'",
                subs.join(" "),
                quoted(c.summary)
            );
        }
        for o in table::options_of(c) {
            let _ = write!(s, "complete -c coven -n '{cond}' -l {}", o.long);
            if let Some(ch) = o.short {
                let _ = write!(s, " -s {ch}");
            }
            if o.value.is_some() {
                s.push_str(" -r");
            }
            let _ = writeln!(s, " -d '{}'", quoted(o.help));
        }
        if takes_ids(c) {
            let _ = writeln!(
                s,
                "complete -c coven -n '{cond}' -a '(coven sessions --all --ids 2>/dev/null)'"
            );
        }
    }
    s.push_str(
        "complete -c coven -n '__fish_seen_subcommand_from completions' -a 'bash zsh fish'\n",
    );
    s
}

/// Text for roff: backslashes and dashes escaped, no line starting with a
/// control character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A help paragraph in roff: its lines filled, its indented lines (lists,
/// examples) kept as they are.
fn roff_paragraph(text: &str) -> String {
    let mut s = String::new();
    let mut verbatim = false;
    for line in text.lines() {
        let indented = line.starts_with("  ");
        if indented != verbatim {
            s.push_str(if indented { ".nf\n" } else { ".fi\n" });
            verbatim = indented;
        }
        s.push_str(&roff(line));
        s.push('\n');
    }
    if verbatim {
        s.push_str(".fi\n");
    }
    s
}

/// The man page, `coven(1)`, in roff.
pub fn man() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        ".TH COVEN 1 \"\" \"coven {}\" \"User Commands\"",
        env!("CARGO_PKG_VERSION")
    );
    s.push_str(
        ".SH NAME\ncoven \\- coding\\-agent sessions in terminals, kept by a per\\-user daemon\n",
    );
    s.push_str(".SH SYNOPSIS\n.B coven\n.I command\n[\\fIoptions\\fR]\n");
    s.push_str(".SH DESCRIPTION\n");
    s.push_str(&roff(
        "coven talks to the Coven daemon, a per-user background process that runs \
         coding-agent CLIs (harnesses) in terminals as sessions, records what they \
         print, and serves it over HTTP on the Unix socket <COVEN_HOME>/coven.sock. \
         Sessions belong to the daemon, not to the terminal that started them: \
         attach to one, detach, and it goes on.",
    ));
    s.push_str("\n.SH COMMANDS\n");
    for c in table::visible() {
        let _ = writeln!(s, ".TP\n.B coven {}", roff(c.name));
        let synopsis = c.synopsis();
        if !synopsis.is_empty() {
            let _ = writeln!(s, "{}", roff(&synopsis));
        }
        s.push_str(".br\n");
        s.push_str(&roff_paragraph(c.about));
        let opts: Vec<&Opt> = table::options_of(c).filter(|o| o.long != "help").collect();
        if !opts.is_empty() {
            s.push_str(".RS\n");
            for o in opts {
                let _ = writeln!(s, ".TP\n.B {}\n{}", roff(flag(o).trim()), roff(o.help));
            }
            s.push_str(".RE\n");
        }
    }
    s.push_str(".SH EXIT STATUS\n0 done, 1 failed, 2 usage error (found before asking the daemon). \\fBrun\\fR and \\fBattach\\fR end with the session's status (128+N for a signal N); \\fBwait\\fR exits 1 when its timeout came first. A closed standard output ends a command as SIGPIPE does.\n");
    s.push_str(".SH ENVIRONMENT\n.TP\n.B COVEN_HOME\nThe daemon's home (default: $HOME/.coven).\n.TP\n.B COVEN_LOG\nerror, warn, info (default) or debug, for \\fBdaemon serve\\fR.\n");
    s.push_str(".SH FILES\n.TP\n.I <COVEN_HOME>/coven.sock\nThe socket.\n.TP\n.I <COVEN_HOME>/config.json\nThe configuration: harnesses, limits, retention.\n.TP\n.I <COVEN_HOME>/daemon.log\nThe log of a daemon started by \\fBdaemon start\\fR or a service.\n");
    s.push_str(".SH SEE ALSO\n.BR tmux (1),\n.BR asciinema (1)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_option_is_in_every_text() {
        let texts = [
            ("overview", overview()),
            ("bash", completions(Shell::Bash)),
            ("zsh", completions(Shell::Zsh)),
            ("fish", completions(Shell::Fish)),
            ("man", man().replace("\\-", "-")),
        ];
        for (what, text) in &texts {
            for c in table::visible() {
                let last = c.name.rsplit(' ').next().unwrap();
                assert!(text.contains(last), "{what} lacks {}", c.name);
                if *what != "overview" {
                    for o in table::options_of(c) {
                        assert!(text.contains(o.long), "{what} lacks --{}", o.long);
                    }
                }
            }
        }
    }
}
