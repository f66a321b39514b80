//! The harness registry: built-ins plus those declared in `config.json`,
//! and the `PATH` lookup that decides whether one is available.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A harness: built in, or declared in `config.json` (which `config`
/// parses straight into this type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Harness {
    /// `[A-Za-z0-9._-]{1,64}`.
    pub id: String,
    pub label: String,
    /// An absolute path, or a name looked up on `PATH` at launch.
    pub command: String,
    /// `{prompt}` in any argument is replaced by the prompt.
    pub args: Vec<String>,
    /// Added to the daemon's environment.
    pub env: Vec<(String, String)>,
}

fn builtin(id: &str, label: &str, args: &[&str]) -> Harness {
    Harness {
        id: id.to_owned(),
        label: label.to_owned(),
        command: id.to_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    }
}

/// Built-ins first (`codex`, `claude`, `copilot`), then declared ones; a
/// declared harness with a built-in's id replaces it.
pub fn registry(declared: &[Harness]) -> Vec<Harness> {
    let mut all = vec![
        builtin("codex", "Codex", &["{prompt}"]),
        builtin("claude", "Claude Code", &["{prompt}"]),
        builtin("copilot", "GitHub Copilot", &["--interactive={prompt}"]),
    ];
    for h in declared.iter().cloned() {
        match all.iter_mut().find(|b| b.id == h.id) {
            Some(slot) => *slot = h,
            None => all.push(h),
        }
    }
    all
}

impl Harness {
    pub fn argv(&self, prompt: &str) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.replace("{prompt}", prompt))
            .collect()
    }

    /// The executable this harness would run now, if there is one.
    pub fn resolve(&self, path_var: &OsStr) -> Option<PathBuf> {
        resolve(&self.command, path_var)
    }
}

fn executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks `command` up like `execvp` would: a name with a `/` as is,
/// otherwise each `PATH` entry in turn.
pub fn resolve(command: &str, path_var: &OsStr) -> Option<PathBuf> {
    if command.contains('/') {
        let p = PathBuf::from(command);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(command))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_overrides() {
        let declared = [Harness {
            id: "codex".into(),
            label: "Mine".into(),
            command: "/bin/echo".into(),
            args: vec!["-n".into(), "[{prompt}]".into()],
            env: vec![],
        }];
        let all = registry(&declared);
        let ids: Vec<&str> = all.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["codex", "claude", "copilot"]);
        assert_eq!(all[0].argv("hi"), ["-n", "[hi]"]);
        assert_eq!(all[2].argv("go"), ["--interactive=go"]);
    }

    #[test]
    fn lookup() {
        assert_eq!(
            resolve("sh", OsStr::new("/nonexistent:/bin")),
            Some("/bin/sh".into())
        );
        assert_eq!(resolve("sh", OsStr::new("relative:/nonexistent")), None);
        assert_eq!(resolve("/bin/sh", OsStr::new("")), Some("/bin/sh".into()));
        assert_eq!(resolve("/etc/passwd", OsStr::new("")), None);
        assert_eq!(
            resolve("definitely-not-here-42", OsStr::new("/bin:/usr/bin")),
            None
        );
    }
}
