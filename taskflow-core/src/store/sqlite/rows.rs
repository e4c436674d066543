//! Rows and errors: runs read from and written to rows, and SQLite's errors
//! mapped to [`Error::Database`] of their kind.

use rusqlite::{Connection, Row, params};
use serde_json::Value;

use super::statements;
use crate::run::Run;
use crate::store::row::{RawRun, attempts_json, progress_columns, read_raw_run};
use crate::store::{DatabaseError, DatabaseErrorKind, Error, Result};

pub(super) fn query_runs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    let mut rows = stmt.query(params).map_err(db(context))?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().map_err(db(context))? {
        runs.push(read_run(row)?);
    }
    Ok(runs)
}

/// Writes everything a status change may touch.
pub(super) fn save(conn: &Connection, run: &Run) -> Result<()> {
    let (progress_done, progress_total) = progress_columns(run.progress);
    let mut stmt = conn.prepare_cached(statements::SAVE_RUN).map_err(db("cannot update a run"))?;
    let changed = stmt
        .execute(params![
            run.id.to_string(),
            run.status.as_str(),
            run.attempt,
            run.not_before.0,
            run.started_at.map(|t| t.0),
            run.finished_at.map(|t| t.0),
            run.result.as_ref().map(Value::to_string),
            run.error.as_ref().map(|e| &e.kind),
            run.error.as_ref().map(|e| &e.message),
            run.worker_id,
            run.lease_until.map(|t| t.0),
            attempts_json(run),
            progress_done,
            progress_total,
        ])
        .map_err(db("cannot update a run"))?;
    if changed == 0 {
        return Err(Error::NotFound(run.id));
    }
    Ok(())
}

/// Reads the [`RUN_COLUMNS`](super::RUN_COLUMNS) of a row; a row that does not make a valid run
/// is a [`Error::Database`], never a panic.
pub(super) fn read_run(row: &Row<'_>) -> Result<Run> {
    let get = |row: &Row<'_>| -> rusqlite::Result<RawRun> { Ok(read_raw_run!(row, get)) };
    get(row).map_err(db("cannot read a run"))?.into_run()
}

/// Maps a SQLite error to [`Error::Database`] of its [kind](kind_of),
/// saying what was being done; the SQLite error is kept as the source.
pub(super) fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    move |error| Error::Database(DatabaseError::new(kind_of(&error), context).with_source(error))
}

/// What a SQLite failure means for the caller, from its result code
/// (the primary code of the extended one: `SQLITE_BUSY_SNAPSHOT` is busy).
/// A value that does not convert is stored data that cannot be right.
fn kind_of(error: &rusqlite::Error) -> DatabaseErrorKind {
    use rusqlite::ErrorCode as Code;
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            Code::DatabaseBusy | Code::DatabaseLocked => DatabaseErrorKind::Busy,
            Code::DiskFull => DatabaseErrorKind::Full,
            Code::DatabaseCorrupt | Code::NotADatabase => DatabaseErrorKind::Corrupt,
            Code::ConstraintViolation => DatabaseErrorKind::Conflict,
            Code::CannotOpen | Code::SystemIoFailure | Code::FileLockingProtocolFailed | Code::OutOfMemory => {
                DatabaseErrorKind::Unavailable
            }
            _ => DatabaseErrorKind::Other,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::InvalidColumnType(..) => DatabaseErrorKind::Corrupt,
        _ => DatabaseErrorKind::Other,
    }
}

/// The machine refused a resource (a thread, a directory, the blocking pool).
pub(super) fn unavailable(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Database(DatabaseError::new(DatabaseErrorKind::Unavailable, context).with_source(source))
}
