//! The engine: a [worker](crate::worker) on the [`Store`] plus the
//! server's maintenance of it. The worker claims pending
//! runs under a lease, executes them on the executor each run names, renews
//! their leases by heartbeat and reports each attempt's outcome (with
//! retries and back-off); the maintenance re-queues runs whose worker died,
//! prunes old runs, and follows other processes' changes. Every status
//! change and log line is published as a [`RunEvent`].
//!
//! The queue lives in the store, never in memory: a run is only ever taken
//! from the store by a claim, so a crash loses nothing — the lease of a
//! claimed run expires and the rescuer puts it back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use crate::events::{RunEvent, StatusOrder};
use crate::executor::{DockerExecutorConfig, Executors, ProcessExecutorConfig, ThreadExecutorConfig};
use crate::run::{Run, RunId};
use crate::server::{Maintenance, ServerConfig};
use crate::store::{NewRun, Store};
use crate::task::registry;
use crate::worker::{LocalSource, Reservation, WorkSource, Worker, WorkerConfig, random_u64};

/// Timings and limits of an [`Engine`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// This worker's name in leases; unique per process.
    pub worker_id: String,
    /// How many runs execute at once.
    pub max_concurrency: usize,
    /// How often an idle engine looks for runs (a local submit wakes it at
    /// once).
    pub poll_interval: Duration,
    /// How long a claim holds a run without a heartbeat.
    pub lease: Duration,
    /// How often leases are renewed: under half the `lease`, so that one
    /// late renewal does not lose it ([`Engine::start`] refuses more).
    pub heartbeat_interval: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// Final runs older than this are deleted with their logs; `None` keeps
    /// them forever.
    pub retention: Option<Duration>,
    /// The most log text one attempt of a run may store, in bytes; past it
    /// one warning says the log was truncated and later lines are dropped
    /// (a task flooding its output cannot fill the store or the memory).
    pub max_log_bytes: usize,
    /// The process executor's settings (which program is re-executed).
    pub process: ProcessExecutorConfig,
    /// The Docker executor's settings (the engine's socket, the app's name,
    /// limits); unused in a build without the `docker` feature.
    pub docker: DockerExecutorConfig,
    /// Whether the engine executes runs itself (the default). A server that
    /// leaves every run to remote workers (`--assignment-mode polling`)
    /// keeps the rest: the rescuer, retention, the change follower.
    pub executes: bool,
    /// The queues whose runs the engine executes (`#[task(queue = …)]`);
    /// `None` (the default) for every queue.
    pub queues: Option<Vec<String>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            worker_id: default_worker_id(),
            max_concurrency: 32,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            rescue_interval: Duration::from_secs(5),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            max_log_bytes: 10 * 1024 * 1024,
            process: ProcessExecutorConfig::default(),
            docker: DockerExecutorConfig::default(),
            executes: true,
            queues: None,
        }
    }
}

/// The host's name, the process id and 64 random bits: containers all run
/// as pid 1, and shells do not export `$HOSTNAME`, so the random part is
/// what keeps two workers apart (fencing rests on the worker's name).
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    format!("{host}-{}-{:016x}", std::process::id(), random_u64())
}

/// Why an [`Engine`] did not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The tasks linked in are inconsistent.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The heartbeat is not well under the lease: every lease would expire
    /// before, or just as, it is renewed, and runs would be executed again.
    #[error(
        "the heartbeat interval ({heartbeat:?}) must be under half the lease ({lease:?}), so one late renewal does \
         not lose a run; lengthen the lease or shorten the heartbeat"
    )]
    Timing {
        /// The lease asked for.
        lease: Duration,
        /// The heartbeat interval asked for.
        heartbeat: Duration,
    },
}

/// The embedded worker and the server's maintenance. Cheap to clone; all
/// clones drive one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// Checks `config` and starts a worker on `source` with the built-in
/// executors.
fn start_worker(
    source: Arc<dyn WorkSource>,
    mut config: EngineConfig,
) -> Result<(Worker, EngineConfig, broadcast::Sender<RunEvent>, CancellationToken), StartError> {
    registry::check()?;
    if config.heartbeat_interval.is_zero() || config.heartbeat_interval * 2 >= config.lease {
        return Err(StartError::Timing { lease: config.lease, heartbeat: config.heartbeat_interval });
    }
    config.max_concurrency = config.max_concurrency.max(1);
    let (events, _) = broadcast::channel(4096);
    let shutdown = CancellationToken::new();
    let executors = Executors::built_in(
        ThreadExecutorConfig::with_max_concurrency(config.max_concurrency),
        config.process.clone(),
        config.docker.clone(),
    );
    let worker_config = WorkerConfig {
        worker_id: config.worker_id.clone(),
        max_concurrency: config.max_concurrency,
        poll_interval: config.poll_interval,
        lease: config.lease,
        heartbeat_interval: config.heartbeat_interval,
        max_log_bytes: config.max_log_bytes,
        claims: config.executes,
        queues: config.queues.clone(),
    };
    let worker = Worker::start(source, worker_config, executors, events.clone(), shutdown.clone());
    Ok((worker, config, events, shutdown))
}

/// A worker on a source of its own, with no store and no maintenance: a
/// remote worker, whose source is the control plane over the network. It
/// claims, executes on the built-in executors, renews its leases and
/// reports; the server it works for rescues its runs if it dies.
pub struct RemoteWorker {
    worker: Worker,
}

impl std::fmt::Debug for RemoteWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWorker").field("running", &self.running_count()).finish_non_exhaustive()
    }
}

impl RemoteWorker {
    /// Starts the worker on the current Tokio runtime, on `source`, with
    /// the timings and executors of `config` (its `worker_id` is the one
    /// the source answers to; its store-side settings are unused).
    ///
    /// # Errors
    /// As [`Engine::start`].
    pub fn start(source: Arc<dyn WorkSource>, config: EngineConfig) -> Result<RemoteWorker, StartError> {
        let (worker, ..) = start_worker(source, config)?;
        Ok(RemoteWorker { worker })
    }

    /// How many runs it holds now.
    pub fn running_count(&self) -> usize {
        self.worker.running_count()
    }

    /// Stops claiming, lets running runs finish for `grace`, then hands the
    /// rest back to the queue.
    pub async fn shutdown(&self, grace: Duration) {
        self.worker.shutdown(grace).await;
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: EngineConfig,
    worker: Worker,
    events: broadcast::Sender<RunEvent>,
}

impl Engine {
    /// Starts the engine on the current Tokio runtime: the worker (claim
    /// loop, heartbeat, log writer, its executors) on the store, and the
    /// maintenance (rescuer, change follower).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    ///
    /// # Errors
    /// When the tasks linked in are inconsistent (two with one title): an
    /// engine never runs with one silently shadowing the other; and when the
    /// heartbeat interval is not under half the lease.
    pub fn start(store: Arc<dyn Store>, config: EngineConfig) -> Result<Engine, StartError> {
        let source = Arc::new(LocalSource(store.clone()));
        let (worker, config, events, shutdown) = start_worker(source, config)?;
        let server_config = ServerConfig { rescue_interval: config.rescue_interval, retention: config.retention };
        Maintenance::start(store.clone(), server_config, worker.clone(), shutdown);
        Ok(Engine { inner: Arc::new(Inner { store, config, worker, events }) })
    }

    /// The store the engine works on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Whether each executor of this engine can run here (thread, process,
    /// docker), with its settings: the detail names the Docker engine's
    /// version, or the connection error and how to fix it.
    pub async fn availability(&self) -> Vec<crate::executor::Availability> {
        self.inner.worker.availability().await
    }

    /// Receives every status change and log line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// The sender of the engine's events, for a client sharing them.
    pub(crate) fn events(&self) -> broadcast::Sender<RunEvent> {
        self.inner.events.clone()
    }

    /// Wakes the claim loop: a run may be waiting.
    pub(crate) fn wake(&self) {
        self.inner.worker.wake();
    }

    /// Takes a slot for `new`, to be claimed at its submit, when it can
    /// start at once without overtaking anything: this engine executes its
    /// task, has a free slot, and no run is known to wait; the task has no
    /// concurrency limit (the store counts those) and the run no delay.
    /// The slot is the reservation's until the run starts or it is dropped.
    pub(crate) fn reserve(&self, new: &NewRun) -> Option<Reservation> {
        self.inner.worker.reserve(new)
    }

    /// Starts a run its submit claimed for this engine under `reservation`
    /// (or hands it back, if the engine is shutting down meanwhile).
    pub(crate) fn start_claimed(&self, run: Run, reservation: Reservation) {
        self.inner.worker.start_claimed(run, reservation);
    }

    /// Signals the context of a run executing here, if it is.
    pub(crate) fn cancel_local(&self, id: RunId) {
        self.inner.worker.cancel_local(id);
    }

    /// How many runs this engine holds now: executing, or storing the
    /// outcome of their attempt.
    pub fn running_count(&self) -> usize {
        self.inner.worker.running_count()
    }

    /// Stops claiming, gives back runs still executing after `grace` (they
    /// go back to pending at once for another worker), and stops the loops.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.worker.shutdown(grace).await;
    }
}
