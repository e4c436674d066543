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
//! only itself, commits, and only then replies. If the commit fails, every
//! command of the batch gets the error. Because every write goes through this
//! one thread, two claimers can never claim the same run.
//!
//! Reads (`get`, `list`, `logs`) use separate read-only connections on the
//! blocking thread pool; under WAL they never wait for the writer.

use std::collections::HashMap;
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

use super::{
    ClaimRequest, Error, NewRun, Outcome, Page, Report, Result, RunFilter, Store, StoredLogLine, Submitted, illegal,
    is_active,
};
use crate::context::Level;
use crate::registry::{BoxFuture, ExecutorKind};
use crate::run::{Event, Run, RunError, RunId, RunStatus, Timestamp, transition};

/// The migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[("0001_runs", include_str!("../../migrations/sqlite/0001_runs.sql"))];

/// The most commands one group commit holds.
const BATCH_CAP: usize = 1024;
/// How many expired runs one rescue transaction handles.
const RESCUE_BATCH: usize = 500;
/// How many runs one prune transaction deletes.
const PRUNE_BATCH: usize = 1000;
/// How many idle read connections are kept.
const IDLE_READERS: usize = 4;
/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `list` returns this many runs unless told otherwise …
const DEFAULT_LIST_LIMIT: u32 = 50;
/// … and never more than this.
const MAX_LIST_LIMIT: u32 = 1000;
/// `logs` returns at most this many lines.
const MAX_LOG_LIMIT: u32 = 10_000;

/// The columns a [`Run`] is read from, in the order [`read_run`] expects.
const RUN_COLUMNS: &str = "id, task_title, payload, status, attempt, max_attempts, executor, priority, not_before, \
     timeout_ms, retry_delay_ms, created_at, started_at, finished_at, result, error_kind, error_message, worker_id, \
     lease_until, idempotency_key";

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
        let failed = |detail: String| Error::Database(format!("cannot open the database {}: {detail}", path.display()));
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| failed(e.to_string()))?;
        configure_writer(&conn).map_err(failed)?;
        migrate(&mut conn).map_err(failed)?;
        // Open one reader now, so a file that cannot be read fails here.
        let reader = open_reader(&path).map_err(failed)?;

        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("taskflow-sqlite-writer".to_owned())
            .spawn(move || write_loop(conn, &receiver))
            .map_err(|e| failed(format!("cannot start the writer thread: {e}")))?;
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
            .map_err(|e| Error::Database(format!("cannot create the data directory {}: {e}", dir.display())))?;
        SqliteStore::open(dir.join("taskflow.db"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `op` for the writer; resolves once its batch has committed.
    fn write<T, F>(&self, op: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.write(op).await })
    }

    /// Runs `op` on a read-only connection on the blocking thread pool.
    fn read<T, F>(&self, op: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.read(op))
                .await
                .map_err(|e| Error::Database(format!("a read of the database failed: {e}")))?
        })
    }
}

impl Inner {
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job { op: Some(Box::new(op)), outcome: None, reply };
        self.writer.as_ref().ok_or(Error::Closed)?.send(Box::new(job)).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn read<T>(&self, op: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(|detail| {
                Error::Database(format!("cannot open the database {} for reading: {detail}", self.path.display()))
            })?,
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
        self.write(move |conn| submit(conn, new, Timestamp::now()))
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
        self.write(move |conn| finish(conn, report))
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
                let batch = inner.write(move |conn| rescue_batch(conn, now)).await?;
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
                let deleted = inner.write(move |conn| prune_batch(conn, before)).await?;
                pruned += deleted as u64;
                if deleted < PRUNE_BATCH {
                    return Ok(pruned);
                }
            }
        })
    }

    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<()>> {
        if lines.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.write(move |conn| append_logs(conn, &lines))
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

fn configure_writer(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| format!("cannot set busy_timeout: {e}"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| format!("cannot switch to WAL mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("the database cannot use WAL mode (journal mode is `{mode}`)"));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(|e| format!("cannot set synchronous=FULL: {e}"))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| format!("cannot enable foreign keys: {e}"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Applies the migrations the database lacks, in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    // IMMEDIATE: a second process opening the same file waits here, then
    // sees the version the first one wrote.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot begin the migration: {e}"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(format!(
            "its schema version {version} is newer than this build of taskflow knows ({known}); upgrade taskflow"
        ));
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.execute_batch(sql).map_err(|e| format!("migration {name} failed: {e}"))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(|e| format!("cannot record migration {name}: {e}"))?;
    }
    tx.commit().map_err(|e| format!("cannot commit the migrations: {e}"))
}

fn open_reader(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| format!("cannot set busy_timeout: {e}"))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

// ---------------------------------------------------------------------------
// The writer and group commit

/// A queued write: runs inside its savepoint, answers after the commit.
trait Command: Send {
    /// Runs the command; returns whether it succeeded (its savepoint is
    /// released) or failed (its savepoint is rolled back).
    fn execute(&mut self, conn: &Connection) -> bool;
    /// Records a failure around the command (its savepoint).
    fn fail(&mut self, message: String);
    /// Sends the answer: the command's own outcome, or the batch's failure.
    fn reply(self: Box<Self>, batch_failure: Option<&str>);
}

type Op<T> = Box<dyn FnOnce(&Connection) -> Result<T> + Send>;

struct Job<T> {
    op: Option<Op<T>>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Command for Job<T> {
    fn execute(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else { return false };
        let outcome = catch_unwind(AssertUnwindSafe(|| op(conn)))
            .unwrap_or_else(|_| Err(Error::Database("internal error: a store command panicked".to_owned())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, message: String) {
        self.outcome = Some(Err(Error::Database(message)));
    }

    fn reply(self: Box<Self>, batch_failure: Option<&str>) {
        let outcome = match batch_failure {
            Some(message) => Err(Error::Database(message.to_owned())),
            None => self
                .outcome
                .unwrap_or_else(|| Err(Error::Database("internal error: a store command did not run".to_owned()))),
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
            command.reply(failure.as_deref());
        }
    }
}

/// Runs a batch in one transaction, each command in its own savepoint.
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Command>]) -> Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot begin a transaction: {e}"))?;
    for command in batch.iter_mut() {
        let mut savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(e) => {
                command.fail(format!("cannot create a savepoint: {e}"));
                continue;
            }
        };
        if command.execute(&savepoint) {
            if let Err(e) = savepoint.commit() {
                // Dropping the savepoint rolled it back.
                command.fail(format!("cannot release a savepoint: {e}"));
            }
        } else if let Err(e) = savepoint.rollback() {
            // The failed command's changes might survive: fail the batch.
            return Err(format!("cannot roll back a failed command: {e}"));
        }
    }
    tx.commit().map_err(|e| format!("cannot commit: {e}"))
}

// ---------------------------------------------------------------------------
// Writes (each runs inside its savepoint on the writer's connection)

fn submit(conn: &Connection, new: NewRun, now: Timestamp) -> Result<Submitted> {
    let unique_key = new.unique_key();
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
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE unique_key = ?1 AND status IN ('pending', 'running') \
             ORDER BY id LIMIT 1"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(db("cannot look up an active run"))?;
        let mut rows = stmt.query([&unique_key]).map_err(db("cannot look up an active run"))?;
        if let Some(row) = rows.next().map_err(db("cannot look up an active run"))? {
            return Ok(Submitted { run: read_run(row)?, created: false });
        }
    }

    let run = Run {
        id: RunId::new(),
        task_title: new.task_title,
        payload: new.payload,
        status: RunStatus::Pending,
        attempt: 1,
        // At least the one attempt it is about to get.
        max_attempts: new.max_attempts.max(1),
        executor: new.executor,
        priority: new.priority,
        not_before: new.not_before.unwrap_or(now),
        timeout_ms: new.timeout_ms,
        retry_delay_ms: new.retry_delay_ms,
        created_at: now,
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        worker_id: None,
        lease_until: None,
        idempotency_key: new.idempotency_key,
    };
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
             not_before, timeout_ms, retry_delay_ms, created_at, idempotency_key, unique_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .map_err(db("cannot insert a run"))?;
    stmt.execute(params![
        run.id.to_string(),
        run.task_title,
        run.payload.to_string(),
        run.status.as_str(),
        run.attempt,
        run.max_attempts,
        run.executor.as_str(),
        run.priority,
        run.not_before.0,
        run.timeout_ms.map(to_i64),
        to_i64(run.retry_delay_ms),
        run.created_at.0,
        run.idempotency_key,
        unique_key,
    ])
    .map_err(db("cannot insert a run"))?;
    Ok(Submitted { run, created: true })
}

fn claim(conn: &Connection, request: &ClaimRequest) -> Result<Vec<Run>> {
    let mut executors: Vec<ExecutorKind> = Vec::with_capacity(request.executors.len());
    for executor in &request.executors {
        if !executors.contains(executor) {
            executors.push(*executor);
        }
    }
    if executors.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    // Room left under each task's concurrency limit; full tasks are skipped
    // in the query, the others are capped while picking.
    let mut room: HashMap<&str, u32> = HashMap::new();
    for (title, limit) in &request.task_limits {
        let running: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_title = ?")
            .and_then(|mut statement| statement.query_row([title], |row| row.get(0)))
            .map_err(db("cannot count running runs of a task"))?;
        room.insert(title, limit.saturating_sub(u32::try_from(running).unwrap_or(u32::MAX)));
    }
    let full: Vec<&str> = room.iter().filter(|(_, left)| **left == 0).map(|(title, _)| *title).collect();
    let placeholders = vec!["?"; executors.len()].join(", ");
    let skip_full = if full.is_empty() {
        String::new()
    } else {
        format!(" AND task_title NOT IN ({})", vec!["?"; full.len()].join(", "))
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'pending' AND not_before <= ? AND executor IN ({placeholders}){skip_full} \
         ORDER BY priority DESC, not_before, id LIMIT ?"
    );
    let mut args = Vec::with_capacity(executors.len() + full.len() + 2);
    args.push(SqlValue::Integer(request.now.0));
    args.extend(executors.iter().map(|executor| SqlValue::Text(executor.as_str().to_owned())));
    args.extend(full.iter().map(|title| SqlValue::Text((*title).to_owned())));
    // Look a little further when limited tasks may have to be passed over.
    let window = if room.is_empty() { request.limit } else { request.limit.saturating_add(64) };
    args.push(SqlValue::Integer(i64::from(window)));
    let candidates = query_runs(conn, &sql, params_from_iter(args), "cannot select runs to claim")?;
    let mut runs = Vec::new();
    for run in candidates {
        if runs.len() >= request.limit as usize {
            break;
        }
        if let Some(left) = room.get_mut(run.task_title.as_str()) {
            if *left == 0 {
                continue;
            }
            *left -= 1;
        }
        runs.push(run);
    }

    let lease_until = request.now.plus(request.lease);
    for run in &mut runs {
        run.status = transition(run.status, Event::Claim).map_err(illegal(run.id))?;
        run.worker_id = Some(request.worker_id.clone());
        run.lease_until = Some(lease_until);
        run.started_at = Some(request.now);
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
    let Report { id, attempt, worker_id, outcome, now } = report;
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    let holds = run.status == RunStatus::Running
        && run.attempt == attempt
        && run.worker_id.as_deref() == Some(worker_id.as_str());
    if !holds {
        return Err(Error::StaleAttempt { id, attempt, worker_id });
    }
    match outcome {
        Outcome::Completed(value) => {
            run.status = transition(run.status, Event::Complete).map_err(illegal(id))?;
            run.result = Some(value);
            run.finished_at = Some(now);
        }
        Outcome::Failed { error, retry_at } => {
            let retry_at = retry_at.filter(|_| run.attempt < run.max_attempts);
            run.status = transition(run.status, Event::Fail { retry: retry_at.is_some() }).map_err(illegal(id))?;
            run.error = Some(error);
            match retry_at {
                Some(at) => {
                    run.attempt += 1;
                    run.not_before = at;
                }
                None => run.finished_at = Some(now),
            }
        }
        Outcome::Released => {
            run.status = transition(run.status, Event::Release).map_err(illegal(id))?;
        }
    }
    run.worker_id = None;
    run.lease_until = None;
    save(conn, &run)?;
    Ok(run)
}

fn cancel(conn: &Connection, id: RunId, now: Timestamp) -> Result<Run> {
    let mut run = load(conn, id)?.ok_or(Error::NotFound(id))?;
    run.status = transition(run.status, Event::Cancel).map_err(illegal(id))?;
    run.finished_at = Some(now);
    run.worker_id = None;
    run.lease_until = None;
    run.error = Some(RunError { kind: "cancelled".to_owned(), message: "cancelled on request".to_owned() });
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
        let retry = run.attempt < run.max_attempts;
        run.status = transition(run.status, Event::LeaseExpired { retry }).map_err(illegal(run.id))?;
        let worker = run.worker_id.take().unwrap_or_default();
        run.error = Some(RunError {
            kind: "lease_expired".to_owned(),
            message: format!("worker `{worker}` stopped renewing its lease"),
        });
        run.lease_until = None;
        if retry {
            run.attempt += 1;
            run.not_before = now;
        } else {
            run.finished_at = Some(now);
        }
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

fn append_logs(conn: &Connection, lines: &[(RunId, Timestamp, Level, String)]) -> Result<()> {
    let mut next = conn
        .prepare_cached("UPDATE runs SET log_count = log_count + 1 WHERE id = ?1 RETURNING log_count")
        .map_err(db("cannot append log lines"))?;
    let mut insert = conn
        .prepare_cached("INSERT INTO run_logs (run_id, seq, at, level, message) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db("cannot append log lines"))?;
    for (id, at, level, message) in lines {
        let id = id.to_string();
        let seq: Option<i64> =
            next.query_row([&id], |row| row.get(0)).optional().map_err(db("cannot append a log line"))?;
        // A line of an unknown (deleted) run is dropped.
        if let Some(seq) = seq {
            insert
                .execute(params![id, seq, at.0, level_name(*level), message])
                .map_err(db("cannot append a log line"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reads

fn load(conn: &Connection, id: RunId) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
    let mut runs = query_runs(conn, &sql, [id.to_string()], "cannot read a run")?;
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
        lines.push(StoredLogLine {
            run_id: id,
            seq: u64::try_from(seq).map_err(|_| corrupt(&run_id, "log sequence number", seq))?,
            at: Timestamp(at),
            level: parse_level(&level).ok_or_else(|| corrupt(&run_id, "log level", &level))?,
            message,
        });
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
    let mut stmt = conn
        .prepare_cached(
            "UPDATE runs SET status = ?2, attempt = ?3, not_before = ?4, started_at = ?5, finished_at = ?6, \
             result = ?7, error_kind = ?8, error_message = ?9, worker_id = ?10, lease_until = ?11 WHERE id = ?1",
        )
        .map_err(db("cannot update a run"))?;
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
    let get = |row: &Row<'_>| -> rusqlite::Result<RawRun> {
        Ok(RawRun {
            id: row.get(0)?,
            task_title: row.get(1)?,
            payload: row.get(2)?,
            status: row.get(3)?,
            attempt: row.get(4)?,
            max_attempts: row.get(5)?,
            executor: row.get(6)?,
            priority: row.get(7)?,
            not_before: row.get(8)?,
            timeout_ms: row.get(9)?,
            retry_delay_ms: row.get(10)?,
            created_at: row.get(11)?,
            started_at: row.get(12)?,
            finished_at: row.get(13)?,
            result: row.get(14)?,
            error_kind: row.get(15)?,
            error_message: row.get(16)?,
            worker_id: row.get(17)?,
            lease_until: row.get(18)?,
            idempotency_key: row.get(19)?,
        })
    };
    let raw = get(row).map_err(db("cannot read a run"))?;
    let id = raw.id.as_str();
    let json = |what: &str, text: &str| -> Result<Value> {
        serde_json::from_str(text).map_err(|e| corrupt(id, &format!("{what} (not valid JSON)"), e))
    };
    Ok(Run {
        id: raw.id.parse().map_err(|e: String| corrupt(id, "id", e))?,
        task_title: raw.task_title,
        payload: json("payload", &raw.payload)?,
        status: parse_status(id, &raw.status)?,
        attempt: u32::try_from(raw.attempt).map_err(|_| corrupt(id, "attempt", raw.attempt))?,
        max_attempts: u32::try_from(raw.max_attempts).map_err(|_| corrupt(id, "max_attempts", raw.max_attempts))?,
        executor: raw.executor.parse().map_err(|e: String| corrupt(id, "executor", e))?,
        priority: i32::try_from(raw.priority).map_err(|_| corrupt(id, "priority", raw.priority))?,
        not_before: Timestamp(raw.not_before),
        timeout_ms: raw
            .timeout_ms
            .map(|ms| u64::try_from(ms).map_err(|_| corrupt(id, "timeout_ms", ms)))
            .transpose()?,
        retry_delay_ms: u64::try_from(raw.retry_delay_ms)
            .map_err(|_| corrupt(id, "retry_delay_ms", raw.retry_delay_ms))?,
        created_at: Timestamp(raw.created_at),
        started_at: raw.started_at.map(Timestamp),
        finished_at: raw.finished_at.map(Timestamp),
        result: raw.result.as_deref().map(|text| json("result", text)).transpose()?,
        error: match (raw.error_kind, raw.error_message) {
            (None, None) => None,
            (kind, message) => Some(RunError { kind: kind.unwrap_or_default(), message: message.unwrap_or_default() }),
        },
        worker_id: raw.worker_id,
        lease_until: raw.lease_until.map(Timestamp),
        idempotency_key: raw.idempotency_key,
    })
}

/// A `runs` row as SQLite holds it, before validation.
struct RawRun {
    id: String,
    task_title: String,
    payload: String,
    status: String,
    attempt: i64,
    max_attempts: i64,
    executor: String,
    priority: i64,
    not_before: i64,
    timeout_ms: Option<i64>,
    retry_delay_ms: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    result: Option<String>,
    error_kind: Option<String>,
    error_message: Option<String>,
    worker_id: Option<String>,
    lease_until: Option<i64>,
    idempotency_key: Option<String>,
}

fn parse_status(id: &str, status: &str) -> Result<RunStatus> {
    status.parse().map_err(|e: String| corrupt(id, "status", e))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn parse_level(name: &str) -> Option<Level> {
    [Level::Debug, Level::Info, Level::Warn, Level::Error].into_iter().find(|level| level_name(*level) == name)
}

/// Milliseconds and counts above `i64::MAX` are stored as `i64::MAX`.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Maps a SQLite error to [`Error::Database`], saying what was being done.
fn db(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |error| Error::Database(format!("{context}: {error}"))
}

/// A stored value that does not make a valid run.
fn corrupt(id: &str, what: &str, detail: impl fmt::Display) -> Error {
    Error::Database(format!("run {id}: the stored {what} is invalid: {detail}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;
    use tempfile::TempDir;
    use tokio::task::JoinSet;

    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

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

    fn request(worker: &str, limit: u32, now: i64) -> ClaimRequest {
        ClaimRequest {
            worker_id: worker.to_owned(),
            limit,
            lease: LEASE,
            executors: vec![ExecutorKind::Thread],
            task_limits: Vec::new(),
            now: Timestamp(now),
        }
    }

    /// Submits a run and claims it for `worker` at `now`.
    async fn running(store: &SqliteStore, new: NewRun, worker: &str, now: i64) -> Run {
        let run = submit_new(store, new).await;
        let claimed = store.claim(request(worker, 1, now)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, run.id);
        claimed.into_iter().next().unwrap()
    }

    fn report(run: &Run, worker: &str, outcome: Outcome, now: i64) -> Report {
        Report { id: run.id, attempt: run.attempt, worker_id: worker.to_owned(), outcome, now: Timestamp(now) }
    }

    fn failure(message: &str) -> RunError {
        RunError { kind: "failed".to_owned(), message: message.to_owned() }
    }

    async fn get(store: &SqliteStore, id: RunId) -> Run {
        store.get(id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn submit_get_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let store = SqliteStore::open_in(&data_dir).unwrap();
        assert_eq!(store.path(), data_dir.join("taskflow.db"));

        let mut new = NewRun::new("add", json!({"a": 1, "b": [true, null, "x"]}));
        new.max_attempts = 3;
        new.executor = ExecutorKind::Process;
        new.priority = -7;
        new.not_before = Some(Timestamp(42));
        new.timeout_ms = Some(30_000);
        new.retry_delay_ms = 250;
        new.idempotency_key = Some("key-1".to_owned());
        let before = Timestamp::now();
        let run = submit_new(&store, new).await;
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!((run.attempt, run.max_attempts, run.priority), (1, 3, -7));
        assert_eq!(run.not_before, Timestamp(42));
        assert!(run.created_at >= before);
        assert_eq!(run.idempotency_key.as_deref(), Some("key-1"));
        assert_eq!(get(&store, run.id).await, run);
        assert_eq!(store.get(RunId::new()).await.unwrap(), None);

        // Without a `not_before`, a run may start at once.
        let plain = submit_new(&store, NewRun::new("add", json!({}))).await;
        assert_eq!(plain.not_before, plain.created_at);

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

    #[tokio::test]
    async fn de_duplication() {
        let (_dir, store) = fresh();
        let mut first = serde_json::Map::new();
        first.insert("a".to_owned(), json!(1));
        first.insert("b".to_owned(), json!({"y": 2, "x": 1}));
        let mut reordered = serde_json::Map::new();
        reordered.insert("b".to_owned(), json!({"x": 1, "y": 2}));
        reordered.insert("a".to_owned(), json!(1));
        assert_ne!(Value::Object(first.clone()).to_string(), Value::Object(reordered.clone()).to_string());

        let run = submit_new(&store, new_run("t", Value::Object(first.clone()))).await;
        let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.run, run);

        // Another task with the same payload is another run.
        submit_new(&store, new_run("other", Value::Object(first.clone()))).await;

        // Still de-duplicated while running; a new run once it finished.
        let claimed = store.claim(request("w", 1, 2_000)).await.unwrap();
        assert_eq!(claimed[0].id, run.id);
        let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
        assert_eq!((again.run.id, again.created), (run.id, false));
        store.finish(report(&claimed[0], "w", Outcome::Completed(json!(3)), 3_000)).await.unwrap();
        let fresh_run = submit_new(&store, new_run("t", Value::Object(reordered.clone()))).await;
        assert_ne!(fresh_run.id, run.id);

        // `unique: false` always creates.
        let mut not_unique = new_run("t", Value::Object(first));
        not_unique.unique = false;
        let other = submit_new(&store, not_unique).await;
        assert_ne!(other.id, fresh_run.id);
    }

    #[tokio::test]
    async fn idempotency_key() {
        let (_dir, store) = fresh();
        let keyed = |payload: Value| {
            let mut new = new_run("t", payload);
            new.idempotency_key = Some("k1".to_owned());
            new.unique = false;
            new
        };
        let run = submit_new(&store, keyed(json!({"a": 1, "b": 2}))).await;
        let again = store.submit(keyed(json!({"b": 2, "a": 1}))).await.unwrap();
        assert_eq!((again.run.clone(), again.created), (run.clone(), false));

        match store.submit(keyed(json!({"a": 2}))).await {
            Err(Error::IdempotencyConflict { key, existing }) => {
                assert_eq!((key.as_str(), existing), ("k1", run.id));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }

        // The key keeps its run after the run finished.
        store.cancel(run.id, Timestamp(5_000)).await.unwrap();
        let again = store.submit(keyed(json!({"a": 1, "b": 2}))).await.unwrap();
        assert_eq!((again.run.id, again.created), (run.id, false));
        assert_eq!(again.run.status, RunStatus::Cancelled);
    }

    #[tokio::test]
    async fn claim_order_and_limit() {
        let (_dir, store) = fresh();
        let with = |name: &str, priority: i32, not_before: i64| {
            let mut new = new_run(name, json!({}));
            new.priority = priority;
            new.not_before = Some(Timestamp(not_before));
            new
        };
        let low_old = submit_new(&store, with("low-old", 0, 1_000)).await;
        let low_new = submit_new(&store, with("low-new", 0, 2_000)).await;
        let high = submit_new(&store, with("high", 5, 3_000)).await;
        let future = submit_new(&store, with("future", 10, 9_000)).await;
        let mut docker = with("docker", 100, 1_000);
        docker.executor = ExecutorKind::Docker;
        let docker = submit_new(&store, docker).await;
        // Same priority and not_before: the older id first.
        let tie = submit_new(&store, with("tie", 0, 2_000)).await;

        let now = 5_000;
        let claimed = store.claim(request("w1", 2, now)).await.unwrap();
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [high.id, low_old.id]);
        for run in &claimed {
            assert_eq!(run.status, RunStatus::Running);
            assert_eq!(run.worker_id.as_deref(), Some("w1"));
            assert_eq!(run.lease_until, Some(Timestamp(now).plus(LEASE)));
            assert_eq!(run.started_at, Some(Timestamp(now)));
            assert_eq!(run.attempt, 1);
            assert_eq!(&get(&store, run.id).await, run);
        }

        let claimed = store.claim(request("w2", 10, now)).await.unwrap();
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [low_new.id, tie.id]);
        assert!(store.claim(request("w2", 10, now)).await.unwrap().is_empty());
        assert_eq!(get(&store, future.id).await.status, RunStatus::Pending);

        let mut docker_request = request("w3", 10, now);
        docker_request.executors = vec![ExecutorKind::Process, ExecutorKind::Docker, ExecutorKind::Docker];
        let claimed = store.claim(docker_request).await.unwrap();
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [docker.id]);

        // `not_before` equal to now may run.
        let claimed = store.claim(request("w4", 10, 9_000)).await.unwrap();
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [future.id]);
        assert!(store.claim(request("w4", 0, 9_000)).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claims_are_exclusive() {
        let (_dir, store) = fresh();
        let mut submits = JoinSet::new();
        for i in 0..1000 {
            let store = store.clone();
            submits.spawn(async move { store.submit(new_run("t", json!({ "i": i }))).await.unwrap().run.id });
        }
        let submitted: HashSet<RunId> = submits.join_all().await.into_iter().collect();
        assert_eq!(submitted.len(), 1000);

        let mut claimers = JoinSet::new();
        for worker in 0..8 {
            let store = store.clone();
            claimers.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim(request(&format!("w{worker}"), 7, 5_000)).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|run| run.id));
                }
            });
        }
        let all: Vec<RunId> = claimers.join_all().await.into_iter().flatten().collect();
        assert_eq!(all.len(), 1000, "each run claimed exactly once");
        assert_eq!(all.into_iter().collect::<HashSet<_>>(), submitted);
    }

    #[tokio::test]
    async fn finish_is_fenced() {
        let (_dir, store) = fresh();
        let run = running(&store, new_run("t", json!({})), "w1", 2_000).await;

        let mut wrong_attempt = report(&run, "w1", Outcome::Completed(json!(1)), 3_000);
        wrong_attempt.attempt = 2;
        let wrong_worker = report(&run, "w2", Outcome::Completed(json!(1)), 3_000);
        for stale in [wrong_attempt, wrong_worker] {
            match store.finish(stale).await {
                Err(Error::StaleAttempt { id, .. }) => assert_eq!(id, run.id),
                other => panic!("expected a stale attempt, got {other:?}"),
            }
            assert_eq!(get(&store, run.id).await, run, "a stale report changes nothing");
        }

        let done = store.finish(report(&run, "w1", Outcome::Completed(json!({"sum": 3})), 3_000)).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(done.result, Some(json!({"sum": 3})));
        assert_eq!(done.finished_at, Some(Timestamp(3_000)));
        assert_eq!((done.worker_id.clone(), done.lease_until), (None, None));
        assert_eq!(get(&store, run.id).await, done);

        let late = report(&run, "w1", Outcome::Failed { error: failure("late"), retry_at: None }, 4_000);
        assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
        assert_eq!(get(&store, run.id).await, done);

        let mut unknown = report(&run, "w1", Outcome::Released, 4_000);
        unknown.id = RunId::new();
        assert!(matches!(store.finish(unknown).await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn retry_then_fail_at_max_attempts() {
        let (_dir, store) = fresh();
        let mut new = new_run("t", json!({}));
        new.max_attempts = 2;
        let run = running(&store, new, "w1", 2_000).await;

        let retry_at = Timestamp(10_000);
        let failed = Outcome::Failed { error: failure("boom"), retry_at: Some(retry_at) };
        let retried = store.finish(report(&run, "w1", failed, 3_000)).await.unwrap();
        assert_eq!(retried.status, RunStatus::Pending);
        assert_eq!(retried.attempt, 2);
        assert_eq!(retried.not_before, retry_at);
        assert_eq!(retried.error, Some(failure("boom")));
        assert_eq!((retried.worker_id.clone(), retried.lease_until, retried.finished_at), (None, None, None));
        assert_eq!(get(&store, run.id).await, retried);

        assert!(store.claim(request("w2", 1, 9_999)).await.unwrap().is_empty(), "not before the back-off");
        let second = store.claim(request("w2", 1, 10_000)).await.unwrap().remove(0);
        assert_eq!((second.id, second.attempt), (run.id, 2));

        let failed = Outcome::Failed { error: failure("again"), retry_at: Some(Timestamp(20_000)) };
        let done = store.finish(report(&second, "w2", failed, 11_000)).await.unwrap();
        assert_eq!(done.status, RunStatus::Failed);
        assert_eq!(done.attempt, 2);
        assert_eq!(done.finished_at, Some(Timestamp(11_000)));
        assert_eq!(done.error, Some(failure("again")));
        assert_eq!(get(&store, run.id).await, done);

        // No `retry_at` means no retry, attempts left or not.
        let mut new = new_run("u", json!({}));
        new.max_attempts = 5;
        let run = running(&store, new, "w1", 2_000).await;
        let failed = Outcome::Failed { error: failure("fatal"), retry_at: None };
        let done = store.finish(report(&run, "w1", failed, 3_000)).await.unwrap();
        assert_eq!((done.status, done.attempt), (RunStatus::Failed, 1));
    }

    #[tokio::test]
    async fn release_gives_the_run_back() {
        let (_dir, store) = fresh();
        let run = running(&store, new_run("t", json!({})), "w1", 2_000).await;
        let released = store.finish(report(&run, "w1", Outcome::Released, 3_000)).await.unwrap();
        assert_eq!(released.status, RunStatus::Pending);
        assert_eq!(released.attempt, 1);
        assert_eq!((released.worker_id.clone(), released.lease_until), (None, None));
        assert_eq!(get(&store, run.id).await, released);
        let again = store.claim(request("w2", 1, 3_000)).await.unwrap().remove(0);
        assert_eq!((again.id, again.attempt, again.worker_id.as_deref()), (run.id, 1, Some("w2")));
    }

    #[tokio::test]
    async fn cancel_pending_and_running() {
        let (_dir, store) = fresh();
        let pending = submit_new(&store, new_run("pending", json!({}))).await;
        let cancelled = store.cancel(pending.id, Timestamp(2_000)).await.unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled);
        assert_eq!(cancelled.finished_at, Some(Timestamp(2_000)));
        let expected = RunError { kind: "cancelled".to_owned(), message: "cancelled on request".to_owned() };
        assert_eq!(cancelled.error, Some(expected));
        assert_eq!(get(&store, pending.id).await, cancelled);

        let run = running(&store, new_run("running", json!({})), "w1", 2_000).await;
        let cancelled = store.cancel(run.id, Timestamp(3_000)).await.unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled);
        assert_eq!((cancelled.worker_id.clone(), cancelled.lease_until), (None, None));
        // The worker's late report is refused.
        let late = report(&run, "w1", Outcome::Completed(json!(1)), 4_000);
        assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
        assert_eq!(store.heartbeat("w1".to_owned(), vec![(run.id, 1)], Timestamp(9_000)).await.unwrap(), [run.id]);

        let done = running(&store, new_run("done", json!({})), "w1", 2_000).await;
        let done = store.finish(report(&done, "w1", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
        match store.cancel(done.id, Timestamp(4_000)).await {
            Err(Error::IllegalTransition { id, source }) => {
                assert_eq!((id, source.from, source.event), (done.id, RunStatus::Completed, Event::Cancel));
            }
            other => panic!("expected an illegal transition, got {other:?}"),
        }
        assert_eq!(get(&store, done.id).await, done);
        assert!(matches!(store.cancel(RunId::new(), Timestamp(4_000)).await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn delete_needs_force_for_active_runs() {
        let (_dir, store) = fresh();
        let run = running(&store, new_run("running", json!({})), "w1", 2_000).await;
        let pending = submit_new(&store, new_run("pending", json!({}))).await;
        store.append_logs(vec![(run.id, Timestamp(2_100), Level::Info, "hello".to_owned())]).await.unwrap();
        for active in [pending.id, run.id] {
            assert!(matches!(store.delete(active, false).await, Err(Error::Active(id)) if id == active));
            assert!(store.get(active).await.unwrap().is_some());
        }
        store.delete(run.id, true).await.unwrap();
        assert_eq!(store.get(run.id).await.unwrap(), None);
        assert!(store.logs(run.id, 0, 100).await.unwrap().is_empty());
        assert!(matches!(store.delete(run.id, true).await, Err(Error::NotFound(id)) if id == run.id));

        store.cancel(pending.id, Timestamp(3_000)).await.unwrap();
        store.delete(pending.id, false).await.unwrap();
        assert_eq!(store.get(pending.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn heartbeat_renews_and_reports_lost_runs() {
        let (_dir, store) = fresh();
        let kept = running(&store, new_run("kept", json!({})), "w1", 2_000).await;
        let cancelled = running(&store, new_run("cancelled", json!({})), "w1", 2_000).await;
        store.cancel(cancelled.id, Timestamp(2_500)).await.unwrap();
        let unknown = RunId::new();

        let until = Timestamp(60_000);
        let lost =
            store.heartbeat("w1".to_owned(), vec![(kept.id, 1), (cancelled.id, 1), (unknown, 1)], until).await.unwrap();
        assert_eq!(lost, [cancelled.id, unknown]);
        assert_eq!(get(&store, kept.id).await.lease_until, Some(until));

        // Another worker, or another attempt, renews nothing.
        let lost = store.heartbeat("w2".to_owned(), vec![(kept.id, 1)], Timestamp(90_000)).await.unwrap();
        assert_eq!(lost, [kept.id]);
        let lost = store.heartbeat("w1".to_owned(), vec![(kept.id, 2)], Timestamp(90_000)).await.unwrap();
        assert_eq!(lost, [kept.id]);
        assert_eq!(get(&store, kept.id).await.lease_until, Some(until));
    }

    #[tokio::test]
    async fn rescue_boundaries() {
        let (_dir, store) = fresh();
        let with_attempts = |name: &str, max_attempts: u32| {
            let mut new = new_run(name, json!({}));
            new.max_attempts = max_attempts;
            new
        };
        let before = running(&store, with_attempts("before", 3), "w1", 2_000).await;
        let at = running(&store, with_attempts("at", 3), "w1", 2_000).await;
        let after = running(&store, with_attempts("after", 3), "w1", 2_000).await;
        let last = running(&store, with_attempts("last", 1), "w2", 2_000).await;
        let now = 50_000;
        for (run, until) in [(&before, now - 1), (&at, now), (&after, now + 1), (&last, now - 10)] {
            let worker = run.worker_id.clone().unwrap();
            assert!(store.heartbeat(worker, vec![(run.id, 1)], Timestamp(until)).await.unwrap().is_empty());
        }

        let rescued = store.rescue_expired(Timestamp(now)).await.unwrap();
        let rescued_ids: HashSet<RunId> = rescued.iter().map(|r| r.id).collect();
        assert_eq!(rescued_ids, HashSet::from([before.id, last.id]));

        let requeued = get(&store, before.id).await;
        assert_eq!(requeued.status, RunStatus::Pending);
        assert_eq!(requeued.attempt, 2);
        assert_eq!(requeued.not_before, Timestamp(now));
        assert_eq!((requeued.worker_id.clone(), requeued.lease_until, requeued.finished_at), (None, None, None));
        let error = requeued.error.clone().unwrap();
        assert_eq!(error.kind, "lease_expired");
        assert_eq!(error.message, "worker `w1` stopped renewing its lease");
        assert!(rescued.contains(&requeued));

        let failed = get(&store, last.id).await;
        assert_eq!((failed.status, failed.attempt), (RunStatus::Failed, 1));
        assert_eq!(failed.finished_at, Some(Timestamp(now)));
        assert_eq!(failed.error.unwrap().message, "worker `w2` stopped renewing its lease");

        for untouched in [&at, &after] {
            let current = get(&store, untouched.id).await;
            assert_eq!(current.status, RunStatus::Running);
            assert_eq!(current.attempt, 1);
        }
        assert!(store.rescue_expired(Timestamp(now)).await.unwrap().is_empty());

        // The old worker cannot report the rescued attempt.
        let late = report(&before, "w1", Outcome::Completed(json!(1)), now + 5);
        assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
    }

    #[tokio::test]
    async fn rescue_handles_more_than_a_batch() {
        let (_dir, store) = fresh();
        let count = RESCUE_BATCH * 2 + 3;
        let mut submits = JoinSet::new();
        for i in 0..count {
            let store = store.clone();
            submits.spawn(async move {
                let mut new = new_run("t", json!({ "i": i }));
                new.max_attempts = 2;
                store.submit(new).await.unwrap()
            });
        }
        submits.join_all().await;
        let claimed = store.claim(request("w1", u32::MAX, 2_000)).await.unwrap();
        assert_eq!(claimed.len(), count);

        let expired = Timestamp(2_000).plus(LEASE).plus(Duration::from_millis(1));
        let rescued = store.rescue_expired(expired).await.unwrap();
        assert_eq!(rescued.len(), count);
        assert_eq!(rescued.iter().map(|r| r.id).collect::<HashSet<_>>().len(), count);
        assert!(rescued.iter().all(|r| r.status == RunStatus::Pending && r.attempt == 2));
        let filter = RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() };
        assert_eq!(store.list(filter).await.unwrap().total, 0);
    }

    #[tokio::test]
    async fn prune_keeps_active_runs() {
        let (_dir, store) = fresh();
        let active = running(&store, new_run("running", json!({})), "w1", 2_000).await;
        let completed = running(&store, new_run("completed", json!({})), "w1", 2_000).await;
        let pending = submit_new(&store, new_run("pending", json!({}))).await;
        store.finish(report(&completed, "w1", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
        store.append_logs(vec![(completed.id, Timestamp(2_500), Level::Info, "done".to_owned())]).await.unwrap();
        let cancelled = submit_new(&store, new_run("cancelled", json!({}))).await;
        store.cancel(cancelled.id, Timestamp(5_000)).await.unwrap();

        assert_eq!(store.prune(Timestamp(3_000)).await.unwrap(), 0, "finished exactly at `before` stays");
        assert_eq!(store.prune(Timestamp(3_001)).await.unwrap(), 1);
        assert_eq!(store.get(completed.id).await.unwrap(), None);
        assert!(store.logs(completed.id, 0, 100).await.unwrap().is_empty());
        assert!(store.get(cancelled.id).await.unwrap().is_some());

        assert_eq!(store.prune(Timestamp(i64::MAX)).await.unwrap(), 1);
        assert_eq!(store.get(cancelled.id).await.unwrap(), None);
        assert_eq!(get(&store, pending.id).await.status, RunStatus::Pending);
        assert_eq!(get(&store, active.id).await.status, RunStatus::Running);
    }

    #[tokio::test]
    async fn log_sequence_numbers() {
        let (_dir, store) = fresh();
        let a = submit_new(&store, new_run("a", json!({}))).await;
        let b = submit_new(&store, new_run("b", json!({}))).await;
        let line = |id: RunId, at: i64, level: Level, text: &str| (id, Timestamp(at), level, text.to_owned());
        store
            .append_logs(vec![
                line(a.id, 1, Level::Debug, "a1"),
                line(b.id, 2, Level::Info, "b1"),
                line(RunId::new(), 3, Level::Info, "dropped"),
                line(a.id, 4, Level::Warn, "a2"),
                line(a.id, 5, Level::Error, "a3"),
            ])
            .await
            .unwrap();
        store.append_logs(vec![line(a.id, 6, Level::Info, "a4"), line(b.id, 7, Level::Info, "b2")]).await.unwrap();
        store.append_logs(Vec::new()).await.unwrap();

        let all = store.logs(a.id, 0, 100).await.unwrap();
        let seen: Vec<_> = all.iter().map(|l| (l.seq, l.at.0, l.level, l.message.as_str())).collect();
        assert_eq!(
            seen,
            [
                (1, 1, Level::Debug, "a1"),
                (2, 4, Level::Warn, "a2"),
                (3, 5, Level::Error, "a3"),
                (4, 6, Level::Info, "a4")
            ]
        );
        assert!(all.iter().all(|l| l.run_id == a.id));
        let page: Vec<u64> = store.logs(a.id, 1, 2).await.unwrap().iter().map(|l| l.seq).collect();
        assert_eq!(page, [2, 3]);
        assert!(store.logs(a.id, 4, 100).await.unwrap().is_empty());
        let b_lines: Vec<_> = store.logs(b.id, 0, 100).await.unwrap().into_iter().map(|l| (l.seq, l.message)).collect();
        assert_eq!(b_lines, [(1, "b1".to_owned()), (2, "b2".to_owned())]);
    }

    #[tokio::test]
    async fn list_filters_and_pages() {
        let (_dir, store) = fresh();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(submit_new(&store, new_run(if i % 2 == 0 { "even" } else { "odd" }, json!({ "i": i }))).await.id);
        }
        store.cancel(ids[0], Timestamp(2_000)).await.unwrap();

        let page = store.list(RunFilter::default()).await.unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());

        let mut filter =
            RunFilter { task_title: Some("even".to_owned()), limit: Some(1), offset: Some(1), ..RunFilter::default() };
        let page = store.list(filter.clone()).await.unwrap();
        assert_eq!((page.total, page.items.len()), (3, 1));
        assert_eq!(page.items[0].id, ids[2]);

        filter.status = Some(RunStatus::Pending);
        filter.offset = None;
        filter.limit = Some(10);
        let page = store.list(filter).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[4], ids[2]]);
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors() {
        let (dir, store) = fresh();
        let run = submit_new(&store, new_run("t", json!({}))).await;
        let raw = Connection::open(dir.path().join("taskflow.db")).unwrap();
        raw.execute("UPDATE runs SET payload = '{not json' WHERE id = ?1", [run.id.to_string()]).unwrap();
        drop(raw);
        match store.get(run.id).await {
            Err(Error::Database(message)) => assert!(message.contains("payload"), "{message}"),
            other => panic!("expected a database error, got {other:?}"),
        }
        // The writer reports it too, and keeps going.
        assert!(matches!(store.cancel(run.id, Timestamp(2_000)).await, Err(Error::Database(_))));
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
        (Box::new(Job { op: Some(Box::new(op)), outcome: None, reply }), answer)
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
        assert_eq!(failure, None);
        for command in batch {
            command.reply(None);
        }
        assert!(first_answer.await.unwrap().unwrap().created);
        assert!(matches!(missing_answer.await.unwrap(), Err(Error::NotFound(_))));
        assert!(matches!(partial_answer.await.unwrap(), Err(Error::Closed)));
        assert!(matches!(panics_answer.await.unwrap(), Err(Error::Database(m)) if m.contains("panicked")));
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
        assert!(failure.as_deref().is_some_and(|m| m.contains("commit")), "{failure:?}");
        for command in batch {
            command.reply(failure.as_deref());
        }
        assert!(matches!(good_answer.await.unwrap(), Err(Error::Database(m)) if m.contains("commit")));
        assert!(matches!(bad_answer.await.unwrap(), Err(Error::Database(_))));
        assert_eq!(count_runs(&conn), 0);

        // The connection is usable again.
        let (again, again_answer) = job(|conn| submit(conn, new_run("a", json!({})), Timestamp(1)));
        let mut batch = vec![again];
        assert_eq!(run_batch(&mut conn, &mut batch).err(), None);
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
