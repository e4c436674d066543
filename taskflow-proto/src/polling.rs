//! What a registered remote worker and the server exchange over the
//! polling routes: a claim (`POST /api/v1/polling/claim`, a long poll) and
//! an update (`POST /api/v1/polling/update`: lease renewals with progress,
//! log lines, an attempt's outcome). Times are milliseconds since the Unix
//! epoch, as the worker's clock reads them: machines, not people, read
//! these.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ExecutorKind, Level, LogLine, RunProgress, TaskRun};

/// The most runs one claim asks for.
pub const MAX_CLAIM: u32 = 256;
/// The longest a claim waits for a run.
pub const MAX_WAIT_SECONDS: u32 = 25;

/// A claim: up to `limit` runs of the worker's tasks, waiting up to
/// `wait_seconds` for one when none is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// How many runs the worker has room for.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 256))]
    pub limit: u32,
    /// How long to wait for a run when none is pending (a long poll).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 25))]
    pub wait_seconds: u32,
    /// Attempts whose runs no longer count as running but whose code still
    /// runs on the worker (a sync task's thread after a timeout), by task:
    /// counted against the tasks' concurrency limits.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub lingering: Vec<Lingering>,
}

/// Attempts of one task still running on a worker although their runs no
/// longer count as running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lingering {
    /// The task.
    pub task_title: String,
    /// How many.
    pub count: u32,
}

/// The runs a claim took, each now the worker's under a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimReply {
    /// The runs, highest priority first, then oldest.
    pub runs: Vec<LeasedRun>,
    /// How long a lease lasts without a renewal.
    pub lease_seconds: u64,
    /// How often the server expects renewals.
    pub heartbeat_seconds: u64,
    /// How long after the claim arrived the runs were leased (the long
    /// poll's wait), in milliseconds: the worker counts each lease from
    /// when it sent the claim plus this, never trusting a lease longer than
    /// the server stored.
    pub waited_ms: u64,
}

/// A run a worker holds: what it needs to execute the attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasedRun {
    /// The run's id.
    pub task_id: String,
    /// The task.
    pub task_title: String,
    /// The arguments, validated.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    /// The attempt the worker holds: its reports name it.
    pub attempt: u32,
    /// How many attempts the run may make.
    pub max_attempts: u32,
    /// Where to execute it.
    pub executor: ExecutorKind,
    /// Higher runs first.
    pub priority: i32,
    /// How long the attempt may run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The base of the retry back-off, in milliseconds.
    pub retry_delay_ms: u64,
    /// When the run was submitted (ms since the epoch).
    pub created_at_ms: i64,
    /// When the lease ends unless renewed (ms since the epoch, the
    /// server's clock).
    pub lease_until_ms: i64,
}

/// An update: renewals of the worker's leases (with progress), log lines,
/// and at most one attempt's outcome. It doubles as the heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The attempts whose leases to renew.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub renewals: Vec<LeaseRenewal>,
    /// Log lines of runs the worker executes or executed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10_000))]
    pub logs: Vec<WorkerLogLine>,
    /// How an attempt ended.
    #[serde(default)]
    pub report: Option<AttemptReport>,
}

/// A lease to renew, with the attempt's progress since the last renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRenewal {
    /// The run.
    pub task_id: String,
    /// The attempt the worker holds.
    pub attempt: u32,
    /// Its progress, when it changed.
    #[serde(default)]
    pub progress: Option<RunProgress>,
}

/// A line a run logged on the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerLogLine {
    /// The run.
    pub task_id: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Its level.
    pub level: Level,
    /// The text.
    pub message: String,
}

/// How a worker's attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptReport {
    /// The run.
    pub task_id: String,
    /// The attempt that ended.
    pub attempt: u32,
    /// How.
    pub outcome: ReportedOutcome,
    /// Its last progress.
    #[serde(default)]
    pub progress: Option<RunProgress>,
}

/// An attempt's end, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ReportedOutcome {
    /// It returned a result.
    Completed {
        /// The result.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        result: Value,
    },
    /// It failed; retried from `retry_at_ms` when attempts are left.
    Failed {
        /// A stable word: `failed`, `panicked`, `timeout`, …
        kind: String,
        /// What happened.
        message: String,
        /// When to retry (ms since the epoch); none for no retry.
        #[serde(default)]
        retry_at_ms: Option<i64>,
    },
    /// The worker hands the run back unexecuted (it is stopping).
    Released,
}

/// The server's answer to an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateReply {
    /// Renewed runs the worker no longer holds (cancelled, re-queued): stop
    /// them.
    pub lost: Vec<String>,
    /// The log lines as stored, with their sequence numbers.
    pub logs: Vec<LogLine>,
    /// Runs whose lines were not stored: this worker never held them.
    #[serde(default)]
    pub refused_logs: Vec<String>,
    /// The reported run as it is now.
    pub run: Option<TaskRun>,
}

/// An admin's revocation of a worker (`POST /api/v1/polling/revoke`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The worker, as `GET /api/v1/workers` names it.
    pub worker_id: String,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeReply {
    /// The worker.
    pub worker_id: String,
    /// The runs it held, back in the queue (or failed, at their last
    /// attempt).
    pub taken_back: Vec<String>,
}
