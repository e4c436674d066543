//! A real store with some of its calls intercepted: a test that needs a
//! store to fail on purpose, or to answer at a moment it chooses, overrides
//! only those calls of [`Hooks`]; every other call reaches the real store.

use std::sync::Arc;

use taskflow::Level;
use taskflow::registry::BoxFuture;
use taskflow::run::{Run, RunId, Timestamp};
use taskflow::store::{self, ClaimRequest, NewRun, Page, Renewal, Report, RunFilter, Store, StoredLogLine, Submitted};

/// The calls a test may intercept; each defaults to the real store's.
pub trait Hooks: Send + Sync + 'static {
    /// [`Store::heartbeat`].
    fn heartbeat(
        &self,
        inner: &Arc<dyn Store>,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        inner.heartbeat(worker_id, runs, lease_until)
    }

    /// [`Store::finish`].
    fn finish(&self, inner: &Arc<dyn Store>, report: Report) -> BoxFuture<store::Result<Run>> {
        inner.finish(report)
    }

    /// [`Store::claim`].
    fn claim(&self, inner: &Arc<dyn Store>, request: ClaimRequest) -> BoxFuture<store::Result<Vec<Run>>> {
        inner.claim(request)
    }

    /// [`Store::append_logs`].
    fn append_logs(
        &self,
        inner: &Arc<dyn Store>,
        lines: Vec<(RunId, Timestamp, Level, String)>,
    ) -> BoxFuture<store::Result<Vec<StoredLogLine>>> {
        inner.append_logs(lines)
    }
}

/// The store `inner` with the calls `hooks` intercepts.
pub struct Hooked<H> {
    pub inner: Arc<dyn Store>,
    pub hooks: H,
}

impl<H: Hooks> Store for Hooked<H> {
    fn submit(&self, new: NewRun) -> BoxFuture<store::Result<Submitted>> {
        self.inner.submit(new)
    }
    fn claim(&self, request: ClaimRequest) -> BoxFuture<store::Result<Vec<Run>>> {
        self.hooks.claim(&self.inner, request)
    }
    fn heartbeat(
        &self,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        self.hooks.heartbeat(&self.inner, worker_id, runs, lease_until)
    }
    fn finish(&self, report: Report) -> BoxFuture<store::Result<Run>> {
        self.hooks.finish(&self.inner, report)
    }
    fn cancel(&self, id: RunId, now: Timestamp) -> BoxFuture<store::Result<Run>> {
        self.inner.cancel(id, now)
    }
    fn delete(&self, id: RunId, force: bool) -> BoxFuture<store::Result<()>> {
        self.inner.delete(id, force)
    }
    fn rescue_expired(&self, now: Timestamp) -> BoxFuture<store::Result<Vec<Run>>> {
        self.inner.rescue_expired(now)
    }
    fn prune(&self, before: Timestamp) -> BoxFuture<store::Result<u64>> {
        self.inner.prune(before)
    }
    fn append_logs(
        &self,
        lines: Vec<(RunId, Timestamp, Level, String)>,
    ) -> BoxFuture<store::Result<Vec<StoredLogLine>>> {
        self.hooks.append_logs(&self.inner, lines)
    }
    fn get(&self, id: RunId) -> BoxFuture<store::Result<Option<Run>>> {
        self.inner.get(id)
    }
    fn list(&self, filter: RunFilter) -> BoxFuture<store::Result<Page<Run>>> {
        self.inner.list(filter)
    }
    fn logs(&self, id: RunId, after: u64, limit: u32) -> BoxFuture<store::Result<Vec<StoredLogLine>>> {
        self.inner.logs(id, after, limit)
    }
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<store::Change>> {
        self.inner.changes()
    }

    fn add_provision_token(&self, token: store::NewProvisionToken) -> BoxFuture<store::Result<()>> {
        self.inner.add_provision_token(token)
    }

    fn register_worker(&self, registration: store::Registration) -> BoxFuture<store::Result<store::WorkerRecord>> {
        self.inner.register_worker(registration)
    }

    fn worker_by_token(&self, token_hash: String) -> BoxFuture<store::Result<Option<store::WorkerRecord>>> {
        self.inner.worker_by_token(token_hash)
    }

    fn workers(&self) -> BoxFuture<store::Result<Vec<store::WorkerRecord>>> {
        self.inner.workers()
    }

    fn worker_seen(&self, worker_id: String, now: Timestamp) -> BoxFuture<store::Result<()>> {
        self.inner.worker_seen(worker_id, now)
    }

    fn revoke_worker(&self, worker_id: String, now: Timestamp) -> BoxFuture<store::Result<Vec<Run>>> {
        self.inner.revoke_worker(worker_id, now)
    }
}
