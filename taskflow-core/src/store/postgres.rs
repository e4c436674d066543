//! The PostgreSQL store: one database shared by several servers.
//!
//! # Durability
//!
//! Every write is acknowledged only after its `COMMIT`; with the server's
//! default `synchronous_commit = on` the commit is flushed to the server's
//! write-ahead log first. Submits and finishes that arrive together are
//! written by one statement ([`group_commit`]); the other writes are one
//! transaction each.
//!
//! # Concurrency
//!
//! Any number of processes may share the database. Claims and rescues select
//! their rows `FOR UPDATE SKIP LOCKED`, so claimers never wait for each other
//! and never take the same run; `cancel` and `delete` lock the row they
//! change, and a finish updates its run only if the run is still held by
//! the reporting attempt (a compare-and-set), so a stale report or a cancel
//! racing a claim sees the row as the other left it. The writes that lock
//! several rows of a kind (`heartbeat`, `append_logs`) lock them in id
//! order, so writers do not deadlock. Two equal submits racing each other meet on a unique
//! index (`ON CONFLICT DO NOTHING`) and the loser looks again and finds the
//! winner's run.
//!
//! # Change notifications
//!
//! Every transaction that creates, changes or deletes runs calls
//! `pg_notify('taskflow_runs', '<origin> <id>:<status> …')`, a notification
//! per hundred runs; PostgreSQL delivers them at commit. `<origin>` is
//! random per [`PostgresStore::connect`], so a server tells its own changes
//! from others' ([`Change::own`]). A listener task holds one extra
//! connection with `LISTEN taskflow_runs` and forwards the changes to
//! [`Store::changes`] receivers, reconnecting when the connection drops.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx_core::Url;
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::query::Query;
use sqlx_core::query_scalar::query_scalar;
use sqlx_core::row::Row;
use sqlx_postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow, PgTransaction, Postgres,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::group_commit::GroupCommit;
use super::row::{RawRun, corrupt, level_name, log_line, parse_status, read_raw_run, to_i64};
use super::{
    Change, ClaimRequest, DEFAULT_LIST_LIMIT, DatabaseError, DatabaseErrorKind, Error, MAX_LIST_LIMIT, MAX_LOG_LIMIT,
    NewRun, Page, Report, Result, RunFilter, Store, StoredLogLine, Submitted, apply, is_active,
};
use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::{Run, RunId, RunStatus, Timestamp};

mod group_commit;

/// The migrations, in order: version, name, SQL.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "0001_runs", include_str!("../../migrations/postgres/0001_runs.sql"))];
/// The advisory lock that serializes migrations ("taskflow" in ASCII).
const MIGRATION_LOCK: i64 = 0x7461_736b_666c_6f77;
/// The class of the advisory locks that serialize claims of a task with a
/// concurrency limit (the second key is the hash of the task's title).
const TASK_LIMIT_LOCKS: i32 = 0x7466_6c63; // "tflc"
/// The `LISTEN`/`NOTIFY` channel of run changes.
const CHANNEL: &str = "taskflow_runs";
/// How long `connect` waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections the pool opens (the listener has its own).
const MAX_CONNECTIONS: u32 = 10;
/// How long a write waits for a free connection of the pool: short, so
/// that with the database unreachable a request fails soon (503, retry)
/// instead of holding its client for half a minute.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long PostgreSQL lets a session sit idle inside a transaction before it
/// ends the session. Our transactions never wait on anything but the
/// database, so such a gap means the client froze (`SIGSTOP`, a suspended
/// VM) while holding row locks: without the limit a frozen worker's
/// heartbeat would keep its runs locked and no one could rescue them.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";
/// How many runs one notification announces: a payload must stay under
/// PostgreSQL's 8000 bytes, and each run takes at most 48.
const NOTIFY_CHUNK: usize = 100;
/// The status a deleted run is announced with.
const DELETED: &str = "deleted";
/// How many changes a slow [`Store::changes`] receiver may fall behind.
const CHANGES_CAPACITY: usize = 4096;
/// The listener's wait before reconnecting: first, and at most.
const LISTEN_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How often a submit looks again after losing a race on a unique index.
const SUBMIT_ROUNDS: usize = 8;
/// The name of every test database starts with this.
const TEST_DATABASE_PREFIX: &str = "tf_test_";
/// Test databases older than this are left-overs.
const TEST_DATABASE_LIFETIME: Duration = Duration::from_secs(3600);
/// How many expired runs one rescue transaction handles.
const RESCUE_BATCH: usize = 500;
/// How many runs one prune transaction deletes.
const PRUNE_BATCH: u64 = 1000;

/// The columns a [`Run`] is read from, in the order [`read_run`] expects.
/// `id` and `priority` come out converted (text, bigint) under their own
/// names: a query selecting these orders by `taskflow_runs.id` and
/// `taskflow_runs.priority`, or it would sort the converted values instead
/// of reading the indexes in order.
const RUN_COLUMNS: &str = "id::text, task_title, payload::text, status, attempt, max_attempts, executor, \
     priority::bigint, not_before, timeout_ms, retry_delay_ms, created_at, started_at, finished_at, result::text, \
     error_kind, error_message, worker_id, lease_until, idempotency_key";

/// The store for several servers sharing one PostgreSQL database (feature
/// `postgres`).
///
/// **Durability**: every write is acknowledged after its commit; submits and
/// finishes arriving together share a transaction (group commit).
///
/// **Concurrency**: any number of processes may share the database; claims
/// use `FOR UPDATE SKIP LOCKED`, so a run is never claimed twice, and equal
/// submits racing each other make one run.
///
/// **Changes**: [`Store::changes`] yields the runs changed by any
/// process using the database (this one included), through PostgreSQL's
/// `LISTEN`/`NOTIFY`.
///
/// Cloning is cheap (the handles share one pool). The listener task ends
/// when the last handle is dropped. Created inside a Tokio runtime.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Heartbeats' own connection: a burst of slow writes holding every
    /// connection of `pool` must not delay lease renewals until the leases
    /// expire and their runs execute twice.
    leases: PgPool,
    shared: Arc<Shared>,
}

struct Shared {
    /// The URL without its password.
    url: String,
    /// Marks the changes this store announces (see [`notify`]).
    origin: Arc<str>,
    changes: broadcast::Sender<Change>,
    listener: JoinHandle<()>,
    /// Submits and finishes, written in batches.
    batches: GroupCommit,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.shared.url).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url`
    /// (`postgres://user:password@host:port/database`), applies the
    /// migrations it lacks and starts listening for changes.
    ///
    /// Several servers may connect at once: migrations run in a transaction
    /// under an advisory lock. Errors name the URL without its password.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let shown = redact_url(url);
        let failed = |detail: String| Error::other(format!("cannot connect to PostgreSQL at {shown}: {detail}"));
        let expected = "expected postgres://user:password@host:port/database";
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(failed(format!("the URL is not a PostgreSQL URL; {expected}")));
        }
        let options: PgConnectOptions =
            url.parse().map_err(|e| failed(format!("the URL is invalid ({e}); {expected}")))?;
        let options = options
            .application_name("taskflow")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);

        // One connection first: a pool would retry a refused connection
        // until its timeout and then say only that it timed out.
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(db(format!(
                    "cannot connect to PostgreSQL at {shown}; check that the server is running and accepts \
                     connections at that host and port, and the user name, password and database name"
                ))(e));
            }
            Err(_) => {
                return Err(Error::Database(DatabaseError::new(
                    DatabaseErrorKind::Unavailable,
                    format!(
                        "cannot connect to PostgreSQL at {shown}: no answer within {}s; check the host and port, \
                         and that no firewall is in the way",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )));
            }
        };
        migrate(&mut conn).await.map_err(|e| e.within(format_args!("cannot prepare {shown}")))?;
        let _ = conn.close().await;

        // The listener keeps its own connection, for as long as it lives.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options.clone());
        let listener = listen(&listener_pool).await.map_err(|e| failed(format!("cannot listen for changes: {e}")))?;
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        // Tells this handle's own announcements from other connections'.
        let origin: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
        let listener = tokio::spawn(forward_changes(listener_pool, listener, origin.clone(), changes.clone()));

        let leases =
            PgPoolOptions::new().max_connections(1).acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with(options.clone());
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let batches = GroupCommit::start(pool.clone(), origin.clone());
        Ok(PostgresStore { pool, leases, shared: Arc::new(Shared { url: shown, origin, changes, listener, batches }) })
    }

    /// The database's URL, without its password.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Test support, not a stable API: creates an empty database
    /// `tf_test_<UUIDv7>` on the server at `server` and returns its URL.
    /// Test databases older than an hour (left by test runs that were killed
    /// or did not drop theirs) are dropped on the way.
    #[doc(hidden)]
    pub async fn create_test_database(server: &str) -> Result<String> {
        let shown = redact_url(server);
        let failed = |e: sqlx_core::Error| db(format!("cannot create a test database on {shown}"))(e);
        let mut url = Url::parse(server).map_err(|e| failed(sqlx_core::Error::Configuration(e.into())))?;
        let mut admin = PgConnection::connect(server).await.map_err(failed)?;
        let existing: Vec<String> = query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'tf\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .map_err(failed)?;
        let stale = Timestamp::now().millis() - i64::try_from(TEST_DATABASE_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        for name in existing.iter().filter(|name| test_database_created(name).is_some_and(|at| at < stale)) {
            // Best effort: another test run may be sweeping too.
            let _ = admin.execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
        let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::now_v7().simple());
        admin.execute(&*format!("CREATE DATABASE {name}")).await.map_err(failed)?;
        let _ = admin.close().await;
        url.set_path(&name);
        Ok(url.to_string())
    }

    /// Test support, not a stable API: drops the test database at `url`
    /// (made by [`create_test_database`](Self::create_test_database) on
    /// `server`), ending the connections still open to it.
    #[doc(hidden)]
    pub async fn drop_test_database(server: &str, url: &str) -> Result<()> {
        let name = Url::parse(url).ok().map(|url| url.path().trim_start_matches('/').to_owned()).unwrap_or_default();
        if test_database_created(&name).is_none() {
            return Err(Error::other(format!("{} is not a test database", redact_url(url))));
        }
        let failed = |e: sqlx_core::Error| db(format!("cannot drop the test database {name}"))(e);
        let mut admin = PgConnection::connect(server).await.map_err(failed)?;
        admin.execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(failed)?;
        let _ = admin.close().await;
        Ok(())
    }

    /// Runs `op` on the pool; `op` gets an owned handle to it, and the origin
    /// its announcements carry.
    fn with_pool<T, F>(&self, op: impl FnOnce(PgPool, Arc<str>) -> F + Send + 'static) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        Box::pin(op(self.pool.clone(), self.shared.origin.clone()))
    }
}

impl Store for PostgresStore {
    fn submit(&self, mut new: NewRun) -> BoxFuture<Result<Submitted>> {
        // Not claimed at its submit (yet): the run is stored pending and the
        // engine, seeing that, claims it the usual way.
        new.claim = None;
        if new.idempotency_key.is_none() {
            let shared = self.shared.clone();
            return Box::pin(async move { shared.batches.submit(new).await });
        }
        self.with_pool(move |pool, origin| async move { submit(&pool, &origin, new, Timestamp::now()).await })
    }

    fn claim(&self, request: ClaimRequest) -> BoxFuture<Result<Vec<Run>>> {
        self.with_pool(move |pool, origin| async move { claim(&pool, &origin, &request).await })
    }

    fn heartbeat(
        &self,
        worker_id: String,
        runs: Vec<(RunId, u32)>,
        lease_until: Timestamp,
    ) -> BoxFuture<Result<Vec<RunId>>> {
        let leases = self.leases.clone();
        Box::pin(async move { heartbeat(&leases, &worker_id, &runs, lease_until).await })
    }

    fn finish(&self, report: Report) -> BoxFuture<Result<Run>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.batches.finish(report).await })
    }

    fn cancel(&self, id: RunId, now: Timestamp) -> BoxFuture<Result<Run>> {
        self.with_pool(move |pool, origin| async move { cancel(&pool, &origin, id, now).await })
    }

    fn delete(&self, id: RunId, force: bool) -> BoxFuture<Result<()>> {
        self.with_pool(move |pool, origin| async move { delete(&pool, &origin, id, force).await })
    }

    fn rescue_expired(&self, now: Timestamp) -> BoxFuture<Result<Vec<Run>>> {
        // One transaction per batch, so a large rescue holds few locks at a
        // time; each batch leaves fewer expired runs, so this ends.
        self.with_pool(move |pool, origin| async move {
            let mut rescued = Vec::new();
            loop {
                let batch = rescue_batch(&pool, &origin, now).await?;
                let done = batch.len() < RESCUE_BATCH;
                rescued.extend(batch);
                if done {
                    return Ok(rescued);
                }
            }
        })
    }

    fn prune(&self, before: Timestamp) -> BoxFuture<Result<u64>> {
        self.with_pool(move |pool, _| async move {
            let mut pruned = 0;
            loop {
                let deleted = prune_batch(&pool, before).await?;
                pruned += deleted;
                if deleted < PRUNE_BATCH {
                    return Ok(pruned);
                }
            }
        })
    }

    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<Vec<StoredLogLine>>> {
        self.with_pool(move |pool, _| async move {
            // Locks are taken in id order everywhere, but a plan may still
            // touch rows in another; PostgreSQL then aborts one transaction
            // as a deadlock, and log lines are worth another try.
            let mut tries = 0;
            loop {
                match append_logs(&pool, lines.clone()).await {
                    Err(error) if error.database_kind() == Some(DatabaseErrorKind::Deadlock) && tries < 3 => tries += 1,
                    other => return other,
                }
            }
        })
    }

    fn get(&self, id: RunId) -> BoxFuture<Result<Option<Run>>> {
        self.with_pool(move |pool, _| async move {
            let mut conn = pool.acquire().await.map_err(db("cannot read a run"))?;
            load(&mut conn, id, "").await
        })
    }

    fn list(&self, filter: RunFilter) -> BoxFuture<Result<Page<Run>>> {
        self.with_pool(move |pool, _| async move { list(&pool, filter).await })
    }

    fn logs(&self, id: RunId, after: u64, limit: u32) -> BoxFuture<Result<Vec<StoredLogLine>>> {
        self.with_pool(move |pool, _| async move { logs(&pool, id, after, limit).await })
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.shared.changes.subscribe())
    }
}

// ---------------------------------------------------------------------------
// Connecting

/// When a test database named `tf_test_<UUIDv7>` was created (the UUID's
/// first 48 bits), in milliseconds since the epoch; `None` for other names.
fn test_database_created(name: &str) -> Option<i64> {
    let id = name.strip_prefix(TEST_DATABASE_PREFIX)?;
    let id = uuid::Uuid::try_parse(id).ok().filter(|id| id.get_version_num() == 7)?;
    let bytes = id.as_bytes();
    Some(bytes[..6].iter().fold(0, |millis, byte| millis << 8 | i64::from(*byte)))
}

/// `url` with its password (in the user part or a `password` parameter)
/// replaced by `***`, fit for messages and logs:
/// `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    // Not a URL, or one without an authority (`user:secret@host/db` parses
    // as the scheme `user` and an opaque path, so nothing marks the secret as
    // a password): show it only if it cannot hold a password.
    let parsed = Url::parse(url).ok().filter(|parsed| !parsed.cannot_be_a_base());
    let Some(mut parsed) = parsed else {
        return if url.contains('@') || url.contains("password") {
            "(a URL that does not parse, not shown because it may hold a password)".to_owned()
        } else {
            url.to_owned()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" { "***".to_owned() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Applies the migrations the database lacks, in one transaction, under an
/// advisory lock: a second server starting at the same time waits, then
/// finds them applied.
async fn migrate(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await.map_err(db("cannot begin the migration"))?;
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot take the migration lock"))?;
    let tracked: bool = query_scalar("SELECT to_regclass('taskflow_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("cannot look for the migrations table"))?;
    if !tracked {
        // Without arguments, `execute` uses the simple query protocol, which
        // takes several statements (`raw_sql` would too, but its future is
        // not `Send` for rustc).
        tx.execute(
            "CREATE TABLE taskflow_migrations (
                version    bigint      NOT NULL PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db("cannot create the migrations table"))?;
    }
    let version: i64 = query_scalar("SELECT coalesce(max(version), 0) FROM taskflow_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db("cannot read the schema version"))?;
    let known = MIGRATIONS.last().map_or(0, |(version, ..)| *version);
    if version > known {
        return Err(Error::other(format!(
            "its schema version {version} is newer than this build of taskflow knows ({known}); upgrade taskflow"
        )));
    }
    for (number, name, sql) in MIGRATIONS.iter().filter(|(number, ..)| *number > version) {
        tx.execute(*sql).await.map_err(db(format!("migration {name} failed")))?;
        query("INSERT INTO taskflow_migrations (version, name) VALUES ($1, $2)")
            .bind(number)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(format!("cannot record migration {name}")))?;
    }
    tx.commit().await.map_err(db("cannot commit the migrations"))
}

/// A listener on the changes channel, on a connection of `pool`.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx_core::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards the changes announced to the broadcast channel, for as long as
/// the store lives (the task is aborted with it). A lost connection is
/// re-established; what changed meanwhile is not announced.
async fn forward_changes(pool: PgPool, mut listener: PgListener, origin: Arc<str>, changes: broadcast::Sender<Change>) {
    loop {
        let error = loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match parse_changes(notification.payload(), &origin) {
                    // No receiver is fine.
                    Some(announced) => announced.into_iter().for_each(|change| drop(changes.send(change))),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed run change notification (from an older version of TaskFlow?)"
                    ),
                },
                // The listener has reconnected by itself.
                Ok(None) => {
                    tracing::warn!("the connection listening for run changes dropped; changes meanwhile are missed")
                }
                Err(error) => break error,
            }
        };
        tracing::warn!(%error, "lost the connection listening for run changes; reconnecting");
        listener = relisten(&pool, listener).await;
    }
}

/// A new listener in place of `broken`, retrying with back-off until the
/// server answers.
async fn relisten(pool: &PgPool, broken: PgListener) -> PgListener {
    // Its connection is the pool's only one.
    drop(broken);
    let mut wait = LISTEN_RETRY.0;
    loop {
        match listen(pool).await {
            Ok(listener) => {
                tracing::info!("listening for run changes again");
                return listener;
            }
            Err(error) => tracing::warn!(%error, "cannot listen for run changes; retrying in {wait:?}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LISTEN_RETRY.1);
    }
}

// ---------------------------------------------------------------------------
// Writes (each one transaction)

async fn begin(pool: &PgPool) -> Result<PgTransaction<'static>> {
    pool.begin().await.map_err(db("cannot begin a transaction"))
}

async fn commit(tx: PgTransaction<'_>) -> Result<()> {
    tx.commit().await.map_err(db("cannot commit"))
}

async fn submit(pool: &PgPool, origin: &str, new: NewRun, now: Timestamp) -> Result<Submitted> {
    let unique_key = new.unique_key().into_bytes();
    let mut tx = begin(pool).await?;
    for _ in 0..SUBMIT_ROUNDS {
        if let Some(key) = &new.idempotency_key {
            let sql =
                format!("SELECT {RUN_COLUMNS}, unique_key = sha256($2) FROM taskflow_runs WHERE idempotency_key = $1");
            let row = query(&sql)
                .bind(key)
                .bind(&unique_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("cannot look up an idempotency key"))?;
            if let Some(row) = row {
                let run = read_run(&row)?;
                let same: bool = row.try_get(20).map_err(db("cannot look up an idempotency key"))?;
                if same {
                    return Ok(Submitted { run, created: false });
                }
                return Err(Error::IdempotencyConflict { key: key.clone(), existing: run.id });
            }
        }
        if new.unique {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM taskflow_runs \
                 WHERE unique_key = sha256($1) AND status IN ('pending', 'running') ORDER BY taskflow_runs.id LIMIT 1"
            );
            let row = query(&sql)
                .bind(&unique_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("cannot look up an active run"))?;
            if let Some(row) = row {
                return Ok(Submitted { run: read_run(&row)?, created: false });
            }
        }

        let run = apply::create(&new, now)?;
        // Nothing is inserted if an equal submit committed meanwhile (an
        // active de-duplicated run, or the idempotency key); the next round
        // finds its run.
        let inserted = query(
            "INSERT INTO taskflow_runs (id, task_title, payload, status, attempt, max_attempts, executor, priority, \
             not_before, timeout_ms, retry_delay_ms, created_at, idempotency_key, unique_key, dedup) \
             VALUES ($1, $2, $3::json, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, sha256($14), $15) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run.id.as_uuid())
        .bind(&run.task_title)
        .bind(run.payload.to_string())
        .bind(run.status.as_str())
        .bind(i64::from(run.attempt))
        .bind(i64::from(run.max_attempts))
        .bind(run.executor.as_str())
        .bind(run.priority)
        .bind(run.not_before.0)
        .bind(run.timeout_ms.map(to_i64))
        .bind(to_i64(run.retry_delay_ms))
        .bind(run.created_at.0)
        .bind(&run.idempotency_key)
        .bind(&unique_key)
        .bind(new.unique)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot insert a run"))?
        .rows_affected();
        if inserted == 1 {
            notify(&mut tx, origin, &[(run.id, Some(run.status))]).await?;
            commit(tx).await?;
            return Ok(Submitted { run, created: true });
        }
    }
    Err(Error::Database(DatabaseError::new(
        DatabaseErrorKind::Busy,
        format!(
            "a submit of `{}` kept conflicting with concurrent submits and was given up; try again",
            new.task_title
        ),
    )))
}

async fn claim(pool: &PgPool, origin: &str, request: &ClaimRequest) -> Result<Vec<Run>> {
    let executors: Vec<&str> = apply::distinct(&request.executors).into_iter().map(|e| e.as_str()).collect();
    if executors.is_empty() || request.titles.is_empty() || request.limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = begin(pool).await?;

    // Room left under each task's concurrency limit. Claims of limited
    // tasks take a lock per task, so the count sees every claim committed
    // by any server before; full tasks are skipped in the query, the others
    // are capped while picking.
    let limits: BTreeMap<&str, u32> =
        request.task_limits.iter().map(|(title, limit)| (title.as_str(), *limit)).collect();
    let mut room: BTreeMap<&str, u32> = BTreeMap::new();
    if !limits.is_empty() {
        let titles: Vec<&str> = limits.keys().copied().collect();
        // In the order of the lock keys, so claimers cannot deadlock.
        query(
            "SELECT pg_advisory_xact_lock($1, key)              FROM (SELECT DISTINCT hashtext(title) AS key FROM unnest($2::text[]) AS title ORDER BY key) AS keys",
        )
        .bind(TASK_LIMIT_LOCKS)
        .bind(&titles)
        .execute(&mut *tx)
        .await
        .map_err(db("cannot lock the concurrency limits of tasks"))?;
        let running: BTreeMap<String, i64> = query(
            "SELECT task_title, count(*) FROM taskflow_runs \
             WHERE status = 'running' AND task_title = ANY($1) GROUP BY task_title",
        )
        .bind(&titles)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot count running runs of a task"))?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx_core::Error>>()
        .map_err(db("cannot count running runs of a task"))?;
        for (title, limit) in &limits {
            let running = running.get(*title).copied().unwrap_or(0);
            room.insert(title, limit.saturating_sub(u32::try_from(running).unwrap_or(u32::MAX)));
        }
    }
    let full = apply::full(&room);
    // Look a little further when limited tasks may have to be passed over.
    let window = apply::window(request.limit, &room);
    let sql = claim_sql();
    let rows = query(&sql)
        .bind(request.now.0)
        .bind(&executors)
        .bind(&full)
        .bind(i64::from(window))
        .bind(&request.titles)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot select runs to claim"))?;
    let mut runs = apply::pick(rows.iter().map(read_run), request.limit, &mut room)?;

    let lease_until = request.now.plus(request.lease);
    for run in &mut runs {
        apply::claim(run, &request.worker_id, lease_until, request.now)?;
    }
    save(&mut tx, &runs).await?;
    notify(&mut tx, origin, &announced(&runs)).await?;
    // The rows looked at but not claimed are unlocked here too.
    commit(tx).await?;
    Ok(runs)
}

/// Renews leases. Not announced as a change: only `lease_until` moves.
async fn heartbeat(
    pool: &PgPool,
    worker_id: &str,
    runs: &[(RunId, u32)],
    lease_until: Timestamp,
) -> Result<Vec<RunId>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    // One statement, outside an explicit transaction: one round trip, so a
    // slow network (300 ms a round trip) still renews well inside a lease.
    // The runs go in id order, the order every multi-run lock is taken in.
    let mut sorted: Vec<(uuid::Uuid, i64)> =
        runs.iter().map(|(id, attempt)| (id.as_uuid(), i64::from(*attempt))).collect();
    sorted.sort_unstable();
    let (ids, attempts): (Vec<uuid::Uuid>, Vec<i64>) = sorted.into_iter().unzip();
    let renewed: Vec<(uuid::Uuid, i64)> = query(
        "UPDATE taskflow_runs AS r SET lease_until = $1 \
         FROM unnest($2::uuid[], $3::bigint[]) AS h (id, attempt) \
         WHERE r.id = h.id AND r.id = ANY($2) AND r.attempt = h.attempt AND r.status = $5 AND r.worker_id = $4 \
         RETURNING r.id, r.attempt",
    )
    .bind(lease_until.0)
    .bind(&ids)
    .bind(&attempts)
    .bind(worker_id)
    // A parameter, not a constant: see `group_commit::write_changes`.
    .bind(RunStatus::Running.as_str())
    .fetch_all(pool)
    .await
    .map_err(db("cannot renew leases"))?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx_core::Error>>()
    .map_err(db("cannot renew leases"))?;
    let renewed: HashSet<(uuid::Uuid, i64)> = renewed.into_iter().collect();
    Ok(runs
        .iter()
        .filter(|(id, attempt)| !renewed.contains(&(id.as_uuid(), i64::from(*attempt))))
        .map(|(id, _)| *id)
        .collect())
}

async fn cancel(pool: &PgPool, origin: &str, id: RunId, now: Timestamp) -> Result<Run> {
    let mut tx = begin(pool).await?;
    let mut run = load(&mut tx, id, "FOR UPDATE").await?.ok_or(Error::NotFound(id))?;
    apply::cancel(&mut run, now)?;
    save(&mut tx, std::slice::from_ref(&run)).await?;
    notify(&mut tx, origin, &[(id, Some(run.status))]).await?;
    commit(tx).await?;
    Ok(run)
}

async fn delete(pool: &PgPool, origin: &str, id: RunId, force: bool) -> Result<()> {
    let mut tx = begin(pool).await?;
    let status: Option<String> = query_scalar("SELECT status FROM taskflow_runs WHERE id = $1 FOR UPDATE")
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("cannot read a run"))?;
    let status = parse_status(&id.to_string(), &status.ok_or(Error::NotFound(id))?)?;
    if is_active(status) && !force {
        return Err(Error::Active(id));
    }
    // Its log lines go with it (`ON DELETE CASCADE`).
    query("DELETE FROM taskflow_runs WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db("cannot delete a run"))?;
    notify(&mut tx, origin, &[(id, None)]).await?;
    commit(tx).await
}

/// Rescues up to [`RESCUE_BATCH`] running runs whose lease ended before
/// `now`; runs another transaction holds are left for the next rescue.
async fn rescue_batch(pool: &PgPool, origin: &str, now: Timestamp) -> Result<Vec<Run>> {
    let mut tx = begin(pool).await?;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE status = 'running' AND lease_until < $1 \
         ORDER BY lease_until, taskflow_runs.id LIMIT {RESCUE_BATCH} FOR UPDATE SKIP LOCKED"
    );
    let rows = query(&sql).bind(now.0).fetch_all(&mut *tx).await.map_err(db("cannot select expired leases"))?;
    let mut runs = rows.iter().map(read_run).collect::<Result<Vec<_>>>()?;
    for run in &mut runs {
        apply::expire(run, now)?;
    }
    save(&mut tx, &runs).await?;
    notify(&mut tx, origin, &announced(&runs)).await?;
    commit(tx).await?;
    Ok(runs)
}

/// Deletes up to [`PRUNE_BATCH`] final runs finished before `before`, with
/// their logs. Not announced: nobody waits for runs that old.
async fn prune_batch(pool: &PgPool, before: Timestamp) -> Result<u64> {
    let sql = format!(
        "DELETE FROM taskflow_runs WHERE id IN (\
             SELECT id FROM taskflow_runs \
             WHERE finished_at < $1 AND status IN ('completed', 'failed', 'cancelled') \
             LIMIT {PRUNE_BATCH} FOR UPDATE SKIP LOCKED)"
    );
    let done = query(&sql).bind(before.0).execute(pool).await.map_err(db("cannot prune runs"))?;
    Ok(done.rows_affected())
}

/// Appends log lines; each gets the next sequence number of its run. Lines
/// of unknown (deleted) runs are dropped. Not announced: the run itself does
/// not change.
async fn append_logs(pool: &PgPool, lines: Vec<(RunId, Timestamp, Level, String)>) -> Result<Vec<StoredLogLine>> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let mut counts: BTreeMap<uuid::Uuid, i64> = BTreeMap::new();
    for (id, ..) in &lines {
        *counts.entry(id.as_uuid()).or_default() += 1;
    }
    let ids: Vec<uuid::Uuid> = counts.keys().copied().collect();
    let added: Vec<i64> = counts.values().copied().collect();

    let mut tx = begin(pool).await?;
    lock_in_order(&mut tx, &ids, "cannot append log lines").await?;
    // Each run's count grows by its lines; its new lines follow the old count.
    let mut next_seq: BTreeMap<uuid::Uuid, i64> = query(
        "UPDATE taskflow_runs AS r SET log_count = r.log_count + c.added \
         FROM unnest($1::uuid[], $2::bigint[]) AS c (id, added) WHERE r.id = c.id \
         RETURNING r.id, r.log_count - c.added + 1",
    )
    .bind(&ids)
    .bind(&added)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("cannot append log lines"))?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx_core::Error>>()
    .map_err(db("cannot append log lines"))?;

    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stored = Vec::with_capacity(lines.len());
    for (run_id, at, level, message) in lines {
        let Some(seq) = next_seq.get_mut(&run_id.as_uuid()) else { continue };
        let message = storable(&message);
        columns.0.push(run_id.as_uuid());
        columns.1.push(*seq);
        columns.2.push(at.0);
        columns.3.push(level_name(level));
        columns.4.push(message.clone());
        let number = u64::try_from(*seq).map_err(|_| corrupt(&run_id.to_string(), "log sequence number", *seq))?;
        stored.push(StoredLogLine { run_id, seq: number, at, level, message });
        *seq += 1;
    }
    query(
        "INSERT INTO taskflow_run_logs (run_id, seq, at, level, message) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
    )
    .bind(&columns.0)
    .bind(&columns.1)
    .bind(&columns.2)
    .bind(&columns.3)
    .bind(&columns.4)
    .execute(&mut *tx)
    .await
    .map_err(db("cannot append log lines"))?;
    commit(tx).await?;
    Ok(stored)
}

/// Locks the runs `ids` (those that exist) in id order: writers locking
/// several runs in one order cannot deadlock each other.
async fn lock_in_order(tx: &mut PgTransaction<'_>, ids: &[uuid::Uuid], context: &'static str) -> Result<()> {
    query("SELECT 1 FROM taskflow_runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(ids)
        .execute(&mut **tx)
        .await
        .map_err(db(context))?;
    Ok(())
}

/// Writes everything a status change may touch, for every run in one
/// statement. The runs are locked by the caller's transaction.
///
/// `r.id = ANY($1)` repeats the join on purpose: it lets the planner find
/// the rows by primary key whatever it believes of the table's size. On a
/// young table (no statistics yet, its size growing by thousands a second)
/// the join alone was planned as a scan of the whole table per claim.
async fn save(tx: &mut PgTransaction<'_>, runs: &[Run]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut columns = ChangedColumns::default();
    runs.iter().for_each(|run| columns.push(run));
    let changed = columns
        .bind(query(
            "UPDATE taskflow_runs AS r SET status = u.status, attempt = u.attempt, not_before = u.not_before, \
         started_at = u.started_at, finished_at = u.finished_at, result = u.result::json, \
         error_kind = u.error_kind, error_message = u.error_message, worker_id = u.worker_id, \
         lease_until = u.lease_until \
         FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], \
                     $8::text[], $9::text[], $10::text[], $11::bigint[]) \
             AS u (id, status, attempt, not_before, started_at, finished_at, result, error_kind, error_message, \
                   worker_id, lease_until) \
         WHERE r.id = u.id AND r.id = ANY($1)",
        ))
        .execute(&mut **tx)
        .await
        .map_err(db("cannot update runs"))?
        .rows_affected();
    if changed != runs.len() as u64 {
        return Err(Error::other(format!("cannot update runs: {changed} of {} were found", runs.len())));
    }
    Ok(())
}

/// The columns a status change may touch, of several runs, as arrays for
/// `unnest`: what [`save`] writes, and the group commit's finishes.
#[derive(Default)]
struct ChangedColumns<'a> {
    ids: Vec<uuid::Uuid>,
    statuses: Vec<&'static str>,
    attempts: Vec<i64>,
    not_befores: Vec<i64>,
    started: Vec<Option<i64>>,
    finished: Vec<Option<i64>>,
    results: Vec<Option<String>>,
    error_kinds: Vec<Option<&'a str>>,
    error_messages: Vec<Option<&'a str>>,
    workers: Vec<Option<&'a str>>,
    leases: Vec<Option<i64>>,
}

impl<'a> ChangedColumns<'a> {
    fn push(&mut self, run: &'a Run) {
        self.ids.push(run.id.as_uuid());
        self.statuses.push(run.status.as_str());
        self.attempts.push(i64::from(run.attempt));
        self.not_befores.push(run.not_before.0);
        self.started.push(run.started_at.map(|t| t.0));
        self.finished.push(run.finished_at.map(|t| t.0));
        self.results.push(run.result.as_ref().map(Value::to_string));
        self.error_kinds.push(run.error.as_ref().map(|e| e.kind.as_str()));
        self.error_messages.push(run.error.as_ref().map(|e| e.message.as_str()));
        self.workers.push(run.worker_id.as_deref());
        self.leases.push(run.lease_until.map(|t| t.0));
    }

    /// Binds the columns, in the order above, as the query's next eleven
    /// arguments.
    fn bind<'q>(&'q self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.statuses)
            .bind(&self.attempts)
            .bind(&self.not_befores)
            .bind(&self.started)
            .bind(&self.finished)
            .bind(&self.results)
            .bind(&self.error_kinds)
            .bind(&self.error_messages)
            .bind(&self.workers)
            .bind(&self.leases)
    }
}

/// Announces that runs changed (to their status, or `None`: deleted), at
/// the commit of `tx`: a notification per [`NOTIFY_CHUNK`] runs, its
/// payload `<origin> <id>:<status> <id>:<status> …` (see [`parse_changes`];
/// the group commit's statement builds the same payloads in SQL).
async fn notify(tx: &mut PgTransaction<'_>, origin: &str, changes: &[(RunId, Option<RunStatus>)]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = changes
        .chunks(NOTIFY_CHUNK)
        .map(|chunk| {
            let mut payload = origin.to_owned();
            for (id, status) in chunk {
                let status = status.map_or(DELETED, RunStatus::as_str);
                payload.push_str(&format!(" {id}:{status}"));
            }
            payload
        })
        .collect();
    query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut **tx)
        .await
        .map_err(db("cannot announce a change"))?;
    Ok(())
}

/// The announcement of `runs` changing to their current status.
fn announced(runs: &[Run]) -> Vec<(RunId, Option<RunStatus>)> {
    runs.iter().map(|run| (run.id, Some(run.status))).collect()
}

/// The changes a notification's payload announces, each marked `own` when
/// its origin is `origin`; `None` for a payload that is not one of ours.
fn parse_changes(payload: &str, origin: &str) -> Option<Vec<Change>> {
    let mut parts = payload.split(' ');
    let own = parts.next()? == origin;
    let changes: Vec<Change> = parts
        .map(|part| {
            let (id, status) = part.split_once(':')?;
            let status = if status == DELETED { None } else { Some(status.parse().ok()?) };
            Some(Change { id: id.parse().ok()?, status, own })
        })
        .collect::<Option<_>>()?;
    (!changes.is_empty()).then_some(changes)
}

// ---------------------------------------------------------------------------
// Reads

/// One run; `lock` is appended to the query (`FOR UPDATE` in a write).
async fn load(conn: &mut PgConnection, id: RunId, lock: &str) -> Result<Option<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM taskflow_runs WHERE id = $1 {lock}");
    let row = query(&sql).bind(id.as_uuid()).fetch_optional(conn).await.map_err(db("cannot read a run"))?;
    row.as_ref().map(read_run).transpose()
}

/// The candidates of a claim: `$1` now, `$2` the executors, `$3` the full
/// tasks, `$4` how many, `$5` the tasks of the claiming binary.
fn claim_sql() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs \
         WHERE status = 'pending' AND not_before <= $1 AND executor = ANY($2) AND task_title = ANY($5) \
         AND NOT task_title = ANY($3) \
         ORDER BY taskflow_runs.priority DESC, not_before, taskflow_runs.id LIMIT $4 FOR UPDATE SKIP LOCKED"
    )
}

/// A page of `list`: the runs `filter_sql` (with `args` arguments) keeps,
/// newest first; the limit and offset follow the arguments.
fn page_sql(filter_sql: &str, args: usize) -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM taskflow_runs{filter_sql} ORDER BY taskflow_runs.id DESC LIMIT ${} OFFSET ${}",
        args + 1,
        args + 2
    )
}

async fn list(pool: &PgPool, filter: RunFilter) -> Result<Page<Run>> {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if let Some(status) = filter.status {
        args.push(status.as_str().to_owned());
        conditions.push(format!("status = ${}", args.len()));
    }
    if let Some(title) = filter.task_title {
        args.push(title);
        conditions.push(format!("task_title = ${}", args.len()));
    }
    let filter_sql = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
    let offset = filter.offset.unwrap_or(0);
    let with_args = |sql| args.iter().fold(query(sql), |query, arg| query.bind(arg.as_str()));

    // One snapshot for the count and the page.
    let mut tx = pool.begin().await.map_err(db("cannot list runs"))?;
    query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db("cannot list runs"))?;
    let count_sql = format!("SELECT count(*) FROM taskflow_runs{filter_sql}");
    let total: i64 = with_args(&count_sql)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("cannot count runs"))?;
    let page_sql = page_sql(&filter_sql, args.len());
    let rows = with_args(&page_sql)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("cannot list runs"))?;
    let items = rows.iter().map(read_run).collect::<Result<Vec<_>>>()?;
    tx.rollback().await.map_err(db("cannot list runs"))?;
    Ok(Page { items, total: u64::try_from(total).unwrap_or(0) })
}

async fn logs(pool: &PgPool, id: RunId, after: u64, limit: u32) -> Result<Vec<StoredLogLine>> {
    let rows = query(
        "SELECT seq, at, level, message FROM taskflow_run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id.as_uuid())
    .bind(to_i64(after))
    .bind(i64::from(limit.min(MAX_LOG_LIMIT)))
    .fetch_all(pool)
    .await
    .map_err(db("cannot read log lines"))?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let read = |row: &PgRow| -> Result<(i64, i64, String, String), sqlx_core::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))
        };
        let (seq, at, level, message) = read(row).map_err(db("cannot read a log line"))?;
        lines.push(log_line(id, seq, at, &level, message)?);
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Rows

/// Reads the [`RUN_COLUMNS`] of a row; a row that does not make a valid run
/// is a [`Error::Database`], never a panic.
fn read_run(row: &PgRow) -> Result<Run> {
    let get = |row: &PgRow| -> Result<RawRun, sqlx_core::Error> { Ok(read_raw_run!(row, try_get)) };
    get(row).map_err(db("cannot read a run"))?.into_run()
}

/// A statement on the pool or a connection; binds follow.
fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx_core::query::query(sql)
}

/// Free text as PostgreSQL can store it: `text` cannot hold NUL, so a NUL
/// in a log line or an error message becomes U+FFFD.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// Maps a database error to [`Error::Database`] of its [kind](kind_of),
/// saying what was being done, the driver's error kept as the source; a
/// closed pool is [`Error::Closed`].
fn db(context: impl Into<String>) -> impl FnOnce(sqlx_core::Error) -> Error {
    move |error| match error {
        sqlx_core::Error::PoolClosed => Error::Closed,
        error => Error::Database(DatabaseError::new(kind_of(&error), context).with_source(error)),
    }
}

/// What a PostgreSQL failure means for the caller: the SQLSTATE of an
/// error the server sent (its class for most, a few codes by name), or
/// what failed on this side of the connection.
fn kind_of(error: &sqlx_core::Error) -> DatabaseErrorKind {
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
fn kind_of_sqlstate(code: &str) -> DatabaseErrorKind {
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

#[cfg(test)]
mod tests {
    //! What only PostgreSQL has: connecting, migrations shared by servers,
    //! change notifications, text PostgreSQL cannot hold. The contract
    //! itself is tested in `store::conformance`.

    use std::collections::HashSet;

    use serde_json::json;
    use tokio::sync::broadcast::Receiver;
    use tokio::task::JoinSet;

    use super::super::conformance::pg::{with_database, with_store};
    use super::*;
    use crate::run::ExecutorKind;
    use crate::run::RunError;
    use crate::store::Outcome;

    /// A connection of the test's own to its database, for what the store
    /// does not do.
    async fn raw(url: &str) -> PgConnection {
        PgConnection::connect(url).await.unwrap()
    }

    fn run_at(title: &str, payload: Value) -> NewRun {
        let mut new = NewRun::new(title, payload);
        new.not_before = Some(Timestamp(1_000));
        new
    }

    fn claim_request(worker: &str, now: i64) -> ClaimRequest {
        ClaimRequest {
            worker_id: worker.to_owned(),
            limit: 10,
            lease: Duration::from_secs(30),
            executors: vec![ExecutorKind::Thread],
            titles: vec!["t".to_owned()],
            task_limits: Vec::new(),
            now: Timestamp(now),
        }
    }

    /// The next changed id, within five seconds.
    async fn next_change(changes: &mut Receiver<Change>) -> Change {
        tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("a change is announced within five seconds")
            .unwrap()
    }

    /// Servers connect from spawned tasks: the future must be `Send`.
    #[test]
    fn connecting_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: T) {}
        spawnable(async { PostgresStore::connect("postgres://u@h/d").await });
    }

    #[test]
    fn test_database_names_tell_their_age() {
        let before = Timestamp::now().millis();
        let name = format!("tf_test_{}", uuid::Uuid::now_v7().simple());
        let created = test_database_created(&name).unwrap();
        assert!((before..=Timestamp::now().millis()).contains(&created), "{created}");
        for other in ["postgres", "tf_test_", "tf_test_x", "app_01a20862a0457697be4004543eae0ff8"] {
            assert_eq!(test_database_created(other), None, "{other}");
        }
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        let cases = [
            ("postgres://user:secret@db.example:5432/runs", "postgres://user:***@db.example:5432/runs"),
            ("postgresql://user@host/db?sslmode=disable", "postgresql://user@host/db?sslmode=disable"),
            ("postgres://host/db?user=u&password=secret&x=1", "postgres://host/db?user=u&password=***&x=1"),
            ("postgres://u:p%40ss@host/db", "postgres://u:***@host/db"),
            ("not a url with secret@host", "(a URL that does not parse, not shown because it may hold a password)"),
            ("user:secret@host/db", "(a URL that does not parse, not shown because it may hold a password)"),
            ("postgres:user:secret@host/db", "(a URL that does not parse, not shown because it may hold a password)"),
            ("localhost:5432/db", "localhost:5432/db"),
            ("nonsense", "nonsense"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    /// What the real server answers is classified by its SQLSTATE: errors
    /// a test cannot bring about on demand (a full disk, a damaged page, a
    /// server shutting down) are raised by the server itself with their
    /// SQLSTATE, through PL/pgSQL's `RAISE … USING ERRCODE`.
    #[tokio::test]
    async fn the_servers_errors_are_classified_by_sqlstate() {
        with_database(|url| async move {
            let mut conn = raw(&url).await;
            let cases = [
                ("40P01", DatabaseErrorKind::Deadlock),
                ("40001", DatabaseErrorKind::Deadlock),
                ("55P03", DatabaseErrorKind::Busy),
                ("57014", DatabaseErrorKind::Busy),
                ("53100", DatabaseErrorKind::Full),
                ("XX001", DatabaseErrorKind::Corrupt),
                ("XX002", DatabaseErrorKind::Corrupt),
                ("57P01", DatabaseErrorKind::Unavailable),
                ("57P03", DatabaseErrorKind::Unavailable),
                ("08006", DatabaseErrorKind::Unavailable),
                ("53300", DatabaseErrorKind::Unavailable),
                ("23505", DatabaseErrorKind::Conflict),
                ("22P02", DatabaseErrorKind::Other),
            ];
            for (code, kind) in cases {
                let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised {code}' USING ERRCODE = '{code}'; END $$");
                let error = conn.execute(&*sql).await.map(drop).map_err(db("raising")).unwrap_err();
                assert_eq!(error.database_kind(), Some(kind), "{code}: {error}");
                assert_eq!(error.is_transient(), kind.is_transient(), "{code}");
                assert!(error.to_string().contains(&format!("raised {code}")), "the server's words: {error}");
            }
        })
        .await;
    }

    /// A real deadlock, a real lock wait given up, a real duplicate key.
    #[tokio::test]
    async fn deadlocks_locks_and_constraints_have_their_kinds() {
        with_database(|url| async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let a = store.submit(run_at("t", json!({"n": 1}))).await.unwrap().run.id;
            let b = store.submit(run_at("t", json!({"n": 2}))).await.unwrap().run.id;
            let lock = "SELECT 1 FROM taskflow_runs WHERE id = $1 FOR UPDATE";

            // Each transaction holds one row and asks for the other's.
            let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
            let mut first = pool.begin().await.unwrap();
            let mut second = pool.begin().await.unwrap();
            query(lock).bind(a.as_uuid()).execute(&mut *first).await.unwrap();
            query(lock).bind(b.as_uuid()).execute(&mut *second).await.unwrap();
            let crossing = |mut tx: PgTransaction<'static>, id: RunId| {
                tokio::spawn(async move { query(lock).bind(id.as_uuid()).execute(&mut *tx).await.map(drop) })
            };
            let (crossed, other) = (crossing(first, b), crossing(second, a));
            // PostgreSQL aborts exactly one of the two (the other then gets its row).
            let victim = match (crossed.await.unwrap(), other.await.unwrap()) {
                (Err(error), Ok(())) | (Ok(()), Err(error)) => db("locking")(error),
                outcomes => panic!("expected one deadlock victim, got {outcomes:?}"),
            };
            assert_eq!(victim.database_kind(), Some(DatabaseErrorKind::Deadlock), "{victim}");
            assert!(victim.is_transient());

            // A row another transaction holds, not waited for.
            let mut holder = pool.begin().await.unwrap();
            query(lock).bind(a.as_uuid()).execute(&mut *holder).await.unwrap();
            let mut two = raw(&url).await;
            let busy = query("SELECT 1 FROM taskflow_runs WHERE id = $1 FOR UPDATE NOWAIT")
                .bind(a.as_uuid())
                .execute(&mut two)
                .await
                .map_err(db("locking"))
                .unwrap_err();
            assert_eq!(busy.database_kind(), Some(DatabaseErrorKind::Busy), "{busy}");
            holder.rollback().await.unwrap();

            // A second row with the same id.
            let duplicate = query("INSERT INTO taskflow_runs SELECT * FROM taskflow_runs WHERE id = $1")
                .bind(a.as_uuid())
                .execute(&mut two)
                .await
                .map_err(db("copying a run"))
                .unwrap_err();
            assert_eq!(duplicate.database_kind(), Some(DatabaseErrorKind::Conflict), "{duplicate}");
            assert!(!duplicate.is_transient());
        })
        .await;
    }

    /// A server that went away mid-session: the store's next call is
    /// unavailable (worth another try), not an error of the caller.
    #[tokio::test]
    async fn a_terminated_connection_is_unavailable() {
        with_database(|url| async move {
            let mut victim = raw(&url).await;
            let pid: i32 = query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
            query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut raw(&url).await).await.unwrap();
            let error = query("SELECT 1").execute(&mut victim).await.map_err(db("reading")).unwrap_err();
            assert_eq!(error.database_kind(), Some(DatabaseErrorKind::Unavailable), "{error}");
            assert!(error.is_transient());
        })
        .await;
    }

    #[tokio::test]
    async fn connect_errors_name_the_url_without_the_password() {
        let refused = PostgresStore::connect("postgres://taskflow:hunter2@127.0.0.1:1/db").await.unwrap_err();
        assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Unavailable), "{refused}");
        let error = refused.to_string();
        assert!(error.contains("postgres://taskflow:***@127.0.0.1:1/db"), "{error}");
        assert!(error.contains("refused") && error.contains("check that the server is running"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");

        let error = PostgresStore::connect("mysql://u:hunter2@host/db").await.unwrap_err().to_string();
        assert!(error.contains("not a PostgreSQL URL") && !error.contains("hunter2"), "{error}");
        let error = PostgresStore::connect("postgres://u:hunter2@host:port/db").await.unwrap_err().to_string();
        assert!(error.contains("the URL is invalid") && !error.contains("hunter2"), "{error}");

        with_database(|url| async move {
            let mut wrong = Url::parse(&url).unwrap();
            wrong.set_password(Some("hunter2")).unwrap();
            let error = PostgresStore::connect(wrong.as_str()).await.unwrap_err().to_string();
            assert!(error.contains("password authentication failed"), "{error}");
            assert!(error.contains(&redact_url(wrong.as_str())) && !error.contains("hunter2"), "{error}");
        })
        .await;
    }

    /// Servers starting at once apply the migrations once; a server
    /// starting later finds them applied and the runs in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn servers_starting_at_once_migrate_once() {
        with_database(|url| async move {
            let mut connects = JoinSet::new();
            for _ in 0..8 {
                let url = url.clone();
                connects.spawn(async move { PostgresStore::connect(&url).await.unwrap() });
            }
            let stores = connects.join_all().await;
            let run = stores[0].submit(run_at("t", json!({}))).await.unwrap().run;
            drop(stores);

            let store = PostgresStore::connect(&url).await.unwrap();
            assert_eq!(store.get(run.id).await.unwrap(), Some(run));
            let applied: Vec<(i64, String)> = query("SELECT version, name FROM taskflow_migrations")
                .fetch_all(&mut raw(&url).await)
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            assert_eq!(applied, [(1, "0001_runs".to_owned())]);
        })
        .await;
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        with_database(|url| async move {
            drop(PostgresStore::connect(&url).await.unwrap());
            query("INSERT INTO taskflow_migrations (version, name) VALUES (99, 'future')")
                .execute(&mut raw(&url).await)
                .await
                .unwrap();
            let error = PostgresStore::connect(&url).await.unwrap_err().to_string();
            assert!(error.contains("schema version 99") && error.contains(&redact_url(&url)), "{error}");
        })
        .await;
    }

    /// What one server changes, another hears of: every write that changes a
    /// run, and nothing else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_reach_every_server() {
        with_database(|url| async move {
            let writer = PostgresStore::connect(&url).await.unwrap();
            let watcher = PostgresStore::connect(&url).await.unwrap();
            let mut changes = watcher.changes().expect("PostgreSQL announces changes");
            let mut own = writer.changes().unwrap();
            // What another server hears: the run, its new status, not its own.
            let heard = |id, status| Change { id, status, own: false };

            let mut new = run_at("t", json!({}));
            new.max_attempts = 3;
            let submitted = writer.submit(new).await.unwrap().run;
            assert_eq!(next_change(&mut changes).await, heard(submitted.id, Some(RunStatus::Pending)));
            assert_eq!(
                next_change(&mut own).await,
                Change { id: submitted.id, status: Some(RunStatus::Pending), own: true },
                "the writer hears its own changes, marked as its own"
            );
            // A de-duplicated submit changes nothing.
            assert!(!writer.submit(run_at("t", json!({}))).await.unwrap().created);

            let claimed = writer.claim(claim_request("w1", 2_000)).await.unwrap().remove(0);
            assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Running)));
            // Lease renewals and log lines are not announced …
            writer.heartbeat("w1".to_owned(), vec![(claimed.id, 1)], Timestamp(40_000)).await.unwrap();
            writer.append_logs(vec![(claimed.id, Timestamp(2_500), Level::Info, "hi".to_owned())]).await.unwrap();
            // … nor stale reports, which change nothing.
            let stale = Report {
                id: claimed.id,
                attempt: 7,
                worker_id: "w1".to_owned(),
                outcome: Outcome::Released,
                now: Timestamp(3_000),
            };
            assert!(writer.finish(stale.clone()).await.is_err());
            let released = writer.finish(Report { attempt: 1, ..stale }).await.unwrap();
            assert_eq!(next_change(&mut changes).await, heard(released.id, Some(RunStatus::Pending)));

            let claimed = writer.claim(claim_request("w2", 4_000)).await.unwrap().remove(0);
            assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Running)));
            let rescued = writer.rescue_expired(Timestamp(60_000)).await.unwrap();
            assert_eq!(rescued.len(), 1);
            assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Pending)));
            writer.cancel(claimed.id, Timestamp(61_000)).await.unwrap();
            assert_eq!(next_change(&mut changes).await, heard(claimed.id, Some(RunStatus::Cancelled)));
            writer.delete(claimed.id, false).await.unwrap();
            assert_eq!(next_change(&mut changes).await, heard(claimed.id, None));

            let many = (0..3).map(|i| run_at("many", json!({ "i": i })));
            let mut expected = HashSet::new();
            for new in many {
                expected.insert(writer.submit(new).await.unwrap().run.id);
            }
            let mut seen = HashSet::new();
            for _ in 0..3 {
                seen.insert(next_change(&mut changes).await.id);
            }
            assert_eq!(seen, expected);
            assert!(changes.try_recv().is_err(), "nothing else was announced");
        })
        .await;
    }

    /// A page of the run list and a claim read the indexes in order, with
    /// no sort of the runs (they once sorted the text of every id, the whole
    /// table for a page of fifty): `EXPLAIN` on 40,000 analysed runs.
    #[tokio::test]
    async fn lists_and_claims_read_indexes_in_order() {
        with_database(|url| async move {
            PostgresStore::connect(&url).await.unwrap();
            let mut conn = raw(&url).await;
            conn.execute(
                "INSERT INTO taskflow_runs (id, task_title, payload, status, attempt, max_attempts, executor, \
                     priority, not_before, retry_delay_ms, created_at, unique_key, dedup) \
                 SELECT gen_random_uuid(), 't', '{}', CASE WHEN g % 3 = 0 THEN 'completed' ELSE 'pending' END, \
                     1, 1, 'thread', 0, g, 0, g, sha256(g::text::bytea), false \
                 FROM generate_series(1, 40000) AS g; \
                 ANALYZE taskflow_runs",
            )
            .await
            .unwrap();
            let plan = |rows: Vec<PgRow>| rows.iter().map(|row| row.get::<String, _>(0)).collect::<Vec<_>>().join("\n");

            let explain = format!("EXPLAIN {}", page_sql("", 0));
            let rows = query(&explain).bind(50_i64).bind(0_i64).fetch_all(&mut conn).await.unwrap();
            let page = plan(rows);
            let explain = format!("EXPLAIN {}", page_sql(" WHERE status = $1", 1));
            let rows = query(&explain).bind("completed").bind(50_i64).bind(0_i64).fetch_all(&mut conn).await.unwrap();
            let filtered = plan(rows);
            let explain = format!("EXPLAIN {}", claim_sql());
            let rows = query(&explain)
                .bind(1_000_000_i64)
                .bind(vec!["thread"])
                .bind(Vec::<String>::new())
                .bind(1024_i64)
                .bind(vec!["t"])
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let claim = plan(rows);
            for plan in [&page, &filtered, &claim] {
                assert!(plan.contains("Index Scan"), "{plan}");
                assert!(!plan.contains("Sort"), "{plan}");
            }
        })
        .await;
    }

    /// Payloads that are not ours (another program on the channel, an older
    /// TaskFlow) are refused whole; ours split into one change per run.
    #[test]
    fn notification_payloads_parse() {
        let (a, b) = (RunId::new(), RunId::new());
        let changes = parse_changes(&format!("me {a}:running {b}:deleted"), "me").unwrap();
        assert_eq!(
            changes,
            [Change { id: a, status: Some(RunStatus::Running), own: true }, Change { id: b, status: None, own: true }]
        );
        assert!(!parse_changes(&format!("you {a}:failed"), "me").unwrap()[0].own);
        for bad in [a.to_string(), format!("me {a}"), format!("me {a}:sleeping"), "me nope:running".to_owned()] {
            assert_eq!(parse_changes(&bad, "me"), None, "{bad}");
        }
    }

    /// When the listening connection is killed, the store listens again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_reconnects() {
        with_database(|url| async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let mut changes = store.changes().unwrap();
            let killed: Vec<bool> = query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            .fetch_all(&mut raw(&url).await)
            .await
            .unwrap();
            assert_eq!(killed, [true]);

            // Changes made before it listens again are missed: keep changing
            // runs until one is heard.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let mut submitted = HashSet::new();
            for i in 0.. {
                assert!(tokio::time::Instant::now() < deadline, "no change heard after the reconnect");
                submitted.insert(store.submit(run_at("t", json!({ "i": i }))).await.unwrap().run.id);
                match tokio::time::timeout(Duration::from_millis(200), changes.recv()).await {
                    Ok(Ok(change)) => {
                        assert!(submitted.contains(&change.id));
                        break;
                    }
                    Ok(Err(error)) => panic!("the changes channel failed: {error}"),
                    Err(_) => {}
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors() {
        with_database(|url| async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let run = store.submit(run_at("t", json!({}))).await.unwrap().run;
            query("UPDATE taskflow_runs SET executor = 'abacus' WHERE id = $1")
                .bind(run.id.as_uuid())
                .execute(&mut raw(&url).await)
                .await
                .unwrap();
            match store.get(run.id).await {
                Err(Error::Database(error)) => {
                    assert!(error.to_string().contains("executor"), "{error}");
                    assert_eq!((error.kind(), error.run()), (DatabaseErrorKind::Corrupt, Some(run.id)), "{error}");
                }
                other => panic!("expected a database error, got {other:?}"),
            }
            let again = store.cancel(run.id, Timestamp(2_000)).await.unwrap_err();
            assert_eq!(again.database_kind(), Some(DatabaseErrorKind::Corrupt), "{again}");
            assert!(store.submit(run_at("t", json!({"other": true}))).await.unwrap().created);
        })
        .await;
    }

    /// `text` cannot hold NUL: in free text it becomes U+FFFD.
    #[tokio::test]
    async fn nul_in_free_text_is_replaced() {
        with_store(|store| async move {
            let run = store.submit(run_at("t", json!({}))).await.unwrap().run;
            let claimed = store.claim(claim_request("w1", 2_000)).await.unwrap().remove(0);
            let stored = store.append_logs(vec![(run.id, Timestamp(1), Level::Info, "a\0b".to_owned())]).await.unwrap();
            assert_eq!(stored[0].message, "a\u{FFFD}b", "`append_logs` answers what it stored");
            assert_eq!(store.logs(run.id, 0, 10).await.unwrap()[0].message, "a\u{FFFD}b");
            let error = RunError { kind: "failed".to_owned(), message: "bad\0byte".to_owned() };
            let outcome = Outcome::Failed { error, retry_at: None };
            let report = Report { id: run.id, attempt: 1, worker_id: "w1".to_owned(), outcome, now: Timestamp(3) };
            let failed = store.finish(report).await.unwrap();
            assert_eq!(claimed.id, run.id);
            assert_eq!(store.get(run.id).await.unwrap().unwrap().error.unwrap().message, "bad\u{FFFD}byte");
            assert_eq!(failed.error.unwrap().message, "bad\u{FFFD}byte", "`finish` answers what it stored");
        })
        .await;
    }
}
