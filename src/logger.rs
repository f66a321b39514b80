//! A `log` backend writing one line per record to stderr.
//!
//! Written by hand: the daemon logs a handful of lines (start, stop,
//! problems), and the usual backends bring regex and terminal-detection
//! dependencies for features it doesn't use.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // Logging must never take the daemon down; a closed stderr is ignored.
        let _ = writeln!(std::io::stderr().lock(), "{now} {level} {}", record.args());
    }

    fn flush(&self) {}
}

/// Parses a `COVEN_LOG` value.
pub fn parse_level(value: Option<&str>) -> Result<LevelFilter, String> {
    match value.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("info") => Ok(LevelFilter::Info),
        Some("error") => Ok(LevelFilter::Error),
        Some("warn") => Ok(LevelFilter::Warn),
        Some("debug") => Ok(LevelFilter::Debug),
        Some("trace") => Ok(LevelFilter::Trace),
        Some("off") => Ok(LevelFilter::Off),
        Some(other) => Err(format!(
            "COVEN_LOG={other}: expected error, warn, info or debug"
        )),
    }
}

/// Installs the logger (once per process; later calls only set the level).
pub fn init(level: LevelFilter) {
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
