//! Opening the database: the writer's and the readers' connection
//! settings, and the migrations.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::rows::db;
use super::{BUSY_TIMEOUT, Error, Result};

/// The migrations, in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_runs", include_str!("../../../migrations/sqlite/0001_runs.sql")),
    ("0002_status_check", include_str!("../../../migrations/sqlite/0002_status_check.sql")),
    ("0003_task_limits", include_str!("../../../migrations/sqlite/0003_task_limits.sql")),
    ("0004_attempts", include_str!("../../../migrations/sqlite/0004_attempts.sql")),
    ("0005_progress", include_str!("../../../migrations/sqlite/0005_progress.sql")),
    ("0006_workers", include_str!("../../../migrations/sqlite/0006_workers.sql")),
    ("0007_refused_tasks", include_str!("../../../migrations/sqlite/0007_refused_tasks.sql")),
];

pub(super) fn configure_writer(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db("cannot set busy_timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db("cannot switch to WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::other(format!("the database cannot use WAL mode (journal mode is `{mode}`)")));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(db("cannot set synchronous=FULL"))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db("cannot enable foreign keys"))?;
    // Savepoint journals in memory: every command runs in a savepoint, and
    // a batch's statement journal spilled to a temporary file after 64 KiB,
    // making every later page the commands touched a `pwrite` (measured:
    // the writer's CPU per run fell from ~63 to ~44 µs in B1).
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(db("cannot set temp_store=MEMORY"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Applies the migrations the database lacks, in one transaction, with
/// foreign keys off: a migration may rebuild a table others refer to
/// (SQLite's documented procedure for changes `ALTER TABLE` cannot make),
/// so the references are checked once, before the commit.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    // Only outside a transaction does this pragma take effect.
    conn.pragma_update(None, "foreign_keys", "OFF").map_err(db("cannot disable foreign keys"))?;
    let outcome = migrate_in_transaction(conn);
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db("cannot enable foreign keys"))?;
    outcome
}

fn migrate_in_transaction(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE: a second process opening the same file waits here, then
    // sees the version the first one wrote.
    let tx =
        conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db("cannot begin the migration"))?;
    let version: i64 =
        tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(db("cannot read the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::other(format!(
            "its schema version {version} is newer than this build of taskflow knows ({known}); upgrade taskflow"
        )));
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.execute_batch(sql).map_err(db(format!("migration {name} failed")))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db(format!("cannot record migration {name}")))?;
    }
    let dangling: Option<String> = tx
        .query_row("SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1", [], |row| row.get(0))
        .optional()
        .map_err(db("cannot check foreign keys after the migrations"))?;
    if let Some(table) = dangling {
        return Err(Error::other(format!("the migrations left rows of `{table}` referring to missing rows")));
    }
    tx.commit().map_err(db("cannot commit the migrations"))
}

pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db("cannot open a reader"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db("cannot set busy_timeout"))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}
