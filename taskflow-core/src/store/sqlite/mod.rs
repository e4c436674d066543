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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use self::open::{configure_writer, migrate, open_reader};
use self::reads::{list, load, logs};
use self::rows::{db, unavailable};
use self::writer::{Command, Isolation, Job, write_loop};
use self::writes::{
    PreparedSubmit, append_logs, cancel, claim, delete, finish, heartbeat, prune_batch, rescue_batch, submit_prepared,
};
use super::{
    ClaimRequest, DatabaseError, DatabaseErrorKind, Error, NewProvisionToken, NewRun, Page, Registration, Renewal,
    Report, Result, RunFilter, Store, StoredLogLine, Submitted, WorkerRecord,
};
use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};

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
///
/// But well under a lease less a heartbeat interval (30 s − 10 s by
/// default): a process's heartbeats queue on its one writer, and a renewal
/// is stamped when it is sent, not when it commits. A wait as long as the
/// lease (30 s, once) let a renewal commit after the lease it renews had
/// ended, and the lock holder's rescuer take the live run in between; a
/// claim that waited so long started its runs with their leases spent.
/// Past this wait the write fails as busy and is tried again.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The columns a [`Run`] is read from, in the order [`read_run`](rows::read_run) expects; a
/// macro so that constant statements can be spelled with `concat!`.
macro_rules! run_columns {
    () => {
        "id, task_title, payload, status, attempt, max_attempts, executor, priority, not_before, timeout_ms, \
         retry_delay_ms, created_at, started_at, finished_at, result, error_kind, error_message, worker_id, \
         lease_until, idempotency_key, attempts, progress_done, progress_total"
    };
}

/// The columns a [`Run`] is read from, in the order [`read_run`](rows::read_run) expects.
const RUN_COLUMNS: &str = run_columns!();

pub mod statements;

mod open;
mod reads;
mod rows;
#[cfg(test)]
mod tests;
mod workers;
mod writer;
mod writes;

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
        runs: Vec<Renewal>,
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

    fn add_provision_token(&self, token: NewProvisionToken) -> BoxFuture<Result<()>> {
        self.write_one(move |conn| workers::add_provision_token(conn, &token))
    }

    fn register_worker(&self, registration: Registration) -> BoxFuture<Result<WorkerRecord>> {
        self.write(move |conn| workers::register_worker(conn, &registration))
    }

    fn worker_by_token(&self, token_hash: String) -> BoxFuture<Result<Option<WorkerRecord>>> {
        self.read(move |conn| workers::worker_by_token(conn, &token_hash))
    }

    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>> {
        self.read(move |conn| workers::workers(conn))
    }

    fn worker_seen(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<()>> {
        self.write_one(move |conn| workers::worker_seen(conn, &worker_id, now))
    }

    fn revoke_worker(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<Vec<Run>>> {
        self.write(move |conn| workers::revoke_worker(conn, &worker_id, now))
    }
}
