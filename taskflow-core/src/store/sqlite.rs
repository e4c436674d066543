//! The SQLite store: the embedded default, one file (`taskflow.db`).
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: the write-ahead log
//! is flushed to stable storage (`fsync`) at every commit, and a submit (like
//! every other write) is acknowledged only after the transaction holding it
//! has committed. An acknowledged write therefore survives a `SIGKILL` of the
//! process and a power loss (on storage that honours `fsync`).
//!
//! # Concurrency
//!
//! One dedicated writer thread owns the only read-write connection. Writes
//! arrive on a channel and are **group-committed**: the writer takes the
//! first queued command, drains whatever else is queued (up to
//! [`BATCH_CAP`]), runs them all in one transaction, each in its own
//! `SAVEPOINT` so a failing command (an illegal transition, say) rolls back
//! only itself (submits and finishes, whose only change is their last
//! statement, need none: a failing statement undoes itself), commits, and
//! only then replies. If the commit fails, every
//! command of the batch gets the error. Because every write goes through this
//! one thread, two claimers can never claim the same run.
//!
//! Reads (`get`, `list`, `logs`) use separate read-only connections on the
//! blocking thread pool; under WAL they never wait for the writer.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use serde_json::Value;
use tokio::sync::oneshot;

use super::row::{RawRun, corrupt, level_name, log_line, parse_status, read_raw_run, to_i64};
use super::{
    ClaimRequest, DEFAULT_LIST_LIMIT, DatabaseError, DatabaseErrorKind, Error, MAX_LIST_LIMIT, MAX_LOG_LIMIT, NewRun,
    Page, Report, Result, RunFilter, Store, StoredLogLine, Submitted, apply, is_active,
};
use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};

/// The migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_runs", include_str!("../../migrations/sqlite/0001_runs.sql")),
    ("0002_status_check", include_str!("../../migrations/sqlite/0002_status_check.sql")),
];

/// The most commands one group commit holds.
const BATCH_CAP: usize = 1024;
/// How many expired runs one rescue transaction handles.
const RESCUE_BATCH: usize = 500;
/// How many runs one prune transaction deletes.
const PRUNE_BATCH: usize = 1000;
/// How many idle read connections are kept.
const IDLE_READERS: usize = 4;
/// How long a connection waits for a lock held by another connection.
/// Generous: SQLite's busy handler is not fair (a waiter sleeps and retries),
/// so with several processes writing to one file on a loaded machine one
/// writer can lose the lock many times in a row; 5 s was seen to run out
/// that way. A client would rather wait than be answered 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns a [`Run`] is read from, in the order [`read_run`] expects; a
/// macro so that constant statements can be spelled with `concat!`.
macro_rules! run_columns {
    () => {
        "id, task_title, payload, status, attempt, max_attempts, executor, priority, not_before, timeout_ms, \
         retry_delay_ms, created_at, started_at, finished_at, result, error_kind, error_message, worker_id, \
         lease_until, idempotency_key"
    };
}

/// The columns a [`Run`] is read from, in the order [`read_run`] expects.
const RUN_COLUMNS: &str = run_columns!();

/// The statements the store runs for every run, public (but hidden) so that
/// the benchmark's ceiling (`bench/src/ceiling.rs`) measures exactly these
/// and cannot drift from them. Not part of the API.
#[doc(hidden)]
pub mod statements {
    /// A de-duplicated submit's lookup of the active run with its key.
    pub const FIND_ACTIVE: &str = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE unique_key = ?1 AND status IN ('pending', 'running') ORDER BY id LIMIT 1"
    );

    /// One run by id (a finish and a cancel read the run they change).
    pub const LOAD_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1");

    /// A submit's insert (17 parameters, in the order the store binds them).
    pub const INSERT_RUN: &str = "INSERT INTO runs (id, task_title, payload, status, attempt, max_attempts, executor, \
         priority, not_before, timeout_ms, retry_delay_ms, created_at, started_at, worker_id, lease_until, \
         idempotency_key, unique_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

    /// Every status change (claim, finish, cancel, rescue): writes everything
    /// it may touch.
    pub const SAVE_RUN: &str = "UPDATE runs SET status = ?2, attempt = ?3, not_before = ?4, started_at = ?5, \
         finished_at = ?6, result = ?7, error_kind = ?8, error_message = ?9, worker_id = ?10, lease_until = ?11 \
         WHERE id = ?1";
}

/// The embedded default store: one SQLite file, one writer thread with group
/// commit, and a few read-only connections.
///
/// **Durability**: WAL mode with `synchronous=FULL`, and every write is
/// acknowledged only after the transaction holding it has committed, so an
/// acknowledged submit survives a `SIGKILL` of the process and a power loss.
///
/// **Concurrency**: all writes go through one writer thread, which commits
/// whatever is queued together (group commit) with each command in its own
/// savepoint; a run can therefore never be claimed twice. Reads use their
/// own read-only connections and never wait for the writer.
///
/// Cloning is cheap (the handles share one writer). The writer thread ends
/// when the last handle is dropped: dropping it waits for the commands
/// already queued and closes the file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Box<dyn Command>>>,
    thread: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered what was
        // queued; joining it closes the database file before we return.
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it if needed, and applies
    /// the migrations it lacks.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let failed = |error: Error| error.within(format_args!("cannot open the database {}", path.display()));
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| failed(db("cannot open it")(e)))?;
        configure_writer(&conn).map_err(failed)?;
        migrate(&mut conn).map_err(failed)?;
        // Open one reader now, so a file that cannot be read fails here.
        let reader = open_reader(&path).map_err(failed)?;

        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("taskflow-sqlite-writer".to_owned())
            .spawn(move || write_loop(conn, &receiver))
            .map_err(|e| failed(unavailable("cannot start the writer thread", e)))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Some(sender),
                thread: Some(thread),
                readers: Mutex::new(vec![reader]),
            }),
        })
    }

    /// Opens `taskflow.db` in `data_dir`, creating the directory if needed.
    pub fn open_in(data_dir: impl AsRef<Path>) -> Result<SqliteStore> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create the data directory {}", dir.display()), e))?;
        SqliteStore::open(dir.join("taskflow.db"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`; never
    /// below what it holds) and returns the cap in force. Writes past it
    /// fail with a [`DatabaseErrorKind::Full`] error and change
    /// nothing, as when the disk itself is full: a quota for operators, and
    /// the way tests fill the disk.
    pub async fn set_max_page_count(&self, pages: u64) -> Result<u64> {
        self.write(move |conn| {
            conn.pragma_update_and_check(None, "max_page_count", pages as i64, |row| row.get::<_, i64>(0))
                .map(|cap| cap as u64)
                .map_err(db("cannot set max_page_count"))
        })
        .await
    }

    /// How many pages the database holds now.
    pub async fn page_count(&self) -> Result<u64> {
        self.read(|conn| {
            conn.pragma_query_value(None, "page_count", |row| row.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(db("cannot read page_count"))
        })
        .await
    }

    /// `PRAGMA integrity_check`: `"ok"`, or what is wrong.
    pub async fn integrity_check(&self) -> Result<String> {
        self.read(|conn| {
            conn.pragma_query_value(None, "integrity_check", |row| row.get::<_, String>(0))
                .map_err(db("cannot check integrity"))
        })
        .await
    }

    /// Queues `op` for the writer; resolves once its batch has committed.
    fn write<T, F>(&self, op: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.write(op, Isolation::Savepoint).await })
    }

    /// [`write`](Self::write) for an `op` that changes the database in its
    /// last statement only (reads, then one `INSERT` or `UPDATE`): a
    /// failing statement undoes itself, so it needs no savepoint of its own.
    /// Submits and finishes, two of a run's three writes, are such.
    fn write_one<T, F>(&self, op: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.write(op, Isolation::LastStatement).await })
    }

    /// Runs `op` on a read-only connection on the blocking thread pool.
    fn read<T, F>(&self, op: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.read(op)).await.map_err(|e| {
                Error::from(
                    DatabaseError::new(DatabaseErrorKind::Other, "a read of the database failed").with_source(e),
                )
            })?
        })
    }
}

impl Inner {
    async fn write<T, F>(&self, op: F, isolation: Isolation) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job { op: Some(Box::new(op)), isolation, outcome: None, reply };
        self.writer.as_ref().ok_or(Error::Closed)?.send(Box::new(job)).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn read<T>(&self, op: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)
                .map_err(|e| e.within(format_args!("cannot open the database {} for reading", self.path.display())))?,
        };
        let outcome = op(&mut conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        outcome
    }
}

impl Store for SqliteStore {
    fn submit(&self, new: NewRun) -> BoxFuture<Result<Submitted>> {
        // What needs no database is done here, on the caller's thread, not
        // on the writer's: the writer is the one serial resource.
        match PreparedSubmit::new(new, Timestamp::now()) {
            Ok(prepared) => self.write_one(move |conn| submit_prepared(conn, prepared)),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn claim(&self, request: ClaimRequest) -> BoxFuture<Result<Vec<Run>>> {
        self.write(move |conn| claim(conn, &request))
    }

    fn heartbeat(
        &self,
        worker_id: String,
        runs: Vec<(RunId, u32)>,
        lease_until: Timestamp,
    ) -> BoxFuture<Result<Vec<RunId>>> {
        self.write(move |conn| heartbeat(conn, &worker_id, &runs, lease_until))
    }

    fn finish(&self, report: Report) -> BoxFuture<Result<Run>> {
        self.write_one(move |conn| finish(conn, report))
    }

    fn cancel(&self, id: RunId, now: Timestamp) -> BoxFuture<Result<Run>> {
        self.write(move |conn| cancel(conn, id, now))
    }

    fn delete(&self, id: RunId, force: bool) -> BoxFuture<Result<()>> {
        self.write(move |conn| delete(conn, id, force))
    }

    fn rescue_expired(&self, now: Timestamp) -> BoxFuture<Result<Vec<Run>>> {
        let inner = Arc::clone(&self.inner);
        // One transaction per batch, so a large rescue does not hold up the
        // other writes; each batch leaves fewer expired runs, so this ends.
        Box::pin(async move {
            let mut rescued = Vec::new();
            loop {
                let batch = inner.write(move |conn| rescue_batch(conn, now), Isolation::Savepoint).await?;
                let done = batch.len() < RESCUE_BATCH;
                rescued.extend(batch);
                if done {
                    return Ok(rescued);
                }
            }
        })
    }

    fn prune(&self, before: Timestamp) -> BoxFuture<Result<u64>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut pruned = 0;
            loop {
                let deleted = inner.write(move |conn| prune_batch(conn, before), Isolation::Savepoint).await?;
                pruned += deleted as u64;
                if deleted < PRUNE_BATCH {
                    return Ok(pruned);
                }
            }
        })
    }

    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<Vec<StoredLogLine>>> {
        if lines.is_empty() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        self.write(move |conn| append_logs(conn, lines))
    }

    fn get(&self, id: RunId) -> BoxFuture<Result<Option<Run>>> {
        self.read(move |conn| load(conn, id))
    }

    fn list(&self, filter: RunFilter) -> BoxFuture<Result<Page<Run>>> {
        self.read(move |conn| list(conn, filter))
    }

    fn logs(&self, id: RunId, after: u64, limit: u32) -> BoxFuture<Result<Vec<StoredLogLine>>> {
        self.read(move |conn| logs(conn, id, after, limit))
    }
}

// ---------------------------------------------------------------------------
// Opening

fn configure_writer(conn: &Connection) -> Result<()> {
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
fn migrate(conn: &mut Connection) -> Result<()> {
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

fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db("cannot open a reader"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db("cannot set busy_timeout"))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

// ---------------------------------------------------------------------------
// The writer and group commit

/// A queued write: runs inside its savepoint, answers after the commit.
trait Command: Send {
    /// How the command's changes are undone when it fails.
    fn isolation(&self) -> Isolation;
    /// Runs the command; returns whether it succeeded (its savepoint is
    /// released) or failed (its savepoint is rolled back).
    fn execute(&mut self, conn: &Connection) -> bool;
    /// Records a failure around the command (its savepoint).
    fn fail(&mut self, error: Error);
    /// Why the command failed, once it has.
    fn failure(&self) -> Option<Error>;
    /// Sends the answer: the command's own outcome, or the batch's failure.
    fn reply(self: Box<Self>, batch_failure: Option<&Error>);
}

type Op<T> = Box<dyn FnOnce(&Connection) -> Result<T> + Send>;

/// How a failing command's changes are undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// The command runs in a savepoint, rolled back if it fails.
    Savepoint,
    /// The command changes the database in its last statement only, which
    /// SQLite undoes by itself if it fails.
    LastStatement,
}

struct Job<T> {
    op: Option<Op<T>>,
    isolation: Isolation,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Command for Job<T> {
    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn execute(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        let outcome = catch_unwind(AssertUnwindSafe(|| op(conn)))
            .unwrap_or_else(|_| Err(Error::other("internal error: a store command panicked")));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, error: Error) {
        self.outcome = Some(Err(error));
    }

    fn failure(&self) -> Option<Error> {
        match &self.outcome {
            Some(Err(error @ Error::Database(_))) => Some(error.clone()),
            // Shared with the batch's other commands: a database failure
            // of theirs, not this command's refusal (`NotFound` of its run).
            Some(Err(error)) => Some(Error::other(error.to_string())),
            _ => None,
        }
    }

    fn reply(self: Box<Self>, batch_failure: Option<&Error>) {
        let outcome = match batch_failure {
            Some(error) => Err(error.clone()),
            None => self.outcome.unwrap_or_else(|| Err(Error::other("internal error: a store command did not run"))),
        };
        // The caller may have stopped waiting; that is not our concern.
        let _ = self.reply.send(outcome);
    }
}

fn write_loop(mut conn: Connection, commands: &mpsc::Receiver<Box<dyn Command>>) {
    let mut batch: Vec<Box<dyn Command>> = Vec::with_capacity(BATCH_CAP);
    while let Ok(first) = commands.recv() {
        batch.push(first);
        while batch.len() < BATCH_CAP {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let failure = run_batch(&mut conn, &mut batch).err();
        for command in batch.drain(..) {
            command.reply(failure.as_ref());
        }
    }
}

/// Runs a batch in one transaction, each command in its own savepoint.
///
/// The savepoint statements are prepared once and cached: rusqlite's
/// `Savepoint` formats and parses `SAVEPOINT` / `RELEASE` at every use,
/// which cost more than the commands themselves (three per run).
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Command>]) -> Result<()> {
    let tx =
        conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db("cannot begin a transaction"))?;
    for command in batch.iter_mut() {
        if command.isolation() == Isolation::LastStatement {
            // A failed statement undid itself; but an I/O or out-of-memory
            // error rolls the whole transaction back, and the commands after
            // it must not run outside one.
            if !command.execute(&tx) && tx.is_autocommit() {
                let reason = command.failure().unwrap_or_else(|| Error::other("unknown"));
                return Err(reason.within("the batch was rolled back"));
            }
            continue;
        }
        if let Err(e) = savepoint(&tx, "SAVEPOINT command") {
            command.fail(db("cannot create a savepoint")(e));
            continue;
        }
        if command.execute(&tx) {
            if let Err(e) = savepoint(&tx, "RELEASE command") {
                command.fail(db("cannot release a savepoint")(e));
                roll_back(&tx).map_err(db("cannot roll back a command"))?;
            }
        } else if tx.is_autocommit() {
            // SQLite itself rolled the whole transaction back (a full disk,
            // an I/O error): every command of the batch fails, for this
            // command's reason.
            let reason = command.failure().unwrap_or_else(|| Error::other("unknown"));
            return Err(reason.within("the batch was rolled back"));
        } else {
            // The failed command's changes might survive otherwise: fail the batch.
            roll_back(&tx).map_err(db("cannot roll back a failed command"))?;
        }
    }
    tx.commit().map_err(db("cannot commit"))
}

/// Runs one savepoint statement through the statement cache.
fn savepoint(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Undoes the current command: back to its savepoint, which is then ended.
fn roll_back(conn: &Connection) -> rusqlite::Result<()> {
    savepoint(conn, "ROLLBACK TO command")?;
    savepoint(conn, "RELEASE command")
}

// ---------------------------------------------------------------------------
// Writes (each runs inside its savepoint on the writer's connection, or
// changes the database in its last statement only)

/// A submit with everything computed that needs no database: the run it
/// creates (if nothing is found to share), its key and its text columns.
struct PreparedSubmit {
    new: NewRun,
    unique_key: String,
    run: Run,
    id: String,
    payload: String,
}

impl PreparedSubmit {
    fn new(new: NewRun, now: Timestamp) -> Result<PreparedSubmit> {
        let run = apply::create(&new, now)?;
        Ok(PreparedSubmit {
            unique_key: new.unique_key(),
            id: run.id.to_string(),
            payload: run.payload.to_string(),
            run,
            new,
        })
    }
}

#[cfg(test)]
fn submit(conn: &Connection, new: NewRun, now: Timestamp) -> Result<Submitted> {
    submit_prepared(conn, PreparedSubmit::new(new, now)?)
}

fn submit_prepared(conn: &Connection, prepared: PreparedSubmit) -> Result<Submitted> {
    let PreparedSubmit { new, unique_key, run, id, payload } = prepared;
    if let Some(key) = &new.idempotency_key {
        let sql = format!("SELECT {RUN_COLUMNS}, unique_key FROM runs WHERE idempotency_key = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(db("cannot look up an idempotency key"))?;
        let mut rows = stmt.query([key]).map_err(db("cannot look up an idempotency key"))?;
        if let Some(row) = rows.next().map_err(db("cannot look up an idempotency key"))? {
            let run = read_run(row)?;
            let existing_key: String = row.get(20).map_err(db("cannot look up an idempotency key"))?;
            if existing_key == unique_key {
                return Ok(Submitted { run, created: false });
            }
            return Err(Error::IdempotencyConflict { key: key.clone(), existing: run.id });
        }
    }
    if new.unique {
        let mut stmt = conn.prepare_cached(statements::FIND_ACTIVE).map_err(db("cannot look up an active run"))?;
        let mut rows = stmt.query([&unique_key]).map_err(db("cannot look up an active run"))?;
        if let Some(row) = rows.next().map_err(db("cannot look up an active run"))? {
            return Ok(Submitted { run: read_run(row)?, created: false });
        }
    }

    let mut stmt = conn.prepare_cached(statements::INSERT_RUN).map_err(db("cannot insert a run"))?;
    stmt.execute(params![
        id,
        run.task_title,
        payload,
        run.status.as_str(),
        run.attempt,
        run.max_attempts,
        run.executor.as_str(),
        run.priority,
        run.not_before.0,
        run.timeout_ms.map(to_i64),
        to_i64(run.retry_delay_ms),
        run.created_at.0,
        run.started_at.map(|t| t.0),
        run.worker_id,
        run.lease_until.map(|t| t.0),
        run.idempotency_key,
        unique_key,
    ])
    .map_err(db("cannot insert a run"))?;
    Ok(Submitted { run, created: true })
}

fn claim(conn: &Connection, request: &ClaimRequest) -> Result<Vec<Run>> {
    let executors = apply::distinct(&request.executors);
    if executors.is_empty() || request.titles.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    // Room left under each task's concurrency limit; full tasks are skipped
    // in the query, the others are capped while picking.
    let mut room: BTreeMap<&str, u32> = BTreeMap::new();
    for (title, limit) in &request.task_limits {
        let running: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_title = ?")
            .and_then(|mut statement| statement.query_row([title], |row| row.get(0)))
            .map_err(db("cannot count running runs of a task"))?;
        room.insert(title, limit.saturating_sub(u32::try_from(running).unwrap_or(u32::MAX)));
    }
    let full = apply::full(&room);
    let placeholders = vec!["?"; executors.len()].join(", ");
    let title_placeholders = vec!["?"; request.titles.len()].join(", ");
    let skip_full = if full.is_empty() {
        String::new()
    } else {
        format!(" AND task_title NOT IN ({})", vec!["?"; full.len()].join(", "))
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'pending' AND not_before <= ? AND executor IN ({placeholders}) \
         AND task_title IN ({title_placeholders}){skip_full} \
         ORDER BY priority DESC, not_before, id LIMIT ?"
    );
    let mut args = Vec::with_capacity(executors.len() + request.titles.len() + full.len() + 2);
    args.push(SqlValue::Integer(request.now.0));
    args.extend(executors.iter().map(|executor| SqlValue::Text(executor.as_str().to_owned())));
    args.extend(request.titles.iter().map(|title| SqlValue::Text(title.clone())));
    args.extend(full.iter().map(|title| SqlValue::Text((*title).to_owned())));
    // Look a little further when limited tasks may have to be passed over.
    args.push(SqlValue::Integer(i64::from(apply::window(request.limit, &room))));
    let candidates = query_runs(conn, &sql, params_from_iter(args), "cannot select runs to claim")?;
    let mut runs = apply::pick(candidates.into_iter().map(Ok), request.limit, &mut room)?;

    let lease_until = request.now.plus(request.lease);
    for run in &mut runs {
        apply::claim(run, &request.worker_id, lease_until, request.now)?;
        save(conn, run)?;
    }
    Ok(runs)
}

fn heartbeat(conn: &Connection, worker_id: &str, runs: &[(RunId, u32)], lease_until: Timestamp) -> Result<Vec<RunId>> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE runs SET lease_until = ?1 \
             WHERE id = ?2 AND status = 'running' AND attempt = ?3 AND worker_id = ?4",
        )
        .map_err(db("cannot renew leases"))?;
    let mut lost = Vec::new();
    for (id, attempt) in runs {
        let renewed = stmt
            .execute(params![lease_until.0, id.to_string(), attempt, worker_id])
            .map_err(db("cannot renew a lease"))?;
        if renewed == 0 {
            lost.push(*id);
        }
    }
    Ok(lost)
}

fn finish(conn: &Connection, report: Report) -> Result<Run> {
    let id = report.id;
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    apply::finish(&mut run, report)?;
    save(conn, &run)?;
    Ok(run)
}

fn cancel(conn: &Connection, id: RunId, now: Timestamp) -> Result<Run> {
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    apply::cancel(&mut run, now)?;
    save(conn, &run)?;
    Ok(run)
}

fn delete(conn: &Connection, id: RunId, force: bool) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT status FROM runs WHERE id = ?1").map_err(db("cannot read a run"))?;
    let status: Option<String> =
        stmt.query_row([id.to_string()], |row| row.get(0)).optional().map_err(db("cannot read a run"))?;
    let status = parse_status(&id.to_string(), &status.ok_or(Error::NotFound(id))?)?;
    if is_active(status) && !force {
        return Err(Error::Active(id));
    }
    delete_run(conn, &id.to_string())
}

fn delete_run(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map_err(db("cannot delete a run's log"))?;
    conn.prepare_cached("DELETE FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map_err(db("cannot delete a run"))?;
    Ok(())
}

/// Rescues up to [`RESCUE_BATCH`] running runs whose lease ended before `now`.
fn rescue_batch(conn: &Connection, now: Timestamp) -> Result<Vec<Run>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND lease_until < ?1 \
         ORDER BY lease_until, id LIMIT {RESCUE_BATCH}"
    );
    let mut runs = query_runs(conn, &sql, [now.0], "cannot select expired leases")?;
    for run in &mut runs {
        apply::expire(run, now)?;
        save(conn, run)?;
    }
    Ok(runs)
}

/// Deletes up to [`PRUNE_BATCH`] final runs finished before `before`.
fn prune_batch(conn: &Connection, before: Timestamp) -> Result<usize> {
    // `+status`: look runs up by `finished_at` (the status only guards).
    let sql = format!(
        "SELECT id FROM runs WHERE finished_at < ?1 AND +status IN ('completed', 'failed', 'cancelled') \
         LIMIT {PRUNE_BATCH}"
    );
    let ids: Vec<String> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_map([before.0], |row| row.get(0))?.collect())
        .map_err(db("cannot select runs to prune"))?;
    for id in &ids {
        delete_run(conn, id)?;
    }
    Ok(ids.len())
}

fn append_logs(conn: &Connection, lines: Vec<(RunId, Timestamp, Level, String)>) -> Result<Vec<StoredLogLine>> {
    let mut next = conn
        .prepare_cached("UPDATE runs SET log_count = log_count + 1 WHERE id = ?1 RETURNING log_count")
        .map_err(db("cannot append log lines"))?;
    let mut insert = conn
        .prepare_cached("INSERT INTO run_logs (run_id, seq, at, level, message) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db("cannot append log lines"))?;
    let mut stored = Vec::with_capacity(lines.len());
    for (run_id, at, level, message) in lines {
        let id = run_id.to_string();
        let seq: Option<i64> =
            next.query_row([&id], |row| row.get(0)).optional().map_err(db("cannot append a log line"))?;
        // A line of an unknown (deleted) run is dropped.
        if let Some(seq) = seq {
            insert
                .execute(params![id, seq, at.0, level_name(level), message])
                .map_err(db("cannot append a log line"))?;
            let seq = u64::try_from(seq).map_err(|_| corrupt(&id, "log sequence number", seq))?;
            stored.push(StoredLogLine { run_id, seq, at, level, message });
        }
    }
    Ok(stored)
}

// ---------------------------------------------------------------------------
// Reads

fn load(conn: &Connection, id: RunId) -> Result<Option<Run>> {
    let mut runs = query_runs(conn, statements::LOAD_RUN, [id.to_string()], "cannot read a run")?;
    Ok(runs.pop())
}

fn list(conn: &mut Connection, filter: RunFilter) -> Result<Page<Run>> {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if let Some(status) = filter.status {
        conditions.push("status = ?");
        args.push(SqlValue::Text(status.as_str().to_owned()));
    }
    if let Some(title) = filter.task_title {
        conditions.push("task_title = ?");
        args.push(SqlValue::Text(title));
    }
    let filter_sql = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
    let offset = filter.offset.unwrap_or(0);

    // One snapshot for the count and the page.
    let tx = conn.transaction().map_err(db("cannot list runs"))?;
    let total: i64 = tx
        .prepare_cached(&format!("SELECT COUNT(*) FROM runs{filter_sql}"))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(args.iter()), |row| row.get(0)))
        .map_err(db("cannot count runs"))?;
    args.push(SqlValue::Integer(i64::from(limit)));
    args.push(SqlValue::Integer(i64::from(offset)));
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs{filter_sql} ORDER BY id DESC LIMIT ? OFFSET ?");
    let items = query_runs(&tx, &sql, params_from_iter(args), "cannot list runs")?;
    drop(tx);
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

fn logs(conn: &Connection, id: RunId, after: u64, limit: u32) -> Result<Vec<StoredLogLine>> {
    let run_id = id.to_string();
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, level, message FROM run_logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db("cannot read log lines"))?;
    let mut rows =
        stmt.query(params![run_id, to_i64(after), limit.min(MAX_LOG_LIMIT)]).map_err(db("cannot read log lines"))?;
    let mut lines = Vec::new();
    while let Some(row) = rows.next().map_err(db("cannot read log lines"))? {
        let read = |row: &Row<'_>| -> rusqlite::Result<(i64, i64, String, String)> {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        };
        let (seq, at, level, message) = read(row).map_err(db("cannot read a log line"))?;
        lines.push(log_line(id, seq, at, &level, message)?);
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Rows

fn query_runs(conn: &Connection, sql: &str, params: impl rusqlite::Params, context: &'static str) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    let mut rows = stmt.query(params).map_err(db(context))?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().map_err(db(context))? {
        runs.push(read_run(row)?);
    }
    Ok(runs)
}

/// Writes everything a status change may touch.
fn save(conn: &Connection, run: &Run) -> Result<()> {
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
        ])
        .map_err(db("cannot update a run"))?;
    if changed == 0 {
        return Err(Error::NotFound(run.id));
    }
    Ok(())
}

/// Reads the [`RUN_COLUMNS`] of a row; a row that does not make a valid run
/// is a [`Error::Database`], never a panic.
fn read_run(row: &Row<'_>) -> Result<Run> {
    let get = |row: &Row<'_>| -> rusqlite::Result<RawRun> { Ok(read_raw_run!(row, get)) };
    get(row).map_err(db("cannot read a run"))?.into_run()
}

/// Maps a SQLite error to [`Error::Database`] of its [kind](kind_of),
/// saying what was being done; the SQLite error is kept as the source.
fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
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
fn unavailable(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Database(DatabaseError::new(DatabaseErrorKind::Unavailable, context).with_source(source))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;
    use tempfile::TempDir;
    use tokio::task::JoinSet;

    use super::*;
    use crate::run::ExecutorKind;
    use crate::run::RunStatus;

    fn fresh() -> (TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        (dir, store)
    }

    /// A run that may be claimed from `Timestamp(1_000)` on.
    fn new_run(title: &str, payload: Value) -> NewRun {
        let mut new = NewRun::new(title, payload);
        new.not_before = Some(Timestamp(1_000));
        new
    }

    async fn submit_new(store: &SqliteStore, new: NewRun) -> Run {
        let submitted = store.submit(new).await.unwrap();
        assert!(submitted.created);
        submitted.run
    }

    async fn get(store: &SqliteStore, id: RunId) -> Run {
        store.get(id).await.unwrap().unwrap()
    }

    /// The file is where it was asked for, and its runs survive a reopen.
    /// (How a run round-trips is in the conformance suite.)
    #[tokio::test]
    async fn reopen_keeps_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let store = SqliteStore::open_in(&data_dir).unwrap();
        assert_eq!(store.path(), data_dir.join("taskflow.db"));

        let mut new = NewRun::new("add", json!({"a": 1, "b": [true, null, "x"]}));
        new.max_attempts = 3;
        new.executor = ExecutorKind::Process;
        new.idempotency_key = Some("key-1".to_owned());
        let run = submit_new(&store, new).await;
        let plain = submit_new(&store, NewRun::new("add", json!({}))).await;

        drop(store);
        let store = SqliteStore::open(data_dir.join("taskflow.db")).unwrap();
        assert_eq!(get(&store, run.id).await, run);
        assert_eq!(get(&store, plain.id).await, plain);
    }

    #[tokio::test]
    async fn open_reports_the_failing_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a directory").unwrap();
        let error = SqliteStore::open_in(file.join("sub")).unwrap_err().to_string();
        assert!(error.contains("a-file"), "{error}");
        let error = SqliteStore::open(dir.path().join("missing").join("taskflow.db")).unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open_in(dir.path()).unwrap());
        let path = dir.path().join("taskflow.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let error = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(error.contains("schema version 99"), "{error}");
    }

    /// A database of the first schema version is upgraded in place: its
    /// runs and log lines survive the table's rebuild (0002), the logs
    /// still belong to their runs, and the status is still checked.
    #[tokio::test]
    async fn an_older_schema_is_migrated_with_its_runs_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taskflow.db");
        let version_1 = Connection::open(&path).unwrap();
        version_1.execute_batch(MIGRATIONS[0].1).unwrap();
        version_1.pragma_update(None, "user_version", 1).unwrap();
        let id = RunId::new();
        version_1
            .execute(
                "INSERT INTO runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
                 not_before, retry_delay_ms, created_at, started_at, finished_at, result, unique_key, log_count) \
                 VALUES (?1, 'add', '{\"a\":1}', 'completed', 1, 1, 'thread', 0, 5, 1000, 5, 6, 7, '2', 'k', 1)",
                [id.to_string()],
            )
            .unwrap();
        version_1
            .execute(
                "INSERT INTO run_logs (run_id, seq, at, level, message) VALUES (?1, 1, 6, 'info', 'hi')",
                [id.to_string()],
            )
            .unwrap();
        drop(version_1);

        let store = SqliteStore::open(&path).unwrap();
        let run = get(&store, id).await;
        assert_eq!((run.status, run.payload, run.result), (RunStatus::Completed, json!({"a": 1}), Some(json!(2))));
        let lines = store.logs(id, 0, 10).await.unwrap();
        assert_eq!(lines.iter().map(|line| line.message.as_str()).collect::<Vec<_>>(), ["hi"]);
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        drop(store);

        let raw = Connection::open(&path).unwrap();
        let version: i64 = raw.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        // The logs still refer to their run: deleting it takes them along.
        raw.pragma_update(None, "foreign_keys", "ON").unwrap();
        let bogus = raw.execute("UPDATE runs SET status = 'bogus' WHERE id = ?1", [id.to_string()]);
        assert!(bogus.unwrap_err().to_string().contains("CHECK constraint failed"));
        raw.execute("DELETE FROM runs WHERE id = ?1", [id.to_string()]).unwrap();
        let left: i64 = raw.query_row("SELECT COUNT(*) FROM run_logs", [], |row| row.get(0)).unwrap();
        assert_eq!(left, 0);
    }

    /// Each kind from what SQLite itself answers, on real files. SQLite
    /// has no deadlock to report: a writer waiting for another's lock is
    /// told `SQLITE_BUSY`, which is [`DatabaseErrorKind::Busy`].
    #[tokio::test]
    async fn sqlites_errors_have_their_kinds() {
        let (dir, store) = fresh();
        let path = dir.path().join("taskflow.db");

        // Another connection holds the write lock and this one does not wait.
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waiter = Connection::open(&path).unwrap();
        waiter.busy_timeout(Duration::ZERO).unwrap();
        let busy = waiter.execute_batch("BEGIN IMMEDIATE").map_err(db("beginning")).unwrap_err();
        assert_eq!(busy.database_kind(), Some(DatabaseErrorKind::Busy), "{busy}");
        assert!(busy.is_transient());
        holder.execute_batch("ROLLBACK").unwrap();

        // No room left: a cap of the pages it holds, and a payload that needs more.
        let pages = store.page_count().await.unwrap();
        store.set_max_page_count(pages).await.unwrap();
        let big = json!({"text": "x".repeat(64 * 1024)});
        let full = store.submit(new_run("t", big)).await.unwrap_err();
        assert_eq!(full.database_kind(), Some(DatabaseErrorKind::Full), "{full}");
        assert!(!full.is_transient(), "a full disk stays full until space is freed");
        drop(store);

        // A file that is not a database.
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let corrupt = SqliteStore::open(&garbage).unwrap_err();
        assert_eq!(corrupt.database_kind(), Some(DatabaseErrorKind::Corrupt), "{corrupt}");
        assert!(corrupt.to_string().contains("garbage.db"), "names the file: {corrupt}");

        // A file that cannot be opened: its directory is a file.
        let unopenable = SqliteStore::open(garbage.join("taskflow.db")).unwrap_err();
        assert_eq!(unopenable.database_kind(), Some(DatabaseErrorKind::Unavailable), "{unopenable}");

        // A statement the schema refuses, and one that makes no sense.
        let conn = Connection::open(&path).unwrap();
        let refused = conn.execute("INSERT INTO runs (id) VALUES ('x')", []).map_err(db("inserting")).unwrap_err();
        assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Conflict), "{refused}");
        let nonsense = conn.execute("SELEKT 1", []).map_err(db("selecting")).unwrap_err();
        assert_eq!(nonsense.database_kind(), Some(DatabaseErrorKind::Other), "{nonsense}");
        assert!(!refused.is_transient() && !nonsense.is_transient());
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors() {
        let (dir, store) = fresh();
        let run = submit_new(&store, new_run("t", json!({}))).await;
        let raw = Connection::open(dir.path().join("taskflow.db")).unwrap();
        raw.execute("UPDATE runs SET payload = '{not json' WHERE id = ?1", [run.id.to_string()]).unwrap();
        drop(raw);
        match store.get(run.id).await {
            Err(Error::Database(error)) => {
                assert!(error.to_string().contains("payload"), "{error}");
                assert_eq!((error.kind(), error.run()), (DatabaseErrorKind::Corrupt, Some(run.id)), "{error}");
            }
            other => panic!("expected a database error, got {other:?}"),
        }
        // The writer reports it too, and keeps going; trying again cannot help.
        let again = store.cancel(run.id, Timestamp(2_000)).await.unwrap_err();
        assert_eq!(again.database_kind(), Some(DatabaseErrorKind::Corrupt), "{again}");
        assert!(!again.is_transient());
        submit_new(&store, new_run("t", json!({"other": true}))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_acknowledges_every_submit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let mut submits = JoinSet::new();
        for i in 0..500 {
            let store = store.clone();
            submits.spawn(async move { store.submit(new_run("t", json!({ "i": i }))).await });
        }
        let mut acknowledged = HashSet::new();
        for submitted in submits.join_all().await {
            let submitted = submitted.unwrap();
            assert!(submitted.created);
            acknowledged.insert(submitted.run.id);
        }
        assert_eq!(acknowledged.len(), 500);
        drop(store);

        let store = SqliteStore::open_in(dir.path()).unwrap();
        let filter = RunFilter { limit: Some(1000), ..RunFilter::default() };
        let page = store.list(filter).await.unwrap();
        assert_eq!(page.total, 500);
        assert_eq!(page.items.into_iter().map(|r| r.id).collect::<HashSet<_>>(), acknowledged);
    }

    /// A queued command and where its answer arrives.
    fn job<T: Send + 'static>(
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> (Box<dyn Command>, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(Job { op: Some(Box::new(op)), isolation: Isolation::Savepoint, outcome: None, reply }), answer)
    }

    /// The writer's connection on a fresh file, without the writer thread.
    fn writer_connection(dir: &TempDir) -> Connection {
        let mut conn = Connection::open(dir.path().join("taskflow.db")).unwrap();
        configure_writer(&conn).unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    fn count_runs(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0)).unwrap()
    }

    #[tokio::test]
    async fn a_failing_command_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir);
        let (first, first_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
        let (missing, missing_answer) = job(|conn| cancel(conn, RunId::new(), Timestamp(1)));
        // Writes, then fails: its write must not survive.
        let (partial, partial_answer) = job(|conn| {
            submit(conn, new_run("partial", json!({})), Timestamp(1))?;
            Err::<(), _>(Error::Closed)
        });
        let (panics, panics_answer) = job(|conn| -> Result<()> {
            submit(conn, new_run("panics", json!({})), Timestamp(1))?;
            panic!("a bug in a command");
        });
        let (last, last_answer) = job(|conn| submit(conn, new_run("b", json!({})), Timestamp(1)));
        let mut batch = vec![first, missing, partial, panics, last];

        let failure = run_batch(&mut conn, &mut batch).err();
        assert!(failure.is_none(), "{failure:?}");
        for command in batch {
            command.reply(None);
        }
        assert!(first_answer.await.unwrap().unwrap().created);
        assert!(matches!(missing_answer.await.unwrap(), Err(Error::NotFound(_))));
        assert!(matches!(partial_answer.await.unwrap(), Err(Error::Closed)));
        assert!(matches!(panics_answer.await.unwrap(), Err(Error::Database(m)) if m.to_string().contains("panicked")));
        assert!(last_answer.await.unwrap().unwrap().created);
        assert_eq!(count_runs(&conn), 2);
    }

    /// A command without a savepoint that fails in its (only) write leaves
    /// the batch and the other commands as they were.
    #[tokio::test]
    async fn a_failing_last_statement_undoes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir);
        let (first, first_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
        let (reply, failing_answer) = oneshot::channel();
        let failing: Box<dyn Command> = Box::new(Job {
            op: Some(Box::new(|conn: &Connection| {
                // NOT NULL fails the statement.
                conn.execute("INSERT INTO runs (id) VALUES ('x')", []).map(drop).map_err(db("test"))
            }) as Op<()>),
            isolation: Isolation::LastStatement,
            outcome: None,
            reply,
        });
        let (last, last_answer) = job(|conn| submit(conn, new_run("b", json!({})), Timestamp(1)));
        let mut batch = vec![first, failing, last];
        let failure = run_batch(&mut conn, &mut batch).err();
        assert!(failure.is_none(), "{failure:?}");
        for command in batch {
            command.reply(None);
        }
        assert!(first_answer.await.unwrap().unwrap().created);
        let refused = failing_answer.await.unwrap().unwrap_err();
        assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Conflict), "a NOT NULL constraint: {refused}");
        assert!(last_answer.await.unwrap().unwrap().created);
        assert_eq!(count_runs(&conn), 2);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir);
        let (good, good_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
        // A deferred foreign key violation passes its savepoint and fails the COMMIT.
        let (bad, bad_answer) = job(|conn| {
            conn.execute_batch(
                "PRAGMA defer_foreign_keys = ON; \
                 INSERT INTO run_logs (run_id, seq, at, level, message) VALUES ('nope', 1, 0, 'info', 'x');",
            )
            .map_err(db("test"))
        });
        let mut batch = vec![good, bad];
        let failure = run_batch(&mut conn, &mut batch).err();
        assert!(failure.as_ref().is_some_and(|e| e.to_string().contains("commit")), "{failure:?}");
        for command in batch {
            command.reply(failure.as_ref());
        }
        let good = good_answer.await.unwrap().unwrap_err();
        assert!(good.to_string().contains("commit"), "{good}");
        assert_eq!(good.database_kind(), Some(DatabaseErrorKind::Conflict), "a foreign key: {good}");
        assert!(matches!(bad_answer.await.unwrap(), Err(Error::Database(_))));
        assert_eq!(count_runs(&conn), 0);

        // The connection is usable again.
        let (again, again_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
        let mut batch = vec![again];
        assert!(run_batch(&mut conn, &mut batch).is_ok());
        batch.pop().unwrap().reply(None);
        assert!(again_answer.await.unwrap().unwrap().created);
        assert_eq!(count_runs(&conn), 1);
    }

    #[tokio::test]
    async fn a_stopped_writer_means_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, receiver) = mpsc::channel();
        drop(receiver);
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path: dir.path().join("taskflow.db"),
                writer: Some(sender),
                thread: None,
                readers: Mutex::new(Vec::new()),
            }),
        };
        assert!(matches!(store.submit(new_run("t", json!({}))).await, Err(Error::Closed)));
        assert!(matches!(store.rescue_expired(Timestamp(1)).await, Err(Error::Closed)));
    }
}
