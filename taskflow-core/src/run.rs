//! Runs: one execution request of a task, its status, and the one state
//! machine every status change goes through ([`transition`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a task's runs execute unless a submit says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
// Exhaustive on purpose: a new kind must get its wire word (`taskflow-web`
// `convert.rs`) and its place wherever kinds are matched; the compiler
// lists them.
pub enum ExecutorKind {
    /// On a thread of the server's process (the default).
    #[default]
    Thread,
    /// In a child process re-executing the app binary as `__run <title>`.
    Process,
    /// In a container of the task's own worker image.
    Docker,
}

impl ExecutorKind {
    /// The name used in options, the API and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Thread => "thread",
            ExecutorKind::Process => "process",
            ExecutorKind::Docker => "docker",
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "thread" => Ok(ExecutorKind::Thread),
            "process" => Ok(ExecutorKind::Process),
            "docker" => Ok(ExecutorKind::Docker),
            _ => Err(format!("unknown executor `{s}`; expected thread, process or docker")),
        }
    }
}

/// A run's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A fresh id.
    pub fn new() -> RunId {
        RunId(uuid::Uuid::now_v7())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(RunId).map_err(|_| format!("`{s}` is not a run id (a UUID)"))
    }
}

/// A point in time: milliseconds since the Unix epoch, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, by the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// This time plus `duration`.
    pub fn plus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

/// Times before the epoch count as the epoch; past `i64::MAX` ms, as that.
impl From<SystemTime> for Timestamp {
    fn from(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting to be claimed (new, or back for another attempt).
    Pending,
    /// Claimed by a worker, under a lease.
    Running,
    /// Finished with a result. Final.
    Completed,
    /// Finished with an error and no attempts left. Final.
    Failed,
    /// Cancelled before it finished. Final.
    Cancelled,
}

impl RunStatus {
    /// Every status, for exhaustive tests and filters.
    pub const ALL: [RunStatus; 5] =
        [RunStatus::Pending, RunStatus::Running, RunStatus::Completed, RunStatus::Failed, RunStatus::Cancelled];

    /// The name used in the store, the API and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has reached its one final state.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`; expected pending, running, completed, failed or cancelled"))
    }
}

/// Why an attempt failed, as stored with the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// [`TaskError::kind`](crate::TaskError::kind): `failed`, `panicked`, `timeout`, `lease_expired`, …
    pub kind: String,
    /// The error's message.
    pub message: String,
}

/// How an attempt of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It produced the run's result.
    Completed,
    /// It failed (an error, a panic, a timeout, its lease lost); the run
    /// was retried if attempts were left.
    Failed,
    /// The run was cancelled (or deleted) while it executed.
    Cancelled,
}

/// One ended attempt of a run, as the store keeps it: a retried run keeps
/// the record (and the error) of every attempt before the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number, from 1.
    pub number: u32,
    /// The worker that executed it.
    pub worker_id: Option<String>,
    /// Where it executed.
    pub executor: ExecutorKind,
    /// When it was claimed.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed, for a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

/// A run as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The task it runs.
    pub task_title: String,
    /// The arguments, as validated at submit (defaults applied).
    pub payload: Value,
    /// Where it is in its life.
    pub status: RunStatus,
    /// The current attempt, from 1.
    pub attempt: u32,
    /// How many attempts it may make (retries + 1).
    pub max_attempts: u32,
    /// Where it executes.
    pub executor: ExecutorKind,
    /// Higher runs first.
    pub priority: i32,
    /// Not claimed before this time (delays and retry back-off).
    pub not_before: Timestamp,
    /// How long one attempt may run.
    pub timeout_ms: Option<u64>,
    /// The base of the exponential retry back-off.
    pub retry_delay_ms: u64,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its current (or last) attempt started.
    pub started_at: Option<Timestamp>,
    /// When it reached its final state.
    pub finished_at: Option<Timestamp>,
    /// The result, once completed.
    pub result: Option<Value>,
    /// The last attempt's error.
    pub error: Option<RunError>,
    /// The worker holding its lease while running.
    pub worker_id: Option<String>,
    /// When the lease ends unless renewed, in the clock leases go by: the
    /// database's on PostgreSQL (see `PostgresStore::connect`), the host's
    /// on SQLite.
    pub lease_until: Option<Timestamp>,
    /// The caller's key that makes a retried submit safe.
    pub idempotency_key: Option<String>,
    /// Its ended attempts, oldest first (a hand-back at shutdown is not an
    /// attempt); the one running now is not among them yet.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// How far the attempt running now (or the last one) has come, as last
    /// stored: the worker stores it with its lease renewals, at most about
    /// once a second, and with the attempt's outcome.
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// How far a run has come: `done` of `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub done: u64,
    /// Steps in all (at least 1).
    pub total: u64,
}

/// What happens to a run; [`transition`] says what status follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A worker claims it.
    Claim,
    /// The attempt produced a result.
    Complete,
    /// The attempt failed; `retry` when attempts are left.
    Fail {
        /// Whether another attempt follows.
        retry: bool,
    },
    /// The worker's lease ran out (it died or stalled); counted as an attempt.
    LeaseExpired {
        /// Whether another attempt follows.
        retry: bool,
    },
    /// Someone cancelled it.
    Cancel,
    /// A worker shutting down gives back a run it has not finished; not
    /// counted as an attempt.
    Release,
}

/// A status change the state machine forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} run cannot {}", event_verb(*event))]
pub struct IllegalTransition {
    /// The status the run had.
    pub from: RunStatus,
    /// What was attempted.
    pub event: Event,
}

fn event_verb(event: Event) -> &'static str {
    match event {
        Event::Claim => "be claimed",
        Event::Complete => "complete",
        Event::Fail { .. } => "fail",
        Event::LeaseExpired { .. } => "have its lease expire",
        Event::Cancel => "be cancelled",
        Event::Release => "be released",
    }
}

/// The one state machine: the status that follows `event` in `from`, or
/// why it cannot happen. Every status change in every store goes through it.
pub fn transition(from: RunStatus, event: Event) -> Result<RunStatus, IllegalTransition> {
    use RunStatus::*;
    let to = match (from, event) {
        (Pending, Event::Claim) => Running,
        (Running, Event::Complete) => Completed,
        (Running, Event::Fail { retry: true } | Event::LeaseExpired { retry: true } | Event::Release) => Pending,
        (Running, Event::Fail { retry: false } | Event::LeaseExpired { retry: false }) => Failed,
        (Pending | Running, Event::Cancel) => Cancelled,
        _ => return Err(IllegalTransition { from, event }),
    };
    Ok(to)
}

/// When attempt `attempt` (from 1) failed at `now`, the time of the next:
/// `base * 2^(attempt - 1)`, capped at an hour, with up to 25% of jitter so
/// that runs failing together do not retry together. `jitter` is in [0, 1).
pub fn retry_at(now: Timestamp, attempt: u32, base: Duration, jitter: f64) -> Timestamp {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = base.saturating_mul(1 << exponent).min(Duration::from_secs(3600));
    let jitter = delay.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
    now.plus(delay + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 8] = [
        Event::Claim,
        Event::Complete,
        Event::Fail { retry: true },
        Event::Fail { retry: false },
        Event::LeaseExpired { retry: true },
        Event::LeaseExpired { retry: false },
        Event::Cancel,
        Event::Release,
    ];

    /// Every (status, event) pair, with the expected outcome written out.
    #[test]
    fn every_pair() {
        use RunStatus::*;
        for from in RunStatus::ALL {
            for event in EVENTS {
                let expected = match (from, event) {
                    (Pending, Event::Claim) => Some(Running),
                    (Pending, Event::Cancel) => Some(Cancelled),
                    (Running, Event::Complete) => Some(Completed),
                    (Running, Event::Fail { retry: true }) => Some(Pending),
                    (Running, Event::Fail { retry: false }) => Some(Failed),
                    (Running, Event::LeaseExpired { retry: true }) => Some(Pending),
                    (Running, Event::LeaseExpired { retry: false }) => Some(Failed),
                    (Running, Event::Cancel) => Some(Cancelled),
                    (Running, Event::Release) => Some(Pending),
                    _ => None,
                };
                assert_eq!(transition(from, event).ok(), expected, "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn final_states_accept_nothing() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for event in EVENTS {
                assert_eq!(transition(from, event), Err(IllegalTransition { from, event }));
            }
        }
        let error = transition(RunStatus::Completed, Event::Cancel).unwrap_err();
        assert_eq!(error.to_string(), "a completed run cannot be cancelled");
    }

    #[test]
    fn back_off_doubles_with_bounded_jitter() {
        let now = Timestamp(1_000_000);
        let base = Duration::from_secs(1);
        assert_eq!(retry_at(now, 1, base, 0.0), Timestamp(1_001_000));
        assert_eq!(retry_at(now, 2, base, 0.0), Timestamp(1_002_000));
        assert_eq!(retry_at(now, 4, base, 0.0), Timestamp(1_008_000));
        assert_eq!(retry_at(now, 1, base, 0.999).0, 1_001_249);
        assert_eq!(retry_at(now, 40, base, 0.0), Timestamp(1_000_000 + 3_600_000));
    }

    #[test]
    fn names_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        assert!("done".parse::<RunStatus>().is_err());
        let id = RunId::new();
        assert_eq!(id.to_string().parse::<RunId>(), Ok(id));
        assert!(RunId::new() > id, "ids sort by creation");
    }
}
