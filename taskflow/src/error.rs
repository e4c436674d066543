//! The errors of TaskFlow: why a run failed ([`TaskError`]), what is wrong
//! with a payload ([`PayloadError`]), and everything an [`App`](crate::App)
//! can stop on ([`Error`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registry::RegistryError;

/// `Result` with TaskFlow's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No task with this title is linked into the binary.
    #[error("unknown task `{title}`; `list` shows the tasks of this binary")]
    UnknownTask {
        /// The title asked for.
        title: String,
    },
    /// The payload does not match the task's arguments.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The task returned `Err`; the message is its `Display` text.
    #[error("{message}")]
    Failed {
        /// The error's text.
        message: String,
    },
    /// The task panicked.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// The task's return value could not be turned into JSON.
    #[error("the task's result could not be serialized: {message}")]
    Output {
        /// The serializer's message.
        message: String,
    },
    /// The run took longer than its timeout.
    #[error("timed out after {}", format_duration(*.after))]
    TimedOut {
        /// The timeout that passed.
        after: Duration,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The executor could not run the task, or the worker ended without a
    /// result (a crash, a memory limit, Docker unreachable, …). The
    /// variant's own [`kind`](crate::executor::Error::kind) is this error's
    /// kind.
    #[error(transparent)]
    Executor(#[from] crate::executor::Error),
}

impl TaskError {
    /// A stable, machine-readable name of the variant, used on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::UnknownTask { .. } => "unknown_task",
            TaskError::Payload(_) => "payload",
            TaskError::Failed { .. } => "failed",
            TaskError::Panicked { .. } => "panicked",
            TaskError::Output { .. } => "output",
            TaskError::TimedOut { .. } => "timeout",
            TaskError::Cancelled => "cancelled",
            TaskError::Executor(error) => error.kind(),
        }
    }
}

/// One thing wrong with a payload, at a path such as `payload.items[2].name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadIssue {
    /// Where in the payload: `payload`, `payload.b`, `payload.items[0]`.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for PayloadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a payload, each issue naming its path, e.g.
/// `payload.b: expected integer, found string "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PayloadError {
    /// The issues, in payload order; never empty.
    pub issues: Vec<PayloadIssue>,
}

impl PayloadError {
    /// A payload error with a single issue.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> PayloadError {
        PayloadError { issues: vec![PayloadIssue { path: path.into(), message: message.into() }] }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// What an [`App`](crate::App) command can fail with.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tasks linked into the binary are inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A run failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The command line was wrong.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A client call failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// Reading or writing failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Shows the message and its causes, so `main` returning `Err` prints a
/// sentence rather than a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// `90s` → `1m30s`, `500ms` → `500ms`: durations as the options write them.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms % 1000 != 0 {
        return format!("{}ms", ms);
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_options() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(TaskError::TimedOut { after: Duration::from_secs(60) }.to_string(), "timed out after 1m");
    }

    #[test]
    fn payload_errors_join_their_issues() {
        let error = PayloadError {
            issues: vec![
                PayloadIssue { path: "payload.a".into(), message: "required field is missing".into() },
                PayloadIssue { path: "payload.b".into(), message: "expected integer, found string \"x\"".into() },
            ],
        };
        assert_eq!(
            error.to_string(),
            "payload.a: required field is missing; payload.b: expected integer, found string \"x\""
        );
    }
}
