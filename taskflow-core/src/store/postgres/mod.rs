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

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx_core::connection::Connection;
use sqlx_postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::changes::{forward_changes, listen};
use self::claim::{claim, heartbeat};
use self::clock::{DatabaseClock, LocalClock};
use self::connect::migrate;
pub use self::connect::redact_url;
use self::group_commit::GroupCommit;
use self::reads::{list, load, logs};
use self::rows::db;
#[cfg(test)]
use self::testing::test_database_created;
use self::writes::{append_logs, cancel, delete, prune_batch, prune_limits, rescue_batch, submit};
use super::{
    Change, ClaimRequest, DatabaseError, DatabaseErrorKind, Error, NewProvisionToken, NewRun, Page, Registration,
    Renewal, Report, Result, RunFilter, Store, StoredLogLine, Submitted, WorkerRecord,
};
use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};

mod changes;
mod claim;
mod clock;
mod connect;
mod group_commit;
mod reads;
mod rows;
#[cfg(any(test, feature = "testing"))]
mod testing;
#[cfg(test)]
mod tests;
mod workers;
mod writes;

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
/// How many expired runs one rescue transaction handles.
const RESCUE_BATCH: usize = 500;
/// How many runs one prune transaction deletes.
const PRUNE_BATCH: u64 = 1000;

/// The columns a [`Run`] is read from, in the order [`read_run`](rows::read_run) expects.
/// `id` and `priority` come out converted (text, bigint) under their own
/// names: a query selecting these orders by `taskflow_runs.id` and
/// `taskflow_runs.priority`, or it would sort the converted values instead
/// of reading the indexes in order.
const RUN_COLUMNS: &str = "id::text, task_title, payload::text, status, attempt, max_attempts, executor, \
     priority::bigint, not_before, timeout_ms, retry_delay_ms, created_at, started_at, finished_at, result::text, \
     error_kind, error_message, worker_id, lease_until, idempotency_key, attempts::text, progress_done, \
     progress_total";

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
    /// Marks the changes this store announces (see [`notify`](changes::notify)).
    origin: Arc<str>,
    changes: broadcast::Sender<Change>,
    listener: JoinHandle<()>,
    /// Submits and finishes, written in batches.
    batches: GroupCommit,
    /// The clock leases go by: the database's.
    clock: DatabaseClock,
    /// Measures the database clock's offset now and then.
    clock_follower: JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.listener.abort();
        self.clock_follower.abort();
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
    ///
    /// Leases go by the database's clock: the store measures how far it is
    /// from this host's, at connect and every minute, and warns when that
    /// is over a second.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        PostgresStore::connect_with_clock_of(url, Arc::new(SystemTime::now)).await
    }

    /// [`connect`](Self::connect) for a host whose clock is `clock`, to
    /// test servers whose clocks disagree (feature `testing`; not a stable
    /// API).
    #[cfg(any(test, feature = "testing"))]
    pub async fn connect_with_clock(
        url: &str,
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
    ) -> Result<PostgresStore> {
        PostgresStore::connect_with_clock_of(url, Arc::new(clock)).await
    }

    async fn connect_with_clock_of(url: &str, local: LocalClock) -> Result<PostgresStore> {
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
        let clock = DatabaseClock::measure(&mut conn, local).await.map_err(|e| e.within(format_args!("at {shown}")))?;
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
        let clock_follower = tokio::spawn(clock.clone().follow(pool.clone()));
        let shared = Shared { url: shown, origin, changes, listener, batches, clock, clock_follower };
        Ok(PostgresStore { pool, leases, shared: Arc::new(shared) })
    }

    /// The database's URL, without its password.
    pub fn url(&self) -> &str {
        &self.shared.url
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
        let clock = self.shared.clock.clone();
        self.with_pool(move |pool, origin| async move { claim(&pool, &origin, &request, &clock).await })
    }

    fn heartbeat(
        &self,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<Result<Vec<RunId>>> {
        let leases = self.leases.clone();
        // In the database's clock, as every lease.
        let lease_until = self.shared.clock.to_database(lease_until);
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
        // Leases are compared in the database's clock; the rescued runs'
        // times (`not_before`, `finished_at`) are the caller's `now`.
        let expired_before = self.shared.clock.to_database(now);
        // One transaction per batch, so a large rescue holds few locks at a
        // time; each batch leaves fewer expired runs, so this ends.
        self.with_pool(move |pool, origin| async move {
            let mut rescued = Vec::new();
            loop {
                let batch = rescue_batch(&pool, &origin, now, expired_before).await?;
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
                    prune_limits(&pool, before).await?;
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

    fn add_provision_token(&self, token: NewProvisionToken) -> BoxFuture<Result<()>> {
        self.with_pool(move |pool, _| async move { workers::add_provision_token(&pool, &token).await })
    }

    fn register_worker(&self, registration: Registration) -> BoxFuture<Result<WorkerRecord>> {
        self.with_pool(move |pool, _| async move { workers::register_worker(&pool, &registration).await })
    }

    fn worker_by_token(&self, token_hash: String) -> BoxFuture<Result<Option<WorkerRecord>>> {
        self.with_pool(move |pool, _| async move { workers::worker_by_token(&pool, &token_hash).await })
    }

    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>> {
        self.with_pool(move |pool, _| async move { workers::workers(&pool).await })
    }

    fn worker_seen(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<()>> {
        self.with_pool(move |pool, _| async move { workers::worker_seen(&pool, &worker_id, now).await })
    }

    fn revoke_worker(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<Vec<Run>>> {
        self.with_pool(move |pool, origin| async move { workers::revoke_worker(&pool, &origin, &worker_id, now).await })
    }
}
