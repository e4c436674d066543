//! [`WorkSource`]: where a worker gets its runs and sends what became of
//! them. The embedded engine's source is the store itself
//! ([`LocalSource`]); a remote worker's is the control plane.

use std::sync::Arc;
use std::time::Duration;

use crate::future::BoxFuture;
use crate::log::Level;
use crate::run::{Run, RunId, Timestamp};
use crate::store::{ClaimRequest, Renewal, Report, Result, Store, StoredLogLine};

/// What a worker needs of the place its work comes from: claim runs under a
/// lease, renew the leases it holds, report each attempt's outcome, store
/// log lines, and read a run back.
///
/// The answers and errors are the store's: a source over a network reports
/// an unreachable peer as
/// [`DatabaseErrorKind::Unavailable`](crate::store::DatabaseErrorKind::Unavailable),
/// so the worker retries it as it retries a database outage, and a refused
/// report as [`Error::StaleAttempt`](crate::store::Error::StaleAttempt).
pub trait WorkSource: Send + Sync + 'static {
    /// Claims up to `request.limit` pending runs for `request.worker_id`.
    fn claim(&self, request: ClaimRequest) -> BoxFuture<Result<Claimed>>;

    /// Renews the leases of `held` (run and attempt) until `until`; answers
    /// the runs this worker no longer holds, to be stopped.
    fn heartbeat(&self, worker_id: String, held: Vec<Renewal>, until: Timestamp) -> BoxFuture<Result<Vec<RunId>>>;

    /// Stores how an attempt ended; refuses a stale one.
    fn finish(&self, report: Report) -> BoxFuture<Result<Run>>;

    /// Stores log lines; answers them with their sequence numbers.
    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<Vec<StoredLogLine>>>;

    /// Reads a run.
    fn get(&self, id: RunId) -> BoxFuture<Result<Option<Run>>>;
}

/// The runs a claim took, and how long after the claim reached the source
/// their leases began: a long poll waits before it leases, and the worker
/// counts each lease from the moment it asked plus this wait (a lease is
/// never believed to last longer than the one stored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claimed {
    /// The runs, each now the claimer's under a lease.
    pub runs: Vec<Run>,
    /// How long the source waited before leasing them.
    pub waited: Duration,
}

/// The store as a worker's source: the embedded engine's worker claims from
/// and reports to the store it shares with the server.
#[derive(Clone)]
pub struct LocalSource(pub Arc<dyn Store>);

impl std::fmt::Debug for LocalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LocalSource").finish_non_exhaustive()
    }
}

impl WorkSource for LocalSource {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<Result<Claimed>> {
        let claim = self.0.claim(request);
        Box::pin(async move { Ok(Claimed { runs: claim.await?, waited: Duration::ZERO }) })
    }

    fn heartbeat(&self, worker_id: String, held: Vec<Renewal>, until: Timestamp) -> BoxFuture<Result<Vec<RunId>>> {
        self.0.heartbeat(worker_id, held, until)
    }

    fn finish(&self, report: Report) -> BoxFuture<Result<Run>> {
        self.0.finish(report)
    }

    fn append_logs(&self, lines: Vec<(RunId, Timestamp, Level, String)>) -> BoxFuture<Result<Vec<StoredLogLine>>> {
        self.0.append_logs(lines)
    }

    fn get(&self, id: RunId) -> BoxFuture<Result<Option<Run>>> {
        self.0.get(id)
    }
}
