//! The core's errors as [`PlaneError`]s, which the HTTP edge answers by
//! kind. The core's values become the wire's in `taskflow_core::wire`
//! (re-exported here), which the command line shares.

use std::str::FromStr;

use taskflow_core::client::ClientError;
use taskflow_core::run::RunId;
use taskflow_core::store;
pub use taskflow_core::wire::{core_status, executor, level, status, wire_event, wire_function, wire_line, wire_run};
use taskflow_proto::FieldIssue;

use crate::plane::PlaneError;

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

pub(crate) fn store_error(error: store::Error) -> PlaneError {
    match error {
        store::Error::NotFound(id) => PlaneError::NotFound(id.to_string()),
        error @ (store::Error::IllegalTransition { .. }
        | store::Error::Active(_)
        | store::Error::IdempotencyConflict { .. }
        | store::Error::StaleAttempt { .. }) => PlaneError::Conflict(error.to_string()),
        store::Error::Database(error) => database_error(&error),
        store::Error::Closed => PlaneError::Unavailable("the server is shutting down".to_owned()),
        store::Error::Provision(refusal) => PlaneError::Unauthorized(refusal.to_string()),
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
