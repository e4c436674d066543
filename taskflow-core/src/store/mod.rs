//! The store: the durable record of runs and their log lines. One trait,
//! [`Store`], and one honest implementation per database: SQLite
//! ([`SqliteStore`], the embedded default) and PostgreSQL (`PostgresStore`,
//! feature `postgres`, for several servers sharing one database).
//!
//! **Only the store writes SQL**, and every status change it makes goes
//! through [`run::transition`](crate::run::transition) inside the same
//! transaction as the change's data.

mod apply;
#[cfg(test)]
mod conformance;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
mod row;
mod sqlite;
mod workers;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::{DatabaseError, DatabaseErrorKind, Error, Result};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresStore, redact_url};
pub use sqlite::SqliteStore;
/// The statements the SQLite store runs for every run, for the benchmark's
/// ceiling (feature `testing`; not a stable API).
#[cfg(feature = "testing")]
pub use sqlite::statements as sqlite_statements;
pub use workers::{NewProvisionToken, ProvisionRefusal, Registration, WorkerProfile, WorkerRecord};

use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::ExecutorKind;
use crate::run::{IllegalTransition, Progress, Run, RunError, RunId, RunStatus, Timestamp};

/// `list` returns this many runs unless told otherwise …
pub(crate) const DEFAULT_LIST_LIMIT: u32 = 50;
/// … and never more than this.
pub(crate) const MAX_LIST_LIMIT: u32 = 1000;
/// `logs` returns at most this many lines.
pub const MAX_LOG_LIMIT: u32 = 10_000;

/// A run to create. Build it with [`NewRun::new`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewRun {
    /// The task.
    pub task_title: String,
    /// The payload, already validated.
    pub payload: Value,
    /// How many attempts (retries + 1).
    pub max_attempts: u32,
    /// Where it executes.
    pub executor: ExecutorKind,
    /// Higher runs first.
    pub priority: i32,
    /// Not claimed before this time.
    pub not_before: Option<Timestamp>,
    /// How long one attempt may run.
    pub timeout_ms: Option<u64>,
    /// The base of the retry back-off.
    pub retry_delay_ms: u64,
    /// Return the pending or running run with the same title and payload
    /// instead of creating a new one.
    pub unique: bool,
    /// Makes a retried submit safe: the same key returns the same run.
    pub idempotency_key: Option<String>,
    /// Claims the run as it is created, for the engine of the submitting
    /// process when it has a free slot and nothing waits in the queue: the
    /// run is stored `running`, leased to that worker, and starts without a
    /// claim of its own (one write and one wake-up less). Ignored by a
    /// submit that finds an existing run, and for a run not due yet.
    pub claim: Option<SubmitClaim>,
}

/// Who claims a run at its submit ([`NewRun::claim`]), and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitClaim {
    /// The worker that executes it.
    pub worker_id: String,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
}

impl NewRun {
    /// A run of `task_title` with `payload`: one attempt, thread executor,
    /// priority 0, de-duplicated.
    pub fn new(task_title: impl Into<String>, payload: Value) -> NewRun {
        NewRun {
            task_title: task_title.into(),
            payload,
            max_attempts: 1,
            executor: ExecutorKind::Thread,
            priority: 0,
            not_before: None,
            timeout_ms: None,
            retry_delay_ms: 1_000,
            unique: true,
            idempotency_key: None,
            claim: None,
        }
    }

    /// The key that de-duplicates active runs: the title, the executor (a
    /// submit asking for a container is not handed a run on a thread) and
    /// the payload in canonical (sorted-key) JSON.
    pub fn unique_key(&self) -> String {
        format!("{}\u{0}{}\u{0}{}", self.task_title, self.executor.as_str(), canonical_json(&self.payload))
    }
}

/// JSON with object keys sorted, so equal values give equal text (payloads
/// in de-duplication keys, schemas in a remote worker's digests).
pub fn canonical_json(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The run: new, or the existing one a de-duplicated submit found.
    pub run: Run,
    /// Whether the run was created by this submit.
    pub created: bool,
}

/// How a worker's attempt ended, as it reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The task produced a result.
    Completed(Value),
    /// The attempt failed; `retry_at` is when the next attempt may start,
    /// `None` when no attempt is left.
    Failed {
        /// Why.
        error: RunError,
        /// When to retry, if attempts are left.
        retry_at: Option<Timestamp>,
    },
    /// The worker gives the run back unfinished (shutdown); the attempt is
    /// not counted.
    Released,
}

/// A worker's report of one attempt, fenced by attempt number and worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The run.
    pub id: RunId,
    /// The attempt that ran.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// When.
    pub now: Timestamp,
    /// The attempt's last progress, when it reported any the store may not
    /// have yet; stored with the outcome.
    pub progress: Option<Progress>,
}

/// One attempt whose lease a heartbeat renews, with the progress it
/// reported since the last renewal (stored with the lease, so progress
/// costs no write of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The run.
    pub id: RunId,
    /// The attempt the worker holds.
    pub attempt: u32,
    /// Its progress, if it changed since the last renewal.
    pub progress: Option<Progress>,
}

impl From<(RunId, u32)> for Renewal {
    /// A renewal with no new progress.
    fn from((id, attempt): (RunId, u32)) -> Renewal {
        Renewal { id, attempt, progress: None }
    }
}

/// Which runs `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs in one of these statuses; empty for any.
    pub statuses: Vec<RunStatus>,
    /// Only runs of this task.
    pub task_title: Option<String>,
    /// Newest first; at most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: Option<u32>,
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: u64,
}

/// A log line of a run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLogLine {
    /// The run.
    pub run_id: RunId,
    /// Its place in the run's log, from 1.
    pub seq: u64,
    /// When it was logged.
    pub at: Timestamp,
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}

/// How many leases a claimer's concurrency limits bind other claimers after
/// its last claim ([`ClaimRequest::task_limits`]).
pub const LIMIT_DECLARATION_LEASES: u32 = 10;

/// A claim of up to `limit` pending runs for `worker_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Who claims.
    pub worker_id: String,
    /// At most this many runs.
    pub limit: u32,
    /// The lease each claimed run gets.
    pub lease: Duration,
    /// Only runs of these executors.
    pub executors: Vec<ExecutorKind>,
    /// Only runs of these tasks (the titles the claiming binary has): a
    /// server that lacks a task leaves its runs for one that has it, so
    /// binaries of different versions can share one database through a
    /// rolling upgrade. Empty claims nothing.
    pub titles: Vec<String>,
    /// The concurrency limits the claiming binary declares
    /// (`#[task(concurrency = N)]`): no more than N runs of each are
    /// running at once, across all workers. The store keeps each claimer's
    /// declarations for [`LIMIT_DECLARATION_LEASES`] leases and honours,
    /// for every claim, the smallest live one of each task: binaries of
    /// different versions sharing a database (a rolling upgrade that
    /// changes or drops a limit) never run more than the strictest allows.
    pub task_limits: Vec<(String, u32)>,
    /// Attempts of these tasks the claimer still executes although their
    /// runs are no longer running in the store (a sync task's thread left
    /// running after its timeout): counted against the tasks' limits.
    pub lingering: Vec<(String, u32)>,
    /// The time of the claim, by the claimer's clock. PostgreSQL stamps
    /// the lease in the database's clock: `now` moved by the offset the
    /// store measured between the two.
    pub now: Timestamp,
}

/// The durable record of runs. Implementations keep every change in one
/// transaction with its status change, and decide status changes only
/// through [`run::transition`](crate::run::transition).
pub trait Store: Send + Sync + 'static {
    /// Creates a run, or returns the existing one for a de-duplicated or
    /// idempotent submit. Acknowledged only once committed.
    fn submit(&self, new: NewRun) -> BoxFuture<Result<Submitted>>;

    /// Claims up to `limit` pending runs of the request's executors and
    /// tasks whose `not_before` has passed, highest priority first, then
    /// oldest; each becomes `running` under a lease for the worker.
    fn claim(&self, request: ClaimRequest) -> BoxFuture<Result<Vec<Run>>>;

    /// Renews the leases of the worker's runs (attempts it holds) until
    /// `lease_until` (by the worker's clock; PostgreSQL moves it into the
    /// database's, as a claim's lease), storing the progress each renewal
    /// carries; returns the ids it no longer holds (cancelled, re-queued),
    /// so the worker can stop them.
    fn heartbeat(&self, worker_id: String, runs: Vec<Renewal>, lease_until: Timestamp)
    -> BoxFuture<Result<Vec<RunId>>>;

    /// Records how an attempt ended. Refused with [`Error::StaleAttempt`]
    /// unless the run is running this attempt for this worker.
    fn finish(&self, report: Report) -> BoxFuture<Result<Run>>;

    /// Cancels a pending or running run.
    fn cancel(&self, id: RunId, now: Timestamp) -> BoxFuture<Result<Run>>;

    /// Deletes a run and its log; an active one only when `force`.
    fn delete(&self, id: RunId, force: bool) -> BoxFuture<Result<()>>;

    /// Re-queues (or fails, at max attempts) running runs whose lease ended
    /// before `now` (by the rescuer's clock; PostgreSQL compares in the
    /// database's), counting the attempt; returns them as changed.
    fn rescue_expired(&self, now: Timestamp) -> BoxFuture<Result<Vec<Run>>>;

    /// Deletes final runs finished before `before`, with their logs;
    /// returns how many.
    fn prune(&self, before: Timestamp) -> BoxFuture<Result<u64>>;

    /// Appends log lines; each gets the next sequence number of its run.
    /// Returns the lines as stored (with their sequence numbers and the text
    /// as the database holds it), in the order given; lines of unknown
    /// (deleted) runs are dropped.
    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<Vec<StoredLogLine>>>;

    /// One run.
    fn get(&self, id: RunId) -> BoxFuture<Result<Option<Run>>>;

    /// Runs matching `filter`, newest first.
    fn list(&self, filter: RunFilter) -> BoxFuture<Result<Page<Run>>>;

    /// A run's log lines after sequence number `after`, at most `limit`.
    fn logs(&self, id: RunId, after: u64, limit: u32) -> BoxFuture<Result<Vec<StoredLogLine>>>;

    /// The runs changed by any process sharing this store, this one
    /// included: created, claimed, finished, released, cancelled, rescued
    /// or deleted. Each [`Change`] arrives after its commit; read the run to
    /// see the rest of it. `None` when the store is used by this process only
    /// (SQLite), where the process already knows every change.
    ///
    /// Best effort, so keep polling as well: lease renewals, log lines and
    /// pruning are not announced, changes made while the store's listening
    /// connection was down are missed, and a receiver that falls too far
    /// behind gets [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// Stores a provision token for one worker's registration.
    fn add_provision_token(&self, token: NewProvisionToken) -> BoxFuture<Result<()>>;

    /// Registers a worker with a provision token, using the token up in the
    /// same transaction: refused with [`Error::Provision`] when the token is
    /// unknown, used or expired.
    fn register_worker(&self, registration: Registration) -> BoxFuture<Result<WorkerRecord>>;

    /// The worker whose token has this digest, revoked or not.
    fn worker_by_token(&self, token_hash: String) -> BoxFuture<Result<Option<WorkerRecord>>>;

    /// Every registered worker, oldest first.
    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>>;

    /// Records that a worker was heard from at `now` (never moving its
    /// `last_seen` back).
    fn worker_seen(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<()>>;

    /// Revokes a worker at `now` (its token is refused from then on) and
    /// takes back the runs it holds, in the same transaction, as a lost
    /// lease would (`worker_revoked`; re-queued while attempts are left);
    /// answers them. Revoking a revoked worker changes nothing; an unknown
    /// one is [`Error::UnknownWorker`].
    fn revoke_worker(&self, worker_id: String, now: Timestamp) -> BoxFuture<Result<Vec<Run>>>;
}

/// A committed change of a run, as [`Store::changes`] announces it: enough
/// to decide whether the run must be read, so a server need not read back
/// every run it changed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The run.
    pub id: RunId,
    /// Its status after the change; `None` when it was deleted.
    pub status: Option<RunStatus>,
    /// Whether this store handle (or a clone of it) made the change, rather
    /// than another connection to the database.
    pub own: bool,
}

/// Lets a status decision be reported as a store error for `id`.
pub(crate) fn illegal(id: RunId) -> impl FnOnce(IllegalTransition) -> Error {
    move |source| Error::IllegalTransition { id, source }
}

/// Whether a status is active (not final).
pub(crate) fn is_active(status: RunStatus) -> bool {
    !status.is_final()
}
