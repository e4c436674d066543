//! What a store operation can fail with. A database's failure is a
//! [`DatabaseError`] of a [`DatabaseErrorKind`], classified once, by each
//! backend, from what the driver reports (SQLite's extended result code,
//! PostgreSQL's SQLSTATE), in the manner of `sqlx-core`'s error: the kind
//! decides whether the engine tries again and what the HTTP edge answers,
//! and the driver's error stays attached as the `source`.

use std::fmt;
use std::sync::Arc;

use super::workers::ProvisionRefusal;
use crate::run::{IllegalTransition, RunId};

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a store operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No run has this id.
    #[error("no run with id {0}")]
    NotFound(RunId),
    /// The change is not allowed in the run's current status.
    #[error("run {id}: {source}")]
    IllegalTransition {
        /// The run.
        id: RunId,
        /// What the state machine said.
        #[source]
        source: IllegalTransition,
    },
    /// A report came from an attempt or worker that no longer holds the run
    /// (it was re-queued, cancelled or finished meanwhile); nothing changed.
    #[error("run {id}: attempt {attempt} of worker `{worker_id}` no longer holds this run; the report was ignored")]
    StaleAttempt {
        /// The run.
        id: RunId,
        /// The attempt that reported.
        attempt: u32,
        /// The worker that reported.
        worker_id: String,
    },
    /// The run is active and deleting it was not forced.
    #[error("run {0} is still active; cancel it first, or delete with force")]
    Active(RunId),
    /// The idempotency key was used before for a different submit.
    #[error("idempotency key `{key}` was already used for a different submit (run {existing})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The run it belongs to.
        existing: RunId,
    },
    /// No worker has this id.
    #[error("no worker with id `{0}`")]
    UnknownWorker(String),
    /// A worker's provision token was refused; nothing changed.
    #[error("{0}")]
    Provision(#[from] ProvisionRefusal),
    /// The database failed; [`DatabaseError::kind`] says how.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
    /// The store's writer stopped (the process is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// Whether the same operation may succeed if tried again shortly: the
    /// database was unreachable, busy, or chose this transaction as a
    /// deadlock's victim. A full disk, a corrupt row, a refused constraint
    /// or a closed store stay so until someone acts.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Database(error) if error.kind().is_transient())
    }

    /// The same failure, said to have happened while doing `outer`
    /// ("cannot open the database …"); the store's own refusals stay as
    /// they are.
    pub(crate) fn within(self, outer: impl fmt::Display) -> Error {
        match self {
            Error::Database(mut error) => {
                error.context = format!("{outer}: {}", error.context);
                Error::Database(error)
            }
            other => other,
        }
    }

    /// A database failure of no database code, while doing `context`: a
    /// bug, a schema this build cannot use. Both backends' one spelling.
    pub(crate) fn other(context: impl Into<String>) -> Error {
        Error::Database(DatabaseError::new(DatabaseErrorKind::Other, context))
    }

    /// The kind of a database failure, or `None` for the store's own refusals.
    pub fn database_kind(&self) -> Option<DatabaseErrorKind> {
        match self {
            Error::Database(error) => Some(error.kind()),
            _ => None,
        }
    }
}

/// How a database failed: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// The database cannot be reached or opened now: the connection was
    /// refused or lost, the server is starting or stopping, an I/O error.
    /// Transient.
    Unavailable,
    /// Another connection holds the lock the operation needs (SQLite
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`, PostgreSQL `55P03`). Transient.
    Busy,
    /// The database aborted the transaction to break a deadlock or a
    /// serialization conflict (PostgreSQL `40P01`/`40001`). Transient:
    /// the whole transaction may be tried again.
    Deadlock,
    /// No room for the write: the disk, or a configured size limit
    /// (SQLite `SQLITE_FULL`, PostgreSQL `53100`). Nothing was stored;
    /// space must be freed first.
    Full,
    /// Stored data cannot be read back: a damaged file or page, or a row
    /// that does not make a valid run. Trying again reads the same bytes.
    Corrupt,
    /// A constraint of the schema refused the write (unique, foreign key,
    /// check): a fault of the store's code, not of the caller.
    Conflict,
    /// Anything else: a misconfiguration, a bug.
    Other,
}

impl DatabaseErrorKind {
    /// Whether trying the same operation again shortly may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, DatabaseErrorKind::Unavailable | DatabaseErrorKind::Busy | DatabaseErrorKind::Deadlock)
    }
}

/// A database's failure: its kind, what the store was doing, the run it
/// concerns when there is one, and the driver's error (its `source`, and
/// the end of its message).
///
/// Cloning is cheap (the source is shared), so a failure of one group
/// commit can answer every write of the batch.
#[derive(Clone)]
pub struct DatabaseError {
    kind: DatabaseErrorKind,
    context: String,
    run: Option<RunId>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl DatabaseError {
    /// A failure of `kind` while doing `context` ("cannot claim runs").
    pub fn new(kind: DatabaseErrorKind, context: impl Into<String>) -> DatabaseError {
        DatabaseError { kind, context: context.into(), run: None, source: None }
    }

    /// The same failure, caused by the driver's `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> DatabaseError {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same failure, concerning `run`.
    #[must_use]
    pub fn for_run(mut self, run: RunId) -> DatabaseError {
        self.run = Some(run);
        self
    }

    /// How it failed.
    pub fn kind(&self) -> DatabaseErrorKind {
        self.kind
    }

    /// The run the failure concerns, when it concerns one (a corrupt row).
    pub fn run(&self) -> Option<RunId> {
        self.run
    }

    /// What the store was doing (naming the run, if any), without the
    /// driver's words.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        // The driver's words are part of the message: logs show one line.
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseError")
            .field("kind", &self.kind)
            .field("context", &self.context)
            .field("run", &self.run)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_busy_and_deadlocked_are_worth_another_try() {
        use DatabaseErrorKind::*;
        for (kind, transient) in [
            (Unavailable, true),
            (Busy, true),
            (Deadlock, true),
            (Full, false),
            (Corrupt, false),
            (Conflict, false),
            (Other, false),
        ] {
            assert_eq!(Error::from(DatabaseError::new(kind, "x")).is_transient(), transient, "{kind:?}");
        }
        assert!(!Error::Closed.is_transient(), "a closed store stays closed");
        assert!(!Error::NotFound(RunId::new()).is_transient());
    }

    #[test]
    fn the_message_names_the_run_the_context_and_the_cause() {
        let id = RunId::new();
        let cause = std::io::Error::other("disk on fire");
        let error = DatabaseError::new(DatabaseErrorKind::Corrupt, format!("run {id}: the stored payload is invalid"))
            .for_run(id)
            .with_source(cause);
        assert_eq!(error.to_string(), format!("run {id}: the stored payload is invalid: disk on fire"));
        assert_eq!(std::error::Error::source(&error).unwrap().to_string(), "disk on fire");
        assert_eq!(error.clone().run(), Some(id));
    }
}
