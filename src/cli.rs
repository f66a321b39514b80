//! argv to a `Command`. No sockets here.

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `coven daemon serve`: run the daemon in the foreground.
    Serve,
    Help,
    Version,
}

pub const USAGE: &str = "\
usage: coven <command>

commands:
  daemon serve    run the daemon in the foreground on <COVEN_HOME>/coven.sock
  help            show this text
  version         show the version

environment:
  COVEN_HOME      the daemon's home (default: $HOME/.coven)
  COVEN_LOG       error, warn, info (default) or debug
";

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let args: Vec<String> = args.into_iter().collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["daemon", "serve"] => Ok(Command::Serve),
        [] | ["help"] | ["--help"] | ["-h"] => Ok(Command::Help),
        ["version"] | ["--version"] | ["-V"] => Ok(Command::Version),
        _ => Err(format!("unknown command: {}", words.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let p = |s: &str| parse(s.split_whitespace().map(String::from));
        assert_eq!(p("daemon serve"), Ok(Command::Serve));
        assert_eq!(p("--help"), Ok(Command::Help));
        assert_eq!(p(""), Ok(Command::Help));
        assert_eq!(p("--version"), Ok(Command::Version));
        assert!(p("daemon").is_err());
        assert!(p("daemon serve extra").is_err());
    }
}
