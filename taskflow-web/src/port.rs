//! The port this crate serves: [`ControlPlane`], and the wire types it
//! speaks. `taskflow` implements it over its engine and store; this crate
//! never sees those, which keeps the crate graph acyclic and lets the web
//! layer be served over any implementation.
//!
//! The wire keeps the seeds' words: a run is a "task" with a `task_id`, a
//! task definition is a "function".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// What the control plane can do with tasks and runs.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// Every task this server can run, in a stable order.
    fn functions(&self) -> Vec<Function>;

    /// One task by title.
    fn function(&self, title: &str) -> Option<Function> {
        self.functions().into_iter().find(|f| f.title == title)
    }

    /// Validates the payload and stores a run (or finds the one it
    /// de-duplicates onto).
    async fn submit(&self, request: SubmitRequest) -> Result<TaskRun, PortError>;

    /// One run.
    async fn get(&self, task_id: &str) -> Result<TaskRun, PortError>;

    /// Runs, newest first.
    async fn list(&self, query: ListQuery) -> Result<TaskPage, PortError>;

    /// Cancels a pending or running run.
    async fn cancel(&self, task_id: &str) -> Result<TaskRun, PortError>;

    /// Deletes a run and its log; an active one only with `force`.
    async fn delete(&self, task_id: &str, force: bool) -> Result<(), PortError>;

    /// A run's log lines after sequence number `after`, at most `limit`.
    async fn logs(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<LogLine>, PortError>;

    /// Waits at most `timeout` for the run to be final; returns it as it is
    /// then, final or not.
    async fn wait(&self, task_id: &str, timeout: Duration) -> Result<TaskRun, PortError>;

    /// Every status change, log line and progress report from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// How the store and the executors are.
    async fn health(&self) -> Health;
}

/// Why the control plane refused or failed; the HTTP edge turns each into
/// its status code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// No task has this title (404).
    #[error("unknown task `{0}`")]
    UnknownTask(String),
    /// No run has this id (404).
    #[error("no task with id `{0}`")]
    NotFound(String),
    /// The request does not fit: a payload against the task's schema, an
    /// executor this server lacks (422).
    #[error("{message}")]
    Invalid {
        /// The whole problem in one sentence.
        message: String,
        /// Each problem at its path (`payload.b`).
        issues: Vec<FieldIssue>,
    },
    /// The change is not allowed now: an illegal status transition, an
    /// active run deleted without force, a reused idempotency key (409).
    #[error("{0}")]
    Conflict(String),
    /// The store or an executor is not reachable now; try again (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store has no room left (its disk or size limit is full) (507).
    #[error("{0}")]
    StoreFull(String),
    /// Stored data the server cannot read back, a run's record damaged
    /// (500, with this message: it names the run, and retrying cannot help).
    #[error("{0}")]
    Corrupt(String),
    /// A fault of the server (500; the detail is logged, not sent).
    #[error("{0}")]
    Internal(String),
}

/// One problem of a request, at its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldIssue {
    /// Where: `payload.b`, `payload.items[0].sku`, `executor`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A task definition: what it takes and gives, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Function {
    /// The unique name.
    pub title: String,
    /// The doc comment's first paragraph, or the `description` option.
    pub description: String,
    /// The Rust signature, for people.
    pub signature: String,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// Whether the function is `async`.
    pub is_async: bool,
    /// The task's options.
    pub options: FunctionOptions,
    /// JSON Schema (draft 2020-12) of the payload.
    #[schema(value_type = Object)]
    pub args_schema: Value,
    /// JSON Schema (draft 2020-12) of the result.
    #[schema(value_type = Object)]
    pub output_schema: Value,
}

/// A task's options, as `#[task(...)]` set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionOptions {
    /// How long one attempt may run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// How many times a failed run is retried.
    pub retries: u32,
    /// The base of the retry back-off, in milliseconds.
    pub retry_delay_ms: u64,
    /// At most this many runs at once, across workers.
    pub concurrency: Option<u32>,
    /// Where runs execute unless a submit says otherwise.
    pub executor: String,
}

/// A submit, as `POST /api/v1/tasks` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The task to run.
    pub task_title: String,
    /// The arguments, an object checked against the task's schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `thread`, `process` or `docker`; the task's default when absent.
    #[serde(default)]
    #[schema(value_type = Option<ExecutorName>)]
    pub executor: Option<String>,
    /// Higher runs first (default 0).
    #[serde(default, deserialize_with = "integral::i32")]
    pub priority: i32,
    /// Return the pending or running run with the same title and payload
    /// instead of making another (default true).
    #[serde(default = "yes")]
    pub unique: bool,
    /// The same key returns the same run, so a retried request is safe.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Start no earlier than this many seconds from now (at most ten
    /// years).
    #[serde(default, deserialize_with = "integral::delay")]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub delay_seconds: Option<u64>,
}

/// Integers that JSON may write as `5.0` (JSON Schema counts those as
/// integers; serde alone would refuse them).
mod integral {
    use serde::{Deserialize, Deserializer, de::Error};

    /// The longest delay a submit may ask for: ten years.
    pub(super) const MAX_DELAY_SECONDS: u64 = 315_360_000;

    fn exact<E: Error>(n: serde_json::Number) -> Result<i128, E> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            // Floats are exact integers only up to 2^53.
            .or_else(|| {
                n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).map(|f| f as i128)
            })
            .ok_or_else(|| E::custom(format!("expected an integer, found {n}")))
    }

    fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i128>, D::Error> {
        Option::<serde_json::Number>::deserialize(deserializer)?.map(exact).transpose()
    }

    pub(super) fn i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
        let n = exact(serde_json::Number::deserialize(deserializer)?)?;
        i32::try_from(n)
            .map_err(|_| D::Error::custom(format!("expected an integer from {} to {}, found {n}", i32::MIN, i32::MAX)))
    }

    pub(super) fn delay<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        integer(deserializer)?
            .map(|n| {
                u64::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_DELAY_SECONDS)
                    .ok_or_else(|| D::Error::custom(format!("expected 0 to {MAX_DELAY_SECONDS} seconds, found {n}")))
            })
            .transpose()
    }
}

/// The executors a run can ask for (documentation of the wire's strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorName {
    /// A thread of the server's process.
    Thread,
    /// A child process of the app binary.
    Process,
    /// A container of the task's worker image.
    Docker,
}

/// A run's status, as filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl StatusName {
    /// The wire's word.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusName::Pending => "pending",
            StatusName::Running => "running",
            StatusName::Completed => "completed",
            StatusName::Failed => "failed",
            StatusName::Cancelled => "cancelled",
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

impl SubmitRequest {
    /// A submit of `task_title` with `payload` and the defaults otherwise.
    pub fn new(task_title: impl Into<String>, payload: Value) -> SubmitRequest {
        SubmitRequest {
            task_title: task_title.into(),
            payload,
            executor: None,
            priority: 0,
            unique: true,
            idempotency_key: None,
            delay_seconds: None,
        }
    }
}

/// A run on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskRun {
    /// The run's id (a UUIDv7).
    pub task_id: String,
    /// The task it runs.
    pub task_title: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = StatusName)]
    pub status: String,
    /// The arguments, as validated (defaults applied).
    #[schema(value_type = Object)]
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
    pub executor: String,
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
}

impl TaskRun {
    /// Whether the run has reached its one final state.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunFailure {
    /// A stable word: `failed`, `panicked`, `timeout`, `lease_expired`, …
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Which runs `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only runs in this status.
    pub status: Option<String>,
    /// Only runs of this task.
    pub task_title: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Skipping this many.
    pub offset: u32,
}

/// A page of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    /// The runs, newest first.
    pub items: Vec<TaskRun>,
    /// How many runs match in all.
    pub total: u64,
    /// The page size asked for.
    pub limit: u32,
    /// How many were skipped.
    pub offset: u32,
}

/// One stored log line of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// The run.
    pub task_id: String,
    /// Its place in the run's log, from 1.
    pub seq: u64,
    /// When it was logged (RFC 3339, UTC).
    pub at: String,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text.
    pub message: String,
}

/// Something that happened to a run, as the WebSockets stream it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// The run changed status (or was created).
    Status {
        /// The run as it is now.
        task: Box<TaskRun>,
    },
    /// The run logged a line.
    Log {
        /// The line, as stored.
        line: LogLine,
    },
    /// The run reported progress.
    Progress {
        /// The run.
        task_id: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// The run was deleted.
    Deleted {
        /// The run.
        task_id: String,
    },
    /// Events were lost (a slow consumer fell behind): re-read what you
    /// follow.
    Resync,
}

impl Event {
    /// The run this event is about.
    pub fn task_id(&self) -> &str {
        match self {
            Event::Status { task } => &task.task_id,
            Event::Log { line } => &line.task_id,
            Event::Progress { task_id, .. } | Event::Deleted { task_id } => task_id,
            Event::Resync => "",
        }
    }
}

/// How the server is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the store answers, else `unavailable`.
    pub status: String,
    /// The store.
    pub store: Component,
    /// Each executor by name: `thread`, `process`, `docker`.
    pub executors: Vec<ExecutorHealth>,
}

/// A part of the server and whether it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    /// Whether it works now.
    pub available: bool,
    /// What it is, or why it does not work.
    pub detail: String,
}

/// An executor and whether runs can use it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorHealth {
    /// `thread`, `process` or `docker`.
    pub name: String,
    /// Whether runs can use it now.
    pub available: bool,
    /// What it is, or why it does not work.
    pub detail: String,
}
