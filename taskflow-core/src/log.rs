//! The lines a task logs: a [`Level`] and a message, the same whether they
//! go to standard error, the store or a browser.

use std::fmt;
use std::time::SystemTime;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detail for whoever debugs the task.
    Debug,
    /// What the task is doing.
    Info,
    /// Something unexpected that the task survives.
    Warn,
    /// Something that went wrong.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// One line a task logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When it was logged.
    pub at: SystemTime,
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}
