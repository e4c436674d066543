//! The one place where the core's types become the wire's
//! (`taskflow_proto`): runs, log lines, events and task definitions, and
//! the core's errors as [`PlaneError`]s, which the HTTP edge answers by
//! kind. Every match is exhaustive where the core's enums are, so a new
//! status or executor does not compile until it has its wire word.

use std::str::FromStr;

use taskflow_core::client::ClientError;
use taskflow_core::engine::RunEvent;
use taskflow_core::run::{Attempt, AttemptOutcome, Run, RunId, RunStatus};
use taskflow_core::store::{self, StoredLogLine};
use taskflow_core::{ExecutorKind, Level, TaskDef};
use taskflow_proto::{self as proto, Event, FieldIssue, Function, FunctionOptions, TaskRun};

use crate::plane::PlaneError;
use crate::time::rfc3339;

/// A run's status in the wire's words.
pub fn status(status: taskflow_core::run::RunStatus) -> proto::RunStatus {
    use taskflow_core::run::RunStatus as Core;
    match status {
        Core::Pending => proto::RunStatus::Pending,
        Core::Running => proto::RunStatus::Running,
        Core::Completed => proto::RunStatus::Completed,
        Core::Failed => proto::RunStatus::Failed,
        Core::Cancelled => proto::RunStatus::Cancelled,
    }
}

/// The core's status for the wire's.
pub fn core_status(status: proto::RunStatus) -> taskflow_core::run::RunStatus {
    use taskflow_core::run::RunStatus as Core;
    match status {
        proto::RunStatus::Pending => Core::Pending,
        proto::RunStatus::Running => Core::Running,
        proto::RunStatus::Completed => Core::Completed,
        proto::RunStatus::Failed => Core::Failed,
        proto::RunStatus::Cancelled => Core::Cancelled,
    }
}

/// An executor kind in the wire's words.
pub fn executor(kind: ExecutorKind) -> proto::ExecutorKind {
    match kind {
        ExecutorKind::Thread => proto::ExecutorKind::Thread,
        ExecutorKind::Process => proto::ExecutorKind::Process,
        ExecutorKind::Docker => proto::ExecutorKind::Docker,
    }
}

/// A log level in the wire's words.
pub fn level(level: Level) -> proto::Level {
    match level {
        Level::Debug => proto::Level::Debug,
        Level::Info => proto::Level::Info,
        Level::Warn => proto::Level::Warn,
        Level::Error => proto::Level::Error,
    }
}

/// An event in wire form; `None` for a kind of event the wire has no word
/// for yet (`RunEvent` may grow).
pub(crate) fn wire_event(event: RunEvent) -> Option<Event> {
    Some(match event {
        RunEvent::Status(run) => Event::Status { task: Box::new(wire_run(*run)) },
        RunEvent::Log(line) => Event::Log { line: wire_line(line) },
        RunEvent::Progress { run_id, progress } => {
            Event::Progress { task_id: run_id.to_string(), done: progress.done, total: progress.total }
        }
        RunEvent::Deleted(id) => Event::Deleted { task_id: id.to_string() },
        _ => return None,
    })
}

/// A run as the wire shows it.
pub fn wire_run(run: Run) -> TaskRun {
    let mut attempts: Vec<proto::RunAttempt> = run.attempts.iter().map(wire_attempt).collect();
    if run.status == RunStatus::Running {
        attempts.push(proto::RunAttempt {
            number: run.attempt,
            outcome: proto::AttemptOutcome::Running,
            worker_id: run.worker_id.clone(),
            executor: executor(run.executor),
            started_at: run.started_at.map(|t| rfc3339(t.millis())),
            finished_at: None,
            error: None,
        });
    }
    TaskRun {
        attempts,
        task_id: run.id.to_string(),
        task_title: run.task_title,
        status: status(run.status),
        payload: run.payload,
        result: run.result,
        error: run.error.map(|e| proto::RunFailure { kind: e.kind, message: e.message }),
        attempt: run.attempt,
        max_attempts: run.max_attempts,
        executor: executor(run.executor),
        priority: run.priority,
        created_at: rfc3339(run.created_at.millis()),
        started_at: run.started_at.map(|t| rfc3339(t.millis())),
        finished_at: run.finished_at.map(|t| rfc3339(t.millis())),
        idempotency_key: run.idempotency_key,
        worker_id: run.worker_id,
    }
}

fn wire_attempt(attempt: &Attempt) -> proto::RunAttempt {
    proto::RunAttempt {
        number: attempt.number,
        outcome: match attempt.outcome {
            AttemptOutcome::Completed => proto::AttemptOutcome::Completed,
            AttemptOutcome::Failed => proto::AttemptOutcome::Failed,
            AttemptOutcome::Cancelled => proto::AttemptOutcome::Cancelled,
        },
        worker_id: attempt.worker_id.clone(),
        executor: executor(attempt.executor),
        started_at: attempt.started_at.map(|t| rfc3339(t.millis())),
        finished_at: Some(rfc3339(attempt.finished_at.millis())),
        error: attempt.error.clone().map(|e| proto::RunFailure { kind: e.kind, message: e.message }),
    }
}

pub(crate) fn wire_line(line: StoredLogLine) -> proto::LogLine {
    proto::LogLine {
        task_id: line.run_id.to_string(),
        seq: line.seq,
        at: rfc3339(line.at.millis()),
        level: level(line.level),
        message: line.message,
    }
}

/// A task definition as the wire shows it.
pub fn wire_function(def: &TaskDef) -> Function {
    let options = def.options();
    Function {
        title: def.title().to_owned(),
        description: def.description().to_owned(),
        signature: def.signature().to_owned(),
        tags: options.tags.iter().map(|t| (*t).to_owned()).collect(),
        is_async: def.is_async(),
        options: FunctionOptions {
            timeout_ms: options.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            retries: options.retries,
            retry_delay_ms: u64::try_from(options.retry_delay.as_millis()).unwrap_or(u64::MAX),
            concurrency: options.concurrency,
            executor: executor(options.executor),
        },
        args_schema: def.args_schema().clone(),
        output_schema: def.output_schema().clone(),
    }
}

pub(crate) fn parse_id(task_id: &str) -> Result<RunId, PlaneError> {
    RunId::from_str(task_id).map_err(|_| PlaneError::NotFound(task_id.to_owned()))
}

pub(crate) fn plane_error(error: ClientError) -> PlaneError {
    match error {
        ClientError::UnknownTask(title) => PlaneError::UnknownTask(title),
        ClientError::Payload(payload) => PlaneError::Invalid {
            message: payload.to_string(),
            issues: payload.issues.into_iter().map(|i| FieldIssue { path: i.path, message: i.message }).collect(),
        },
        error @ ClientError::ExecutorUnavailable(_) => {
            let message = error.to_string();
            PlaneError::Invalid {
                issues: vec![FieldIssue { path: "executor".to_owned(), message: message.clone() }],
                message,
            }
        }
        ClientError::Encode { argument, message } => PlaneError::Invalid {
            message: format!("argument `{argument}`: {message}"),
            issues: vec![FieldIssue { path: format!("payload.{argument}"), message }],
        },
        ClientError::Store(error) => store_error(error),
        other => PlaneError::Internal(other.to_string()),
    }
}

fn store_error(error: store::Error) -> PlaneError {
    match error {
        store::Error::NotFound(id) => PlaneError::NotFound(id.to_string()),
        error @ (store::Error::IllegalTransition { .. }
        | store::Error::Active(_)
        | store::Error::IdempotencyConflict { .. }
        | store::Error::StaleAttempt { .. }) => PlaneError::Conflict(error.to_string()),
        store::Error::Database(error) => database_error(&error),
        store::Error::Closed => PlaneError::Unavailable("the server is shutting down".to_owned()),
        other => PlaneError::Internal(other.to_string()),
    }
}

/// A database's failure by its kind: worth retrying (503, the database's
/// words in the server's log only), out of room (507), a damaged run's
/// record (500 naming the run: retrying reads the same bytes), or a fault
/// of the server (500).
fn database_error(error: &store::DatabaseError) -> PlaneError {
    match error.kind() {
        kind if kind.is_transient() => {
            tracing::warn!(%error, "taskflow control plane: the store failed");
            PlaneError::Unavailable("the store is not available right now; try again shortly".to_owned())
        }
        store::DatabaseErrorKind::Full => {
            tracing::error!(%error, "taskflow control plane: the store is full");
            PlaneError::StoreFull(
                "the store is full (its disk, or its size limit): nothing was stored; free space and retry".to_owned(),
            )
        }
        store::DatabaseErrorKind::Corrupt => {
            tracing::error!(%error, "taskflow control plane: stored data is damaged");
            let what = match error.run() {
                Some(run) => format!("the stored record of run {run} is damaged"),
                None => "stored data is damaged".to_owned(),
            };
            PlaneError::Corrupt(format!(
                "{what} and cannot be read; retrying will not help: restore the database from a backup, \
                 or delete the run"
            ))
        }
        _ => PlaneError::Internal(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_report_is_a_conflict_at_the_edge() {
        // The edge answers a conflict with 409 (`taskflow_web::error`).
        let stale = store::Error::StaleAttempt { id: RunId::new(), attempt: 1, worker_id: "w".into() };
        assert!(matches!(store_error(stale), PlaneError::Conflict(message) if message.contains("attempt 1")));
    }

    #[test]
    fn a_database_failure_answers_by_its_kind() {
        use store::{DatabaseError, DatabaseErrorKind as Kind};
        let failure =
            |kind| store::Error::from(DatabaseError::new(kind, "cannot begin a transaction: database is locked"));
        for kind in [Kind::Unavailable, Kind::Busy, Kind::Deadlock] {
            // The database's words stay in the log.
            assert!(
                matches!(store_error(failure(kind)), PlaneError::Unavailable(m) if !m.contains("locked")),
                "{kind:?}"
            );
        }
        assert!(matches!(store_error(failure(Kind::Full)), PlaneError::StoreFull(_)));
        assert!(matches!(store_error(failure(Kind::Other)), PlaneError::Internal(_)));
        assert!(matches!(store_error(failure(Kind::Conflict)), PlaneError::Internal(_)));
        let id = RunId::new();
        let corrupt =
            store::Error::from(DatabaseError::new(Kind::Corrupt, "the stored payload is invalid").for_run(id));
        assert!(
            matches!(store_error(corrupt), PlaneError::Corrupt(m) if m.contains(&id.to_string()) && m.contains("retrying will not help"))
        );
    }
}
