//! One validated `Config`: where the daemon lives and the limits it enforces.
//!
//! Built once at start (from `<COVEN_HOME>/config.json` when present, else
//! defaults) and passed by reference; nothing reads the environment or the
//! file again after that.
//!
//! `config.json` (every field optional):
//!
//! ```json
//! { "limits": { "maxHeadBytes": 16384, "maxHeaders": 64, "maxBodyBytes": 1048576,
//!               "headTimeoutMs": 10000, "idleTimeoutMs": 60000, "maxConnections": 1024,
//!               "maxQueuedResponseBytes": 262144, "maxBufferedBytes": 67108864,
//!               "shutdownGraceMs": 2000,
//!               "maxLiveSessions": 256, "ringBytes": 262144, "inputQueueBytes": 262144,
//!               "killGraceMs": 3000, "journalBytesPerSession": 268435456,
//!               "journalBytesTotal": 4294967296, "storageWarningBytes": 1073741824 },
//!   "retentionDays": 30,
//!   "harnesses": [ { "id": "sh", "label": "Shell", "command": "/bin/sh",
//!                    "args": ["-c", "{prompt}"], "env": { "FOO": "bar" } } ] }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::conn::ConnLimits;
use crate::http::parse;
use crate::session::harness::Harness;

/// Limits, each with a unit in its name. Defaults are in `Limits::default`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_queued_response_bytes: usize,
    /// All connections' buffers together, past 128 KiB each; past it, a
    /// request that would need more is a 503.
    pub max_buffered_bytes: usize,
    /// How long in-flight responses may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Sessions running at once; the next launch is a 503.
    pub max_live_sessions: usize,
    /// Per-session budget of events held in memory.
    pub ring_bytes: usize,
    /// Per-session input waiting for the PTY; past it, input is a 503.
    pub input_queue_bytes: usize,
    /// Default time between a kill's signal and SIGKILL.
    pub kill_grace: Duration,
    /// Journal bytes kept per session (oldest segments go first).
    pub journal_bytes_per_session: u64,
    /// Journal bytes kept in all (oldest finished sessions go first).
    pub journal_bytes_total: u64,
    /// Below this much free disk space health says `storage.status:
    /// "warning"`.
    pub storage_warning_bytes: u64,
    /// Finished sessions are deleted this long after they finished (their
    /// `updated_at`); `None` keeps them for ever. `retentionDays` at the top
    /// of config.json (default 30, 0 = for ever; fractions allowed).
    pub retention: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_queued_response_bytes: 256 * 1024,
            max_buffered_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(2),
            max_live_sessions: 256,
            ring_bytes: 256 * 1024,
            input_queue_bytes: 256 * 1024,
            kill_grace: Duration::from_secs(3),
            journal_bytes_per_session: 256 * 1024 * 1024,
            journal_bytes_total: 4 * 1024 * 1024 * 1024,
            retention: Some(Duration::from_secs(30 * 86_400)),
            storage_warning_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Limits {
    pub fn sessions(&self) -> crate::session::Limits {
        crate::session::Limits {
            max_live: self.max_live_sessions,
            ring_bytes: self.ring_bytes,
            input_queue_bytes: self.input_queue_bytes,
            kill_grace: self.kill_grace,
            journal_bytes_per_session: self.journal_bytes_per_session,
            journal_bytes_total: self.journal_bytes_total,
            retention: self.retention,
            storage_warning_bytes: self.storage_warning_bytes,
        }
    }

    pub fn conn(&self) -> ConnLimits {
        ConnLimits {
            http: parse::Limits {
                max_head_bytes: self.max_head_bytes,
                max_headers: self.max_headers,
                max_body_bytes: self.max_body_bytes,
            },
            max_queued_bytes: self.max_queued_response_bytes,
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            linger: Duration::from_secs(2),
            max_buffered_bytes: self.max_buffered_bytes,
        }
    }
}

/// The socket's name in `COVEN_HOME`.
pub const SOCKET_NAME: &str = "coven.sock";

#[derive(Clone, Debug)]
pub struct Config {
    /// `COVEN_HOME`.
    pub home: PathBuf,
    pub limits: Limits,
    /// Declared harnesses, in file order (built-ins are added by
    /// `session::harness`).
    pub harnesses: Vec<Harness>,
    /// The daemon's `PATH`, where harness commands are looked up.
    pub path: std::ffi::OsString,
    /// `web`: the loopback web view listens here from the start.
    pub web: Option<std::net::SocketAddr>,
}

/// A configuration problem, naming the file and the field.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.path.display(),
                self.field,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn socket_path(&self) -> PathBuf {
        self.home.join(SOCKET_NAME)
    }

    /// Reads `<home>/config.json` if it exists.
    pub fn load(home: PathBuf) -> Result<Config, ConfigError> {
        let path = home.join("config.json");
        let text = match std::fs::read(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(&path, "", format!("cannot read: {e}"))),
        };
        let mut config = Config {
            home,
            limits: Limits::default(),
            harnesses: Vec::new(),
            path: std::ffi::OsString::new(),
            web: None,
        };
        if let Some(text) = text {
            let value: Value = serde_json::from_slice(&text)
                .map_err(|e| error(&path, "", format!("invalid JSON: {e}")))?;
            config.apply(&path, &value)?;
        }
        Ok(config)
    }

    fn apply(&mut self, path: &Path, value: &Value) -> Result<(), ConfigError> {
        let Some(top) = value.as_object() else {
            return Err(error(path, "", "must be a JSON object".into()));
        };
        let mut retention = self.limits.retention;
        for (key, value) in top {
            match key.as_str() {
                "limits" => self.limits = parse_limits(path, value)?,
                "harnesses" => self.harnesses = parse_harnesses(path, value)?,
                "retentionDays" => retention = parse_retention(path, value)?,
                "web" => self.web = Some(parse_web(path, value)?),
                _ => return Err(error(path, key, "unknown field".into())),
            }
        }
        self.limits.retention = retention;
        Ok(())
    }
}

fn error(path: &Path, field: &str, message: String) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        field: field.to_owned(),
        message,
    }
}

/// The port the loopback web view listens on when none is given.
pub const WEB_DEFAULT_PORT: u16 = 7373;

/// `web: { "address": "127.0.0.1", "port": 7373 }` (both optional):
/// loopback addresses only.
fn parse_web(path: &Path, value: &Value) -> Result<std::net::SocketAddr, ConfigError> {
    let Some(obj) = value.as_object() else {
        return Err(error(path, "web", "must be an object".into()));
    };
    let mut ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut port = WEB_DEFAULT_PORT;
    for (key, value) in obj {
        let field = format!("web.{key}");
        match key.as_str() {
            "address" => {
                ip = value
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| error(path, &field, "must be an IP address".into()))?;
                if !ip.is_loopback() {
                    return Err(error(
                        path,
                        &field,
                        "must be a loopback address (127.0.0.0/8 or ::1): the web view is never served beyond this machine".into(),
                    ));
                }
            }
            "port" => {
                port = value
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| {
                        error(path, &field, "must be an integer from 0 to 65535".into())
                    })?;
            }
            _ => return Err(error(path, &field, "unknown field".into())),
        }
    }
    Ok(std::net::SocketAddr::new(ip, port))
}

fn parse_limits(path: &Path, value: &Value) -> Result<Limits, ConfigError> {
    let Some(obj) = value.as_object() else {
        return Err(error(path, "limits", "must be an object".into()));
    };
    let mut limits = Limits::default();
    for (key, value) in obj {
        let field = format!("limits.{key}");
        let int = |min: u64, max: u64| -> Result<u64, ConfigError> {
            match value.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(error(
                    path,
                    &field,
                    format!("must be an integer from {min} to {max}"),
                )),
            }
        };
        const MIB: u64 = 1024 * 1024;
        let ms = |n: u64| Duration::from_millis(n);
        match key.as_str() {
            "maxHeadBytes" => limits.max_head_bytes = int(1024, MIB)? as usize,
            "maxHeaders" => {
                limits.max_headers = int(8, parse::MAX_HEADERS_CEILING as u64)? as usize
            }
            "maxBodyBytes" => limits.max_body_bytes = int(1024, 64 * MIB)? as usize,
            "headTimeoutMs" => limits.head_timeout = ms(int(100, 600_000)?),
            "idleTimeoutMs" => limits.idle_timeout = ms(int(100, 86_400_000)?),
            "maxConnections" => limits.max_connections = int(1, 1_000_000)? as usize,
            "maxQueuedResponseBytes" => {
                limits.max_queued_response_bytes = int(4096, 64 * MIB)? as usize
            }
            "maxBufferedBytes" => limits.max_buffered_bytes = int(MIB, 1 << 40)? as usize,
            "shutdownGraceMs" => limits.shutdown_grace = ms(int(0, 60_000)?),
            "maxLiveSessions" => limits.max_live_sessions = int(1, 100_000)? as usize,
            "ringBytes" => limits.ring_bytes = int(4096, 1024 * MIB)? as usize,
            "inputQueueBytes" => limits.input_queue_bytes = int(1024, 64 * MIB)? as usize,
            "killGraceMs" => limits.kill_grace = ms(int(0, 60_000)?),
            "journalBytesPerSession" => limits.journal_bytes_per_session = int(MIB, 1 << 40)?,
            "journalBytesTotal" => limits.journal_bytes_total = int(MIB, 1 << 44)?,
            "storageWarningBytes" => limits.storage_warning_bytes = int(0, 1 << 50)?,
            _ => return Err(error(path, &field, "unknown field".into())),
        }
    }
    if limits.max_buffered_bytes < limits.max_body_bytes {
        // Else a body of the largest allowed size could never be read.
        return Err(error(
            path,
            "limits.maxBufferedBytes",
            format!("must be at least maxBodyBytes ({})", limits.max_body_bytes),
        ));
    }
    Ok(limits)
}

/// `retentionDays`: a number of days, 0 for ever, at most 100 years.
fn parse_retention(path: &Path, value: &Value) -> Result<Option<Duration>, ConfigError> {
    match value.as_f64() {
        Some(0.0) => Ok(None),
        Some(d) if d > 0.0 && d <= 36_500.0 => Ok(Some(Duration::from_secs_f64(d * 86_400.0))),
        _ => Err(error(
            path,
            "retentionDays",
            "must be a number of days from 0 (keep for ever) to 36500".into(),
        )),
    }
}

pub fn valid_harness_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn parse_harnesses(path: &Path, value: &Value) -> Result<Vec<Harness>, ConfigError> {
    let Some(list) = value.as_array() else {
        return Err(error(path, "harnesses", "must be an array".into()));
    };
    let mut out: Vec<Harness> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = |field: &str| format!("harnesses[{i}]{field}");
        let Some(obj) = entry.as_object() else {
            return Err(error(path, &at(""), "must be an object".into()));
        };
        let string = |field: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(field) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(error(
                    path,
                    &at(&format!(".{field}")),
                    "must be a string".into(),
                )),
            }
        };
        for key in obj.keys() {
            if !["id", "label", "command", "args", "env"].contains(&key.as_str()) {
                return Err(error(path, &at(&format!(".{key}")), "unknown field".into()));
            }
        }
        let id = string("id")?.unwrap_or_default();
        if !valid_harness_id(&id) {
            return Err(error(
                path,
                &at(".id"),
                "required: 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        if out.iter().any(|h| h.id == id) {
            return Err(error(
                path,
                &at(".id"),
                format!("duplicate harness id {id:?}"),
            ));
        }
        let command = string("command")?.unwrap_or_default();
        if command.trim().is_empty() || command.contains('\0') {
            return Err(error(path, &at(".command"), "required, non-blank".into()));
        }
        let args = match obj.get("args") {
            None => vec!["{prompt}".to_owned()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().filter(|s| !s.contains('\0')).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| error(path, &at(".args"), "must be an array of strings".into()))?,
            Some(_) => {
                return Err(error(
                    path,
                    &at(".args"),
                    "must be an array of strings".into(),
                ))
            }
        };
        let env = match obj.get("env") {
            None => Vec::new(),
            Some(Value::Object(vars)) => vars
                .iter()
                .map(|(k, v)| {
                    let ok = !k.is_empty() && !k.contains('=') && !k.contains('\0');
                    match v.as_str() {
                        Some(v) if ok && !v.contains('\0') => Ok((k.clone(), v.to_owned())),
                        _ => Err(error(
                            path,
                            &at(&format!(".env.{k}")),
                            "must be a string (and a valid variable name)".into(),
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(error(path, &at(".env"), "must be an object".into())),
        };
        out.push(Harness {
            label: string("label")?.unwrap_or_else(|| id.clone()),
            id,
            command,
            args,
            env,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        Config::load(dir.path().to_owned()).map_err(|e| {
            let s = e.to_string();
            assert!(s.contains("config.json"), "{s}");
            s
        })
    }

    #[test]
    fn defaults_without_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path().to_owned()).unwrap();
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = load(r#"{"limits":{"maxConnections":5,"idleTimeoutMs":1500}}"#).unwrap();
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(c.limits.max_headers, 64);

        let e = load(r#"{"limits":{"maxConnections":0}}"#).unwrap_err();
        assert!(
            e.contains("limits.maxConnections: must be an integer"),
            "{e}"
        );
        let e = load(r#"{"limits":{"maxConections":3}}"#).unwrap_err();
        assert!(e.contains("limits.maxConections: unknown field"), "{e}");
        let e = load(r#"{"limits":{"maxHeaders":"64"}}"#).unwrap_err();
        assert!(e.contains("limits.maxHeaders"), "{e}");
        let e =
            load(r#"{"limits":{"maxBodyBytes":4194304,"maxBufferedBytes":2097152}}"#).unwrap_err();
        assert!(
            e.contains("limits.maxBufferedBytes: must be at least"),
            "{e}"
        );
        let e = load(r#"{"bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus: unknown field"), "{e}");
        let e = load("{nope").unwrap_err();
        assert!(e.contains("invalid JSON"), "{e}");
        let e = load("[]").unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn harnesses_are_read_and_checked() {
        let c = load(
            r#"{"harnesses":[{"id":"sh","command":"/bin/sh","args":["-c","{prompt}"],"env":{"A":"b"}},
                             {"id":"cat","label":"Cat","command":"cat","args":[]}]}"#,
        )
        .unwrap();
        assert_eq!(c.harnesses.len(), 2);
        assert_eq!(c.harnesses[0].label, "sh");
        assert_eq!(c.harnesses[0].env, [("A".to_owned(), "b".to_owned())]);
        assert_eq!(c.harnesses[1].args, Vec::<String>::new());
        let cases = [
            (r#"{"harnesses":{}}"#, "harnesses: must be an array"),
            (r#"{"harnesses":[1]}"#, "harnesses[0]: must be an object"),
            (
                r#"{"harnesses":[{"command":"x"}]}"#,
                "harnesses[0].id: required",
            ),
            (
                r#"{"harnesses":[{"id":"a b","command":"x"}]}"#,
                "harnesses[0].id",
            ),
            (
                r#"{"harnesses":[{"id":"a"}]}"#,
                "harnesses[0].command: required",
            ),
            (
                r#"{"harnesses":[{"id":"a","command":"x","args":[1]}]}"#,
                "harnesses[0].args",
            ),
            (
                r#"{"harnesses":[{"id":"a","command":"x","env":{"K":1}}]}"#,
                "harnesses[0].env.K",
            ),
            (
                r#"{"harnesses":[{"id":"a","command":"x","nope":1}]}"#,
                "harnesses[0].nope: unknown",
            ),
            (
                r#"{"harnesses":[{"id":"a","command":"x"},{"id":"a","command":"y"}]}"#,
                "harnesses[1].id: duplicate",
            ),
        ];
        for (text, expect) in cases {
            let e = load(text).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
