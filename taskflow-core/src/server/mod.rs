//! The server's maintenance of the store, beside its local worker: the
//! rescuer re-queues the runs of workers whose leases expired and prunes
//! old runs; the change follower turns what other processes sharing the
//! store did into the local worker's wake-ups and cancels and into
//! [`RunEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::events::RunEvent;
use crate::run::{self, Timestamp};
use crate::store::{Change, Store};
use crate::supervise::supervise;
use crate::worker::{Worker, log_error};

/// The timings of the maintenance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerConfig {
    /// How often expired leases are looked for.
    pub(crate) rescue_interval: Duration,
    /// Final runs older than this are deleted with their logs; `None` keeps
    /// them forever.
    pub(crate) retention: Option<Duration>,
}

/// The maintenance loops of a server, over its store, next to its local
/// worker (woken when runs are re-queued, told of runs cancelled
/// elsewhere), publishing through the worker's events.
#[derive(Clone)]
pub(crate) struct Maintenance {
    store: Arc<dyn Store>,
    config: ServerConfig,
    worker: Worker,
    shutdown: CancellationToken,
}

impl Maintenance {
    /// Starts the rescuer and, if the store announces changes, the change
    /// follower; both end when `shutdown` is cancelled.
    pub(crate) fn start(store: Arc<dyn Store>, config: ServerConfig, worker: Worker, shutdown: CancellationToken) {
        let maintenance = Maintenance { store, config, worker, shutdown };
        let rescuer = maintenance.clone();
        supervise("rescue", move || rescuer.clone().rescue_loop());
        if let Some(changes) = maintenance.store.changes() {
            // A restart subscribes again; what it missed is made up by a
            // wake-up, as after a lag.
            let changes = std::sync::Mutex::new(Some(changes));
            supervise("change follower", move || {
                let maintenance = maintenance.clone();
                let changes = changes.lock().unwrap_or_else(|e| e.into_inner()).take();
                async move {
                    let changes = match changes {
                        Some(changes) => changes,
                        None => match maintenance.store.changes() {
                            Some(changes) => {
                                maintenance.worker.wake();
                                changes
                            }
                            None => return,
                        },
                    };
                    maintenance.follow_changes(changes).await;
                }
            });
        }
    }

    async fn rescue_loop(self) {
        let config = &self.config;
        loop {
            match self.store.rescue_expired(Timestamp::now()).await {
                Ok(runs) => {
                    if !runs.is_empty() {
                        self.worker.wake();
                    }
                    for run in runs {
                        self.worker.publish(RunEvent::Status(Box::new(run)));
                    }
                }
                Err(error) => log_error("re-queuing runs of dead workers", &error),
            }
            if let Some(retention) = config.retention {
                let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                let before = Timestamp(Timestamp::now().millis().saturating_sub(age));
                if let Err(error) = self.store.prune(before).await {
                    log_error("pruning old runs", &error);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(config.rescue_interval) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Follows the changes announced by the store: claims new pending runs
    /// at once and stops local runs cancelled elsewhere, without waiting for
    /// the next claim or heartbeat; and publishes runs changed by other
    /// processes sharing the store. What this process changed through the
    /// engine's store it has published already (the worker its claims and
    /// outcomes, a [`Client`](crate::Client) of the engine its submits and
    /// cancels), so those are not read back: one read per change would
    /// cost a round trip for every write.
    async fn follow_changes(self, mut changes: broadcast::Receiver<Change>) {
        loop {
            let change = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.worker.wake();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            match change.status {
                Some(run::RunStatus::Pending) => self.worker.wake(),
                // Cancelled or deleted on another server: a run executing
                // here stops now, not at its next heartbeat.
                Some(run::RunStatus::Cancelled) | None => self.worker.cancel_local(change.id),
                _ => {}
            }
            if change.own {
                continue;
            }
            if change.status.is_none() {
                self.worker.publish(RunEvent::Deleted(change.id));
                continue;
            }
            match self.store.get(change.id).await {
                Ok(Some(run)) => {
                    // Cancelled since, perhaps, if the change said otherwise.
                    if run.status == run::RunStatus::Cancelled {
                        self.worker.cancel_local(run.id);
                    }
                    self.worker.publish(RunEvent::Status(Box::new(run)));
                }
                Ok(None) => self.worker.publish(RunEvent::Deleted(change.id)),
                Err(error) => log_error("reading a changed run", &error),
            }
        }
    }
}
