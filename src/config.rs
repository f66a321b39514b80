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
//!               "maxQueuedResponseBytes": 262144, "shutdownGraceMs": 2000 } }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::conn::ConnLimits;
use crate::http::parse;

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
    /// How long in-flight responses may take to finish at shutdown.
    pub shutdown_grace: Duration,
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
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl Limits {
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
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `COVEN_HOME`.
    pub home: PathBuf,
    pub limits: Limits,
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
        self.home.join("coven.sock")
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
        for (key, value) in top {
            match key.as_str() {
                "limits" => self.limits = parse_limits(path, value)?,
                _ => return Err(error(path, key, "unknown field".into())),
            }
        }
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
            "shutdownGraceMs" => limits.shutdown_grace = ms(int(0, 60_000)?),
            _ => return Err(error(path, &field, "unknown field".into())),
        }
    }
    Ok(limits)
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
        let e = load(r#"{"bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus: unknown field"), "{e}");
        let e = load("{nope").unwrap_err();
        assert!(e.contains("invalid JSON"), "{e}");
        let e = load("[]").unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
    }
}
