//! The engine: the embedded worker of push mode. It claims pending runs from
//! the [`Store`] under a lease, executes them on the executor each run names
//! (thread, process or docker),
//! renews their leases by heartbeat, reports each attempt's outcome (with
//! retries and back-off), re-queues runs whose worker died, prunes old runs,
//! and publishes every status change and log line as a [`RunEvent`].
//!
//! The queue lives in the store, never in memory: a run is only ever taken
//! from the store by a claim, so a crash loses nothing — the lease of a
//! claimed run expires and the rescuer puts it back.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::executor::{DockerExecutorConfig, Executors, ProcessExecutorConfig, ThreadExecutorConfig};
use crate::run::{self, Run, RunError, RunId, Timestamp};
use crate::store::{self, Change, ClaimRequest, NewRun, Outcome, Report, Store, StoredLogLine, SubmitClaim};
use crate::task::context::{LogLine, Progress, RunSink, TaskContext};
use crate::task::registry;

/// How long a failed report waits before it is tried again: first, and at
/// most.
const REPORT_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

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
    /// How often leases are renewed (well under `lease`).
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
        }
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), random_u64() & 0xffff)
}

/// A random number for jitter and names; no cryptographic quality needed.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Something that happened to a run, for live views.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run changed status (or was created); the run as it is now.
    Status(Box<Run>),
    /// The run logged a line.
    Log(StoredLogLine),
    /// The run reported progress.
    Progress {
        /// The run.
        run_id: RunId,
        /// How far it has come.
        progress: Progress,
    },
    /// The run was deleted.
    Deleted(RunId),
}

impl RunEvent {
    /// The run the event is about.
    pub fn run_id(&self) -> RunId {
        match self {
            RunEvent::Status(run) => run.id,
            RunEvent::Log(line) => line.run_id,
            RunEvent::Progress { run_id, .. } => *run_id,
            RunEvent::Deleted(id) => *id,
        }
    }
}

/// The embedded worker. Cheap to clone; all clones drive one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: EngineConfig,
    executors: Executors,
    events: broadcast::Sender<RunEvent>,
    /// Runs executing here: their attempt and context (to cancel them).
    running: Mutex<HashMap<RunId, (u32, TaskContext)>>,
    /// Whether a claim is in flight (shutdown waits for it to settle).
    claiming: std::sync::atomic::AtomicBool,
    /// Slots promised to runs being submitted with a claim
    /// ([`Engine::reserve`]); counted as taken until the run starts.
    reserved: AtomicUsize,
    /// Counts the times the queue may have gained a run for this engine (a
    /// local submit stored pending, a retry, a rescue, another process's
    /// submit).
    queued: AtomicU64,
    /// The value of `queued` when a claim last came back with fewer runs
    /// than it asked for: while the two are equal nothing is known to wait,
    /// and a submit may claim its run itself without overtaking any.
    drained: AtomicU64,
    /// Woken by local submits and finished runs, so claims need no polling.
    wake: Notify,
    /// The tasks this binary has, from the registry: only their runs are
    /// claimed.
    titles: Vec<String>,
    /// The tasks with a concurrency limit, from the registry.
    task_limits: Vec<(String, u32)>,
    /// Log lines on their way to the store.
    logs: mpsc::UnboundedSender<(RunId, LogLine)>,
    shutdown: CancellationToken,
}

impl Engine {
    /// Starts the engine on the current Tokio runtime: the claim loop, the
    /// heartbeat, the rescuer and the log writer.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    ///
    /// # Errors
    /// When the tasks linked in are inconsistent (two with one title): an
    /// engine never runs with one silently shadowing the other.
    pub fn start(store: Arc<dyn Store>, mut config: EngineConfig) -> Result<Engine, registry::RegistryError> {
        registry::check()?;
        config.max_concurrency = config.max_concurrency.max(1);
        let (events, _) = broadcast::channel(4096);
        let (logs, log_rx) = mpsc::unbounded_channel();
        let executors = Executors::built_in(
            ThreadExecutorConfig::with_max_concurrency(config.max_concurrency),
            config.process.clone(),
            config.docker.clone(),
        );
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                config,
                executors,
                events,
                running: Mutex::new(HashMap::new()),
                claiming: std::sync::atomic::AtomicBool::new(false),
                reserved: AtomicUsize::new(0),
                // Not drained: the store may hold runs from before the start.
                queued: AtomicU64::new(1),
                drained: AtomicU64::new(0),
                wake: Notify::new(),
                titles: registry::tasks().map(|def| def.title().to_owned()).collect(),
                task_limits: registry::tasks()
                    .filter_map(|def| def.options().concurrency.map(|n| (def.title().to_owned(), n)))
                    .collect(),
                logs,
                shutdown: CancellationToken::new(),
            }),
        };
        tokio::spawn(engine.clone().claim_loop());
        tokio::spawn(engine.clone().heartbeat_loop());
        tokio::spawn(engine.clone().rescue_loop());
        tokio::spawn(engine.clone().log_writer(log_rx));
        engine.inner.executors.start();
        if let Some(changes) = engine.inner.store.changes() {
            tokio::spawn(engine.clone().follow_changes(changes));
        }
        Ok(engine)
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
        self.inner.executors.availability().await
    }

    /// Receives every status change and log line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// The sender of the engine's events, for a client sharing them.
    pub(crate) fn events(&self) -> broadcast::Sender<RunEvent> {
        self.inner.events.clone()
    }

    /// Publishes an event to subscribers (none listening is fine).
    pub(crate) fn publish(&self, event: RunEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Wakes the claim loop: a run may be waiting.
    pub(crate) fn wake(&self) {
        self.inner.queued.fetch_add(1, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Whether the last claim found the queue empty and nothing has been
    /// queued since (by this process, or by another one that said so).
    fn drained(&self) -> bool {
        self.inner.drained.load(Ordering::SeqCst) == self.inner.queued.load(Ordering::SeqCst)
    }

    /// Takes a slot for `new`, to be claimed at its submit, when it can
    /// start at once without overtaking anything: this engine executes its
    /// task, has a free slot, and no run is known to wait; the task has no
    /// concurrency limit (the store counts those) and the run no delay.
    /// The slot is the reservation's until the run starts or it is dropped.
    pub(crate) fn reserve(&self, new: &NewRun) -> Option<Reservation> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled()
            || new.not_before.is_some()
            || !self.drained()
            || !inner.titles.contains(&new.task_title)
            || inner.task_limits.iter().any(|(title, _)| *title == new.task_title)
        {
            return None;
        }
        let reserved = inner.reserved.fetch_add(1, Ordering::SeqCst) + 1;
        let reservation = Reservation { engine: self.clone() };
        (self.running_count() + reserved <= inner.config.max_concurrency).then_some(reservation)
    }

    /// Starts a run its submit claimed for this engine under `reservation`
    /// (or hands it back, if the engine is shutting down meanwhile).
    pub(crate) fn start_claimed(&self, run: Run, reservation: Reservation) {
        if self.inner.shutdown.is_cancelled() {
            let engine = self.clone();
            tokio::spawn(async move {
                engine.release(&run).await;
                drop(reservation);
            });
            return;
        }
        // Counted as running before the reservation lets go of the slot.
        self.start_run(run);
        drop(reservation);
    }

    /// Signals the context of a run executing here, if it is.
    pub(crate) fn cancel_local(&self, id: RunId) {
        if let Some((_, ctx)) = self.lock_running().get(&id) {
            ctx.cancel();
        }
    }

    /// Signals the context of a run executing here if it executes
    /// `attempt`: a report about an older attempt must not stop a newer one.
    fn cancel_attempt(&self, id: RunId, attempt: u32) {
        if let Some((_, ctx)) = self.lock_running().get(&id).filter(|(held, _)| *held == attempt) {
            ctx.cancel();
        }
    }

    /// Lets go of a run's `attempt` once its outcome is stored, unless a
    /// newer attempt of the run has started here since.
    fn forget(&self, id: RunId, attempt: u32) {
        let mut running = self.lock_running();
        if running.get(&id).is_some_and(|(held, _)| *held == attempt) {
            running.remove(&id);
        }
    }

    /// How many runs this engine holds now: executing, or storing the
    /// outcome of their attempt.
    pub fn running_count(&self) -> usize {
        self.lock_running().len()
    }

    /// Stops claiming, gives back runs still executing after `grace` (they
    /// go back to pending at once for another worker), and stops the loops.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        // A claim in flight, or a submit claiming its run, either starts its
        // runs (counted below) or, seeing the shutdown, hands them back.
        while self.inner.claiming.load(Ordering::SeqCst) || self.inner.reserved.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let deadline = Deadline::after(grace);
        while self.running_count() > 0 && !deadline.has_passed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<TaskContext> = self.lock_running().values().map(|(_, ctx)| ctx.clone()).collect();
        for ctx in left {
            ctx.cancel();
        }
        // The cancelled runs report `Released` as they unwind.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.running_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.executors.shutdown().await;
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, (u32, TaskContext)>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn claim_loop(self) {
        let config = &self.inner.config;
        loop {
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            let taken = self.running_count() + self.inner.reserved.load(Ordering::SeqCst);
            let free = config.max_concurrency.saturating_sub(taken);
            let mut claimed = 0;
            if free > 0 {
                let queued = self.inner.queued.load(Ordering::SeqCst);
                let request = ClaimRequest {
                    worker_id: config.worker_id.clone(),
                    limit: u32::try_from(free).unwrap_or(u32::MAX),
                    lease: config.lease,
                    executors: self.inner.executors.kinds(),
                    titles: self.inner.titles.clone(),
                    task_limits: self.inner.task_limits.clone(),
                    now: Timestamp::now(),
                };
                self.inner.claiming.store(true, Ordering::SeqCst);
                let result = self.inner.store.claim(request).await;
                match result {
                    Ok(runs) => {
                        claimed = runs.len();
                        if claimed < free {
                            self.inner.drained.store(queued, Ordering::SeqCst);
                        }
                        for run in runs {
                            if self.inner.shutdown.is_cancelled() {
                                // Claimed while shutting down: give it straight back.
                                self.release(&run).await;
                            } else {
                                self.start_run(run);
                            }
                        }
                    }
                    Err(error) => log_error("claiming runs", &error),
                }
                self.inner.claiming.store(false, Ordering::SeqCst);
            }
            if claimed == 0 || claimed < free {
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(config.poll_interval) => {}
                    () = self.inner.shutdown.cancelled() => return,
                }
            }
        }
    }

    fn start_run(&self, run: Run) {
        self.publish(RunEvent::Status(Box::new(run.clone())));
        let sink = Arc::new(EngineSink {
            logs: self.inner.logs.clone(),
            events: self.inner.events.clone(),
            budget: std::sync::atomic::AtomicUsize::new(self.inner.config.max_log_bytes),
            truncated: std::sync::atomic::AtomicBool::new(false),
        });
        let ctx = TaskContext::with_sink(run.id.to_string(), run.attempt, sink);
        let superseded = self.lock_running().insert(run.id, (run.attempt, ctx.clone()));
        // An older attempt of this run still executing here lost its lease
        // and was re-queued: the store refuses its report, so stop it rather
        // than let two attempts of one run execute side by side.
        if let Some((_, older)) = superseded {
            older.cancel();
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let outcome = engine.execute(&run, ctx).await;
            // Still held (its lease renewed by the heartbeat) until its
            // outcome is stored, so a report retried through a database
            // outage is not beaten by the rescuer.
            engine.report(&run, outcome).await;
            engine.forget(run.id, run.attempt);
            // A slot is free: claim what waits, if anything does.
            if !engine.drained() {
                engine.inner.wake.notify_one();
            }
        });
    }

    async fn execute(&self, run: &Run, ctx: TaskContext) -> Result<Value, TaskError> {
        let Some(def) = registry::task_def(&run.task_title) else {
            return Err(TaskError::UnknownTask { title: run.task_title.clone() });
        };
        let timeout = run.timeout_ms.map(Duration::from_millis);
        self.inner.executors.execute(run.executor, def, ctx, run.payload.clone(), timeout).await
    }

    async fn report(&self, run: &Run, result: Result<Value, TaskError>) {
        let now = Timestamp::now();
        let outcome = match result {
            Ok(value) => Outcome::Completed(value),
            // Cancelled by shutdown: give the run back for another worker.
            Err(TaskError::Cancelled) if self.inner.shutdown.is_cancelled() => Outcome::Released,
            Err(error) => {
                let retry_at = (is_retryable(&error) && run.attempt < run.max_attempts).then(|| {
                    let jitter = (random_u64() % 1000) as f64 / 1000.0;
                    run::retry_at(now, run.attempt, Duration::from_millis(run.retry_delay_ms), jitter)
                });
                Outcome::Failed {
                    error: RunError { kind: error.kind().to_owned(), message: error.to_string() },
                    retry_at,
                }
            }
        };
        self.store_outcome(run, outcome).await;
    }

    /// Hands a claimed run back unexecuted (`Released`: pending again, the
    /// attempt not counted).
    async fn release(&self, run: &Run) {
        self.store_outcome(run, Outcome::Released).await;
    }

    /// Stores how this worker's attempt of `run` ended and publishes the run.
    async fn store_outcome(&self, run: &Run, outcome: Outcome) {
        let report = Report {
            id: run.id,
            attempt: run.attempt,
            worker_id: self.inner.config.worker_id.clone(),
            outcome,
            now: Timestamp::now(),
        };
        // A failed write (a dropped connection, the database restarting) is
        // tried again, for as long as a lease lasts: losing the report would
        // throw the attempt's work away, the run being re-queued and executed
        // again once its lease ran out. Retrying is safe: the store fences
        // reports by attempt and worker, so a report that did commit, with
        // only its answer lost, is refused as stale the second time.
        let give_up = Deadline::after(self.inner.config.lease);
        let mut wait = REPORT_RETRY.0;
        let mut retried = false;
        loop {
            match self.inner.store.finish(report.clone()).await {
                Ok(run) => {
                    if run.status == run::RunStatus::Pending {
                        // Retried or released: it waits in the queue again.
                        self.wake();
                    }
                    return self.publish(RunEvent::Status(Box::new(run)));
                }
                // Cancelled, re-queued or deleted meanwhile: the report
                // changes nothing, as it must. After a failed try, the
                // earlier one may have been stored: publish the run as it is.
                Err(error @ (store::Error::StaleAttempt { .. } | store::Error::NotFound(_))) => {
                    tracing::info!(%error, "taskflow engine: the store refused a stale outcome");
                    if retried {
                        if let Ok(Some(run)) = self.inner.store.get(run.id).await {
                            self.publish(RunEvent::Status(Box::new(run)));
                        }
                    }
                    return;
                }
                // A failure that may pass: the database unreachable, busy,
                // deadlocked, or full (an operator frees space; the attempt's
                // work waits for it rather than being thrown away). A damaged
                // row or a bug fails the same way again: left to the rescuer.
                Err(error)
                    if (error.is_transient() || error.database_kind() == Some(store::DatabaseErrorKind::Full))
                        && give_up.is_beyond(wait) =>
                {
                    tracing::warn!(
                        %error,
                        run = %run.id,
                        "taskflow engine: storing a run's outcome failed; retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(REPORT_RETRY.1);
                    retried = true;
                }
                Err(error) => return log_error("storing a run's outcome", &error),
            }
        }
    }

    async fn heartbeat_loop(self) {
        let config = &self.inner.config;
        loop {
            // Leases are renewed through a shutdown's grace period too, or
            // another worker would rescue runs still finishing here.
            tokio::time::sleep(config.heartbeat_interval).await;
            let held: Vec<(RunId, u32)> =
                self.lock_running().iter().map(|(id, (attempt, _))| (*id, *attempt)).collect();
            if held.is_empty() {
                if self.inner.shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            let until = Timestamp::now().plus(config.lease);
            let sent: HashMap<RunId, u32> = held.iter().copied().collect();
            let asked = std::time::Instant::now();
            let renewed = self.inner.store.heartbeat(config.worker_id.clone(), held, until).await;
            // A renewal stored later than the lease it grants loses the runs
            // to the rescuer: say so, since the symptom (stale reports, runs
            // executed twice) shows up far from the cause (a stalled store).
            let took = asked.elapsed();
            if took > config.lease / 2 {
                tracing::warn!(
                    runs = sent.len(),
                    "taskflow engine: renewing leases took {took:?}, over half the {:?} lease; a longer stall \
                     of the store loses them to the rescuer",
                    config.lease
                );
            }
            match renewed {
                // Runs this worker no longer holds (cancelled, re-queued) stop;
                // only the attempt the heartbeat named, since a newer attempt
                // of the same run may have started here while it was asked.
                Ok(lost) => {
                    for id in lost {
                        if let Some(&attempt) = sent.get(&id) {
                            self.cancel_attempt(id, attempt);
                        }
                    }
                }
                Err(error) => log_error("renewing leases", &error),
            }
        }
    }

    async fn rescue_loop(self) {
        let config = &self.inner.config;
        loop {
            match self.inner.store.rescue_expired(Timestamp::now()).await {
                Ok(runs) => {
                    if !runs.is_empty() {
                        self.wake();
                    }
                    for run in runs {
                        self.publish(RunEvent::Status(Box::new(run)));
                    }
                }
                Err(error) => log_error("re-queuing runs of dead workers", &error),
            }
            if let Some(retention) = config.retention {
                let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                let before = Timestamp(Timestamp::now().millis().saturating_sub(age));
                if let Err(error) = self.inner.store.prune(before).await {
                    log_error("pruning old runs", &error);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(config.rescue_interval) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Follows the changes announced by the store: claims new pending runs
    /// at once and stops local runs cancelled elsewhere, without waiting for
    /// the next claim or heartbeat; and publishes runs changed by other
    /// processes sharing the store. What this process changed through the
    /// engine's store it has published already (the engine its claims and
    /// outcomes, a [`Client`](crate::Client) of the engine its submits and
    /// cancels), so those are not read back: one read per change would
    /// cost a round trip for every write.
    async fn follow_changes(self, mut changes: broadcast::Receiver<Change>) {
        loop {
            let change = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.wake();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = self.inner.shutdown.cancelled() => return,
            };
            match change.status {
                Some(run::RunStatus::Pending) => self.wake(),
                Some(run::RunStatus::Cancelled) => self.cancel_local(change.id),
                _ => {}
            }
            if change.own {
                continue;
            }
            if change.status.is_none() {
                self.publish(RunEvent::Deleted(change.id));
                continue;
            }
            match self.inner.store.get(change.id).await {
                Ok(Some(run)) => {
                    // Cancelled since, perhaps, if the change said otherwise.
                    if run.status == run::RunStatus::Cancelled {
                        self.cancel_local(run.id);
                    }
                    self.publish(RunEvent::Status(Box::new(run)));
                }
                Ok(None) => self.publish(RunEvent::Deleted(change.id)),
                Err(error) => log_error("reading a changed run", &error),
            }
        }
    }

    /// Writes log lines in batches: whatever arrived while the last batch was
    /// being written goes in the next.
    async fn log_writer(self, mut rx: mpsc::UnboundedReceiver<(RunId, LogLine)>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 1024).await > 0 {
            let lines: Vec<_> =
                batch.drain(..).map(|(id, line)| (id, Timestamp::from(line.at), line.level, line.message)).collect();
            match self.inner.store.append_logs(lines).await {
                // Subscribers get the lines as stored, with their sequence
                // numbers, so a live view and `logs` agree.
                Ok(stored) => stored.into_iter().for_each(|line| self.publish(RunEvent::Log(line))),
                Err(error) => log_error("storing log lines", &error),
            }
        }
    }
}

/// Payload and lookup errors fail the same way every time: no retry; nor do
/// executor errors that would repeat (a missing image, a result too large).
fn is_retryable(error: &TaskError) -> bool {
    match error {
        TaskError::Failed { .. } | TaskError::Panicked { .. } | TaskError::TimedOut { .. } => true,
        TaskError::Executor(error) => error.is_retryable(),
        _ => false,
    }
}

/// The engine has no caller to return background errors to; they go to the
/// application's `tracing` subscriber (the app installs one).
fn log_error(doing: &str, error: &store::Error) {
    tracing::error!(%error, "taskflow engine: {doing} failed");
}

/// Sends a run's log lines to the engine's log writer.
struct EngineSink {
    logs: mpsc::UnboundedSender<(RunId, LogLine)>,
    events: broadcast::Sender<RunEvent>,
    /// Bytes of log text this attempt may still store.
    budget: std::sync::atomic::AtomicUsize,
    /// Whether the truncation warning was sent.
    truncated: std::sync::atomic::AtomicBool,
}

impl RunSink for EngineSink {
    fn log(&self, run_id: &str, line: LogLine) {
        use std::sync::atomic::Ordering;
        let Ok(id) = run_id.parse() else { return };
        let cost = line.message.len().max(1);
        let fits =
            self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(cost)).is_ok();
        if fits {
            let _ = self.logs.send((id, line));
        } else if !self.truncated.swap(true, Ordering::Relaxed) {
            let warning = LogLine {
                at: line.at,
                level: crate::log::Level::Warn,
                message: "[taskflow] log truncated: this attempt's log reached its size limit (max_log_bytes); \
                          later lines are dropped"
                    .to_owned(),
            };
            let _ = self.logs.send((id, warning));
        }
    }

    /// Progress is live-only: published to subscribers, not stored.
    fn progress(&self, run_id: &str, progress: Progress) {
        if let Ok(run_id) = run_id.parse() {
            let _ = self.events.send(RunEvent::Progress { run_id, progress });
        }
    }
}

/// A slot of an [`Engine`] taken for a run being submitted with a claim
/// ([`Engine::reserve`]); dropping it frees the slot.
pub(crate) struct Reservation {
    engine: Engine,
}

impl Reservation {
    /// The claim the submit asks the store for.
    pub(crate) fn claim(&self) -> SubmitClaim {
        let config = &self.engine.inner.config;
        SubmitClaim { worker_id: config.worker_id.clone(), lease: config.lease }
    }

    /// Whether `run` was claimed for this reservation's engine.
    pub(crate) fn holds(&self, run: &Run) -> bool {
        run.status == run::RunStatus::Running
            && run.worker_id.as_deref() == Some(self.engine.inner.config.worker_id.as_str())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.engine.inner.reserved.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").finish_non_exhaustive()
    }
}
