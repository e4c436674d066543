//! The wire of TaskFlow: what the control plane's REST API and WebSockets
//! send and take as JSON, and the messages a remote worker exchanges with
//! the server. Types only — no I/O, no TaskFlow crate, no HTTP framework —
//! so a client, a worker or another front end can speak the wire without
//! the server's dependencies.
//!
//! The wire keeps the seeds' words: a run is a "task" with a `task_id`, a
//! task definition is a "function". Statuses, executors and log levels are
//! enums that serialize as the lowercase words (`"pending"`, `"docker"`,
//! `"warn"`); times are RFC 3339 strings in UTC.
//!
//! With the `openapi` feature every type implements `utoipa::ToSchema`.

mod error;
mod event;
mod function;
mod health;
pub mod polling;
mod registration;
mod run;
mod submit;
pub mod worker;

pub use error::FieldIssue;
pub use event::Event;
pub use function::{Function, FunctionOptions};
pub use health::{Component, ExecutorHealth, Health};
pub use registration::{QueueName, RefusedTask, RegisterRequest, Registered, TaskDigest, WorkerInfo, WorkerState};
pub use run::{
    AttemptOutcome, ExecutorKind, Level, LogLine, RunAttempt, RunFailure, RunProgress, RunStatus, RunSummary, TaskPage,
    TaskRun, UnknownWord,
};
pub use submit::{MAX_DELAY_SECONDS, SubmitRequest};
