//! A run on the wire: [`TaskRun`] with its [`RunStatus`] and
//! [`ExecutorKind`], pages of runs, and its log lines with their [`Level`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A word of the wire that names no variant: an unknown status, executor
/// or level. Says which words are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    what: &'static str,
    word: String,
    known: &'static [&'static str],
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`; expected one of: {}", self.what, self.word, self.known.join(", "))
    }
}

impl std::error::Error for UnknownWord {}

/// An enum of lowercase words: `as_str`, `Display`, `FromStr` and `ALL`.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in the wire's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire's word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(word: &str) -> Result<Self, UnknownWord> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { what: $what, word: word.to_owned(), known: &[$($word),+] }),
                }
            }
        }
    };
}

words! {
    /// A run's status.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = StatusName))]
    RunStatus ("status") {
        /// Waiting to be claimed.
        Pending => "pending",
        /// Claimed by a worker.
        Running => "running",
        /// Finished with a result.
        Completed => "completed",
        /// Finished with an error.
        Failed => "failed",
        /// Cancelled before it finished.
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// Whether the status is final: a run in it never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
}

words! {
    /// Where a run executes.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ExecutorName))]
    ExecutorKind ("executor") {
        /// A thread of the server's process.
        Thread => "thread",
        /// A child process of the app binary.
        Process => "process",
        /// A container of the task's worker image.
        Docker => "docker",
    }
}

words! {
    /// How important a log line is.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    Level ("level") {
        /// Detail for whoever debugs the task.
        Debug => "debug",
        /// What the task is doing.
        Info => "info",
        /// Something unexpected that the task survives.
        Warn => "warn",
        /// Something that went wrong.
        Error => "error",
    }
}

words! {
    /// Where an attempt of a run is, or how it ended.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    AttemptOutcome ("attempt outcome") {
        /// It executes now.
        Running => "running",
        /// It produced the run's result.
        Completed => "completed",
        /// It failed: an error, a panic, a timeout, or its lease lost.
        Failed => "failed",
        /// The run was cancelled while it executed.
        Cancelled => "cancelled",
    }
}

/// One attempt of a run on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunAttempt {
    /// Its number, from 1.
    pub number: u32,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub outcome: AttemptOutcome,
    /// The worker that executes or executed it.
    pub worker_id: Option<String>,
    /// Where it executed.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub executor: ExecutorKind,
    /// When it was claimed (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed, for a failed one.
    pub error: Option<RunFailure>,
}

/// A run on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRun {
    /// The run's id (a UUIDv7).
    pub task_id: String,
    /// The task it runs.
    pub task_title: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub status: RunStatus,
    /// The arguments, as validated (defaults applied).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    /// The result, once completed: any JSON value.
    pub result: Option<Value>,
    /// Why the last attempt failed.
    pub error: Option<RunFailure>,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// How many attempts it may make.
    pub max_attempts: u32,
    /// Where it executes.
    // A string in the OpenAPI document: its `ExecutorName` lists only the
    // executors this server has now, and a stored run may name another.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub executor: ExecutorKind,
    /// Higher runs first.
    pub priority: i32,
    /// When it was submitted (RFC 3339, UTC).
    pub created_at: String,
    /// When its current or last attempt started.
    pub started_at: Option<String>,
    /// When it reached its final state.
    pub finished_at: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The worker running it.
    pub worker_id: Option<String>,
    /// Every attempt so far, oldest first, the one executing now included.
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// How far the current (or last) attempt has come, as last stored (a
    /// running attempt's within about a second); none until it reports any.
    #[serde(default)]
    pub progress: Option<RunProgress>,
}

/// A run's progress: `done` of `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunProgress {
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
}

impl TaskRun {
    /// Whether the run has reached its one final state.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// The run as lists show it.
    pub fn summary(self) -> RunSummary {
        RunSummary {
            task_id: self.task_id,
            task_title: self.task_title,
            status: self.status,
            error: self.error,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            executor: self.executor,
            priority: self.priority,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            idempotency_key: self.idempotency_key,
            worker_id: self.worker_id,
            progress: self.progress,
        }
    }
}

/// A run as a list shows it: a [`TaskRun`] without its payload, result and
/// attempts, so that a page stays small whatever its runs carry (a list of
/// five runs of 3 MB payloads was 16 MB). `GET /api/v1/tasks/{task_id}`
/// has the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    /// The run's id (a UUIDv7).
    pub task_id: String,
    /// The task it runs.
    pub task_title: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub status: RunStatus,
    /// Why the last attempt failed.
    pub error: Option<RunFailure>,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// How many attempts it may make.
    pub max_attempts: u32,
    /// Where it executes.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub executor: ExecutorKind,
    /// Higher runs first.
    pub priority: i32,
    /// When it was submitted (RFC 3339, UTC).
    pub created_at: String,
    /// When its current or last attempt started.
    pub started_at: Option<String>,
    /// When it reached its final state.
    pub finished_at: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The worker running it.
    pub worker_id: Option<String>,
    /// How far the current (or last) attempt has come, as last stored.
    #[serde(default)]
    pub progress: Option<RunProgress>,
}

impl RunSummary {
    /// Whether the run has reached its one final state.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunFailure {
    /// A stable word: `failed`, `panicked`, `timeout`, `lease_expired`, …
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// A page of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPage {
    /// The runs, newest first, as summaries (without payload, result and
    /// attempts: `GET /api/v1/tasks/{task_id}` has them).
    pub items: Vec<RunSummary>,
    /// How many runs match in all.
    pub total: u64,
    /// The page size asked for.
    pub limit: u32,
    /// How many were skipped.
    pub offset: u32,
}

/// One stored log line of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// The run.
    pub task_id: String,
    /// Its place in the run's log, from 1.
    pub seq: u64,
    /// When it was logged (RFC 3339, UTC).
    pub at: String,
    /// `debug`, `info`, `warn` or `error`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub level: Level,
    /// The text.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_json_and_text() {
        for status in RunStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
            assert_eq!(serde_json::from_value::<RunStatus>(json).unwrap(), *status);
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), *status);
        }
        for kind in ExecutorKind::ALL {
            assert_eq!(kind.to_string().parse::<ExecutorKind>().unwrap(), *kind);
        }
        assert_eq!(serde_json::to_value(Level::Warn).unwrap(), "warn");
    }

    #[test]
    fn an_unknown_word_names_the_known_ones() {
        let error = "paused".parse::<RunStatus>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown status `paused`; expected one of: pending, running, completed, failed, cancelled"
        );
        assert!(serde_json::from_str::<ExecutorKind>("\"wasm\"").is_err());
    }

    #[test]
    fn only_completed_failed_and_cancelled_are_final() {
        let finals: Vec<_> = RunStatus::ALL.iter().filter(|s| s.is_final()).map(|s| s.as_str()).collect();
        assert_eq!(finals, ["completed", "failed", "cancelled"]);
    }
}
