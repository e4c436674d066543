//! What an [`App`](crate::App) command can stop on: the aggregate of every
//! layer's error, kept at the top so no layer below depends on the others.

use std::fmt;

use crate::TaskError;
use crate::registry::RegistryError;

/// `Result` with TaskFlow's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an [`App`](crate::App) command can fail with.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tasks linked into the binary are inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The engine did not start (its timings cannot hold a lease).
    #[error(transparent)]
    Engine(crate::engine::StartError),
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

/// Lets `ctx.check_cancelled()?` work in tasks that return
/// `taskflow::Result<T>`: the error is `Error::Task(TaskError::Cancelled)`.
impl From<crate::Cancelled> for Error {
    fn from(cancelled: crate::Cancelled) -> Error {
        Error::Task(cancelled.into())
    }
}

impl From<crate::engine::StartError> for Error {
    fn from(error: crate::engine::StartError) -> Error {
        match error {
            crate::engine::StartError::Registry(error) => Error::Registry(error),
            error => Error::Engine(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_check_is_a_cancelled_task_error() {
        let error = Error::from(crate::Cancelled);
        assert!(matches!(error, Error::Task(TaskError::Cancelled)), "{error:?}");
    }
}
