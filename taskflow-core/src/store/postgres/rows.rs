//! Rows and errors: runs read from rows, statements, text PostgreSQL can
//! store, and the driver's errors mapped to [`Error::Database`] of their kind.

use sqlx_core::query::Query;
use sqlx_core::row::Row;
use sqlx_postgres::{PgArguments, PgRow, Postgres};

use crate::run::Run;
use crate::store::row::{RawRun, read_raw_run};
use crate::store::{DatabaseError, DatabaseErrorKind, Error, Result};

/// Reads the [`RUN_COLUMNS`](super::RUN_COLUMNS) of a row; a row that does not make a valid run
/// is a [`Error::Database`], never a panic.
pub(super) fn read_run(row: &PgRow) -> Result<Run> {
    let get = |row: &PgRow| -> Result<RawRun, sqlx_core::Error> { Ok(read_raw_run!(row, try_get)) };
    get(row).map_err(db("cannot read a run"))?.into_run()
}

/// A statement on the pool or a connection; binds follow.
pub(super) fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx_core::query::query(sql)
}

/// Free text as PostgreSQL can store it: `text` cannot hold NUL, so a NUL
/// in a log line or an error message becomes U+FFFD.
pub(super) fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// Maps a database error to [`Error::Database`] of its [kind](kind_of),
/// saying what was being done, the driver's error kept as the source; a
/// closed pool is [`Error::Closed`].
pub(super) fn db(context: impl Into<String>) -> impl FnOnce(sqlx_core::Error) -> Error {
    move |error| match error {
        sqlx_core::Error::PoolClosed => Error::Closed,
        error => Error::Database(DatabaseError::new(kind_of(&error), context).with_source(error)),
    }
}

/// What a PostgreSQL failure means for the caller: the SQLSTATE of an
/// error the server sent (its class for most, a few codes by name), or
/// what failed on this side of the connection.
pub(super) fn kind_of(error: &sqlx_core::Error) -> DatabaseErrorKind {
    use sqlx_core::Error as E;
    match error {
        E::Database(error) => error.code().map_or(DatabaseErrorKind::Other, |code| kind_of_sqlstate(&code)),
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::WorkerCrashed | E::BeginFailed => {
            DatabaseErrorKind::Unavailable
        }
        E::ColumnDecode { .. } | E::Decode(_) => DatabaseErrorKind::Corrupt,
        _ => DatabaseErrorKind::Other,
    }
}

/// The kind of a SQLSTATE (PostgreSQL's appendix A, "Error Codes").
pub(super) fn kind_of_sqlstate(code: &str) -> DatabaseErrorKind {
    match code {
        // deadlock_detected, serialization_failure
        "40P01" | "40001" => DatabaseErrorKind::Deadlock,
        // lock_not_available (`NOWAIT`, `lock_timeout`), query_canceled (`statement_timeout`)
        "55P03" | "57014" => DatabaseErrorKind::Busy,
        // disk_full
        "53100" => DatabaseErrorKind::Full,
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => DatabaseErrorKind::Corrupt,
        // admin_shutdown, crash_shutdown, cannot_connect_now, io_error
        "57P01" | "57P02" | "57P03" | "58030" => DatabaseErrorKind::Unavailable,
        // connection exceptions; insufficient resources (out of memory, too many connections)
        _ if code.starts_with("08") || code.starts_with("53") => DatabaseErrorKind::Unavailable,
        // integrity constraint violations
        _ if code.starts_with("23") => DatabaseErrorKind::Conflict,
        _ => DatabaseErrorKind::Other,
    }
}
