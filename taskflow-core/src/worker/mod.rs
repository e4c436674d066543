//! The worker: a fixed number of slots, the claim loop that fills them from
//! a [`WorkSource`], the execution of each claimed run on the executor it
//! names, the heartbeat that renews the leases of the runs it holds, the
//! report of each attempt's outcome (retried while the source is
//! unreachable), and the log sink that batches a run's lines on their way.
//!
//! The worker knows nothing of where its work comes from: the embedded
//! engine gives it the store ([`LocalSource`]); a remote worker gives it
//! the control plane over the network.

mod lease;
mod sink;
mod slots;
mod source;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use slots::Reservation;
pub use source::{Claimed, LocalSource, WorkSource};

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::events::RunEvent;
use crate::executor::{Availability, Executors};
use crate::run::{self, Progress, Run, RunError, RunId, Timestamp};
use crate::store::{self, ClaimRequest, NewRun, Outcome, Renewal, Report};
use crate::supervise::supervise;
use crate::task::context::{LogLine, TaskContext};
use crate::task::registry::{self, catch_panic_async};
use lease::Lease;
use sink::{ProgressCell, WorkerSink};

/// How long a failed report waits before it is tried again: first, and at
/// most.
const REPORT_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The longest a claim loop waits after failed claims before it asks again.
const CLAIM_BACKOFF: Duration = Duration::from_secs(5);

/// How soon after the last renewal a progress report brings the next one
/// forward: progress reaches the store within about this long, at the cost
/// of at most one renewal of this worker's leases per interval.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A run's attempt: the key of what a worker holds. Two attempts of one run
/// are two entries, so the end of one never touches the other.
type AttemptKey = (RunId, u32);

/// An attempt this worker holds: executing, storing its outcome, or with
/// its outcome stored while its code still runs (a sync task's thread after
/// a timeout or cancel), when it keeps its slot until the code returns.
struct Held {
    ctx: TaskContext,
    title: String,
    lease: Arc<Lease>,
    /// Its progress, stored with the renewals.
    progress: Arc<ProgressCell>,
    /// Whether the heartbeat renews its lease: until its outcome is stored,
    /// or a newer attempt of the run starts here.
    renewing: bool,
}

/// The timings and limits of a [`Worker`]: the worker's part of an
/// [`EngineConfig`](crate::engine::EngineConfig).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerConfig {
    /// This worker's name in leases; unique per process.
    pub(crate) worker_id: String,
    /// How many runs execute at once (at least 1).
    pub(crate) max_concurrency: usize,
    /// How often an idle worker looks for runs.
    pub(crate) poll_interval: Duration,
    /// How long a claim holds a run without a heartbeat.
    pub(crate) lease: Duration,
    /// How often leases are renewed.
    pub(crate) heartbeat_interval: Duration,
    /// The most log text one attempt of a run may store, in bytes.
    pub(crate) max_log_bytes: usize,
    /// Whether it claims runs at all ([`EngineConfig::executes`](crate::engine::EngineConfig::executes)).
    pub(crate) claims: bool,
    /// The queues whose tasks it takes; `None` for every queue.
    pub(crate) queues: Option<Vec<String>>,
}

/// A worker. Cheap to clone; all clones drive one worker.
#[derive(Clone)]
pub(crate) struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where runs come from and outcomes go.
    source: Arc<dyn WorkSource>,
    config: WorkerConfig,
    executors: Executors,
    /// Where the runs' status changes and log lines are published.
    events: broadcast::Sender<RunEvent>,
    /// The attempts this worker holds, each with its context (to cancel it)
    /// and its lease.
    running: Mutex<HashMap<AttemptKey, Held>>,
    /// Runs cancelled or deleted lately, by id: a claim that committed
    /// before the cancel but is answered after it must not start the run.
    /// Cancelled and deleted runs never run again, so the id is enough.
    tombstones: Mutex<HashMap<RunId, Instant>>,
    /// Whether a claim is in flight (shutdown waits for it to settle).
    claiming: std::sync::atomic::AtomicBool,
    /// Slots promised to runs being submitted with a claim
    /// ([`Worker::reserve`]); counted as taken until the run starts.
    reserved: AtomicUsize,
    /// Counts the times the queue may have gained a run for this worker (a
    /// local submit stored pending, a retry, a rescue, another process's
    /// submit).
    queued: AtomicU64,
    /// The value of `queued` when a claim last came back with fewer runs
    /// than it asked for: while the two are equal nothing is known to wait,
    /// and a submit may claim its run itself without overtaking any.
    drained: AtomicU64,
    /// Woken by local submits and finished runs, so claims need no polling.
    wake: Notify,
    /// Woken by progress reports: the heartbeat stores them.
    progressed: Arc<Notify>,
    /// The tasks this binary has, from the registry: only their runs are
    /// claimed.
    titles: Vec<String>,
    /// The tasks with a concurrency limit, from the registry.
    task_limits: Vec<(String, u32)>,
    /// Log lines on their way to the store.
    logs: mpsc::UnboundedSender<(RunId, LogLine)>,
    /// Their receiver, shared by the log writer and its restarts.
    log_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(RunId, LogLine)>>,
    shutdown: CancellationToken,
}

impl Worker {
    /// Starts the worker on the current Tokio runtime: the claim loop, the
    /// heartbeat and the log writer, and each executor's own start. It stops
    /// claiming when `shutdown` is cancelled; [`Worker::shutdown`] does so
    /// and waits for its runs.
    pub(crate) fn start(
        source: Arc<dyn WorkSource>,
        config: WorkerConfig,
        executors: Executors,
        events: broadcast::Sender<RunEvent>,
        shutdown: CancellationToken,
    ) -> Worker {
        let (logs, log_rx) = mpsc::unbounded_channel();
        // The tasks whose runs it takes: those of its queues.
        let takes = |queue: &str| config.queues.as_ref().is_none_or(|queues| queues.iter().any(|q| q == queue));
        let titles =
            registry::tasks().filter(|def| takes(def.options().queue)).map(|def| def.title().to_owned()).collect();
        let worker = Worker {
            inner: Arc::new(Inner {
                source,
                config,
                executors,
                events,
                running: Mutex::new(HashMap::new()),
                tombstones: Mutex::new(HashMap::new()),
                claiming: std::sync::atomic::AtomicBool::new(false),
                reserved: AtomicUsize::new(0),
                // Not drained: the store may hold runs from before the start.
                queued: AtomicU64::new(1),
                drained: AtomicU64::new(0),
                wake: Notify::new(),
                progressed: Arc::new(Notify::new()),
                titles,
                task_limits: registry::tasks()
                    .filter_map(|def| def.options().concurrency.map(|n| (def.title().to_owned(), n)))
                    .collect(),
                logs,
                log_rx: tokio::sync::Mutex::new(log_rx),
                shutdown,
            }),
        };
        // Supervised: a loop that panicked is started again, or the worker
        // would silently stop claiming or renewing its leases.
        if worker.inner.config.claims {
            let claims = worker.clone();
            supervise("claim", move || claims.clone().claim_loop());
        }
        let heartbeats = worker.clone();
        supervise("heartbeat", move || heartbeats.clone().heartbeat_loop());
        let logs = worker.clone();
        supervise("log writer", move || logs.clone().log_writer());
        worker.inner.executors.start();
        worker
    }

    /// Whether each of its executors can run here.
    pub(crate) async fn availability(&self) -> Vec<Availability> {
        self.inner.executors.availability().await
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
    pub(crate) fn drained(&self) -> bool {
        self.inner.drained.load(Ordering::SeqCst) == self.inner.queued.load(Ordering::SeqCst)
    }

    /// Takes a slot for `new`, to be claimed at its submit, when it can
    /// start at once without overtaking anything: this worker executes its
    /// task, has a free slot, and no run is known to wait; the task has no
    /// concurrency limit (the store counts those) and the run no delay.
    /// The slot is the reservation's until the run starts or it is dropped.
    pub(crate) fn reserve(&self, new: &NewRun) -> Option<Reservation> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled()
            || !inner.config.claims
            || new.not_before.is_some()
            || !self.drained()
            || !inner.titles.contains(&new.task_title)
            || inner.task_limits.iter().any(|(title, _)| *title == new.task_title)
        {
            return None;
        }
        // Counted first, then the shutdown checked again: a shutdown either
        // sees the reservation and waits for it, or is seen here.
        let reserved = inner.reserved.fetch_add(1, Ordering::SeqCst) + 1;
        let reservation = Reservation { worker: self.clone(), asked: Instant::now() };
        (!inner.shutdown.is_cancelled() && self.running_count() + reserved <= inner.config.max_concurrency)
            .then_some(reservation)
    }

    /// Starts a run its submit claimed for this worker under `reservation`
    /// (or hands it back, if the worker is shutting down meanwhile).
    pub(crate) fn start_claimed(&self, run: Run, reservation: Reservation) {
        if self.inner.shutdown.is_cancelled() {
            let worker = self.clone();
            tokio::spawn(async move {
                worker.release(&run, reservation.asked).await;
                drop(reservation);
            });
            return;
        }
        // Counted as running before the reservation lets go of the slot.
        self.start_run(run, reservation.asked);
        drop(reservation);
    }

    /// Signals the contexts of a run's attempts executing here, and
    /// remembers the run: cancelled or deleted, it must not start here
    /// later from a claim answered after this.
    pub(crate) fn cancel_local(&self, id: RunId) {
        {
            let ttl = self.inner.config.lease.max(Duration::from_secs(60));
            let mut tombstones = self.inner.tombstones.lock().unwrap_or_else(|e| e.into_inner());
            tombstones.retain(|_, at| at.elapsed() < ttl);
            tombstones.insert(id, Instant::now());
        }
        for (_, held) in self.lock_running().iter().filter(|((held, _), _)| *held == id) {
            held.ctx.cancel();
        }
    }

    fn is_tombstoned(&self, id: RunId) -> bool {
        self.inner.tombstones.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    /// Stops one attempt: a report about an older attempt must not stop a
    /// newer one.
    fn cancel_attempt(&self, key: AttemptKey) {
        if let Some(held) = self.lock_running().get(&key) {
            held.ctx.cancel();
        }
    }

    /// How many runs this worker holds now: executing, storing the outcome
    /// of their attempt, or stopped while their code still runs.
    pub(crate) fn running_count(&self) -> usize {
        self.lock_running().len()
    }

    /// How many attempts held here have no outcome stored yet (their
    /// leases still renewed).
    fn unreported_count(&self) -> usize {
        self.lock_running().values().filter(|held| held.renewing).count()
    }

    /// How many attempts of each task this worker still executes although
    /// their outcome is stored (a sync task's thread runs on after its
    /// timeout): the store counts only running runs against a task's
    /// concurrency limit, and the claim adds these.
    fn lingering(&self) -> Vec<(String, u32)> {
        let mut lingering: Vec<(String, u32)> = Vec::new();
        for held in self.lock_running().values().filter(|held| !held.renewing) {
            match lingering.iter_mut().find(|(title, _)| *title == held.title) {
                Some((_, count)) => *count += 1,
                None => lingering.push((held.title.clone(), 1)),
            }
        }
        lingering
    }

    /// Stops claiming, gives back runs still executing after `grace` (they
    /// go back to pending at once for another worker), and stops the loops.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        // A claim in flight, or a submit claiming its run, either starts its
        // runs (counted below) or, seeing the shutdown, hands them back.
        while self.inner.claiming.load(Ordering::SeqCst) || self.inner.reserved.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Waited for are outcomes still to be stored, not code: a sync task
        // deaf to cancellation (or stopped at its lease's end) runs on in
        // its thread, and nothing here can end it sooner.
        let deadline = Deadline::after(grace);
        while self.unreported_count() > 0 && !deadline.has_passed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<TaskContext> = self.lock_running().values().map(|held| held.ctx.clone()).collect();
        for ctx in left {
            ctx.cancel();
        }
        // The cancelled runs report `Released`, at once for code that saw
        // the cancel and for a sync task that did not (its thread is left).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.unreported_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.executors.shutdown().await;
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptKey, Held>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn claim_loop(self) {
        let config = &self.inner.config;
        // After failed claims, the wait doubles up to CLAIM_BACKOFF: a
        // source that is down is not asked five times a second.
        let mut pause = config.poll_interval;
        loop {
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            let taken = self.running_count() + self.inner.reserved.load(Ordering::SeqCst);
            let free = config.max_concurrency.saturating_sub(taken);
            let mut claimed = 0;
            if free > 0 {
                let queued = self.inner.queued.load(Ordering::SeqCst);
                let lingering = self.lingering();
                // Set first, then the shutdown checked again: a shutdown
                // either waits for this claim or is seen here.
                self.inner.claiming.store(true, Ordering::SeqCst);
                if self.inner.shutdown.is_cancelled() {
                    self.inner.claiming.store(false, Ordering::SeqCst);
                    return;
                }
                let asked = Instant::now();
                let request = ClaimRequest {
                    worker_id: config.worker_id.clone(),
                    limit: u32::try_from(free).unwrap_or(u32::MAX),
                    lease: config.lease,
                    executors: self.inner.executors.kinds(),
                    titles: self.inner.titles.clone(),
                    task_limits: self.inner.task_limits.clone(),
                    lingering,
                    now: Timestamp::now(),
                };
                let result = self.inner.source.claim(request).await;
                match result {
                    Ok(Claimed { runs, waited }) => {
                        pause = config.poll_interval;
                        // The leases began no earlier than this.
                        let asked = asked + waited;
                        claimed = runs.len();
                        if claimed < free {
                            self.inner.drained.store(queued, Ordering::SeqCst);
                        }
                        for run in runs {
                            if self.inner.shutdown.is_cancelled() {
                                // Claimed while shutting down: give it straight back.
                                self.release(&run, asked).await;
                            } else {
                                self.start_run(run, asked);
                            }
                        }
                    }
                    Err(error) => {
                        log_error("claiming runs", &error);
                        pause = (pause * 2).clamp(config.poll_interval, CLAIM_BACKOFF.max(config.poll_interval));
                    }
                }
                self.inner.claiming.store(false, Ordering::SeqCst);
            }
            if claimed == 0 || claimed < free {
                let wait = pause;
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = self.inner.shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Starts an attempt claimed by a request asked for at `asked` (its
    /// lease counts from then).
    fn start_run(&self, run: Run, asked: Instant) {
        self.publish(RunEvent::Status(Box::new(run.clone())));
        let progress = Arc::new(ProgressCell::default());
        let sink = Arc::new(WorkerSink {
            logs: self.inner.logs.clone(),
            events: self.inner.events.clone(),
            budget: std::sync::atomic::AtomicUsize::new(self.inner.config.max_log_bytes),
            truncated: std::sync::atomic::AtomicBool::new(false),
            progress: progress.clone(),
            progressed: self.inner.progressed.clone(),
        });
        let ctx = TaskContext::with_sink(run.id.to_string(), run.attempt, sink);
        let lease = Arc::new(Lease::granted(asked, self.inner.config.lease));
        let key = (run.id, run.attempt);
        {
            let mut running = self.lock_running();
            // An older attempt of this run still executing here lost its
            // lease and was re-queued: the store refuses its report, so stop
            // it rather than let two attempts of one run execute side by
            // side, and renew only the newer one.
            for (_, older) in running.iter_mut().filter(|((id, attempt), _)| *id == run.id && *attempt < run.attempt) {
                older.ctx.cancel();
                older.renewing = false;
            }
            // Cancelled or deleted after its claim committed: it stops before
            // its code runs.
            if self.is_tombstoned(run.id) {
                ctx.cancel();
            }
            let held = Held {
                ctx: ctx.clone(),
                title: run.task_title.clone(),
                lease: lease.clone(),
                progress: progress.clone(),
                renewing: true,
            };
            running.insert(key, held);
        }
        let worker = self.clone();
        tokio::spawn(async move {
            let outcome = worker.attempt(&run, &ctx, &lease).await;
            // Still held (its lease renewed by the heartbeat) until its
            // outcome is stored, so a report retried through a database
            // outage is not beaten by the rescuer.
            worker.report(&run, &ctx, outcome, &lease, progress.unsent()).await;
            worker.settle(key, &ctx).await;
        });
    }

    /// Executes an attempt, stopping it when its lease's local deadline
    /// passes: another worker may take the run from then on.
    async fn attempt(&self, run: &Run, ctx: &TaskContext, lease: &Lease) -> Result<Value, TaskError> {
        if ctx.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        // A panic anywhere below (an executor's own code included) ends the
        // attempt as `panicked`, reported like any outcome.
        let execution = catch_panic_async(self.execute(run, ctx.clone()));
        let mut execution = std::pin::pin!(execution);
        tokio::select! {
            outcome = &mut execution => return outcome,
            () = lease.expired() => {}
        }
        tracing::warn!(
            run = %run.id,
            attempt = run.attempt,
            "taskflow engine: this worker could not renew the run's lease in time; stopping the attempt"
        );
        ctx.cancel();
        match execution.await {
            Ok(value) => Ok(value),
            Err(_) => Err(TaskError::LeaseExpired { lease: self.inner.config.lease }),
        }
    }

    /// After an attempt's outcome is stored (or given up on): its lease is
    /// no longer renewed, and its slot is freed once its code has ended.
    async fn settle(&self, key: AttemptKey, ctx: &TaskContext) {
        if let Some(held) = self.lock_running().get_mut(&key) {
            held.renewing = false;
        }
        let lingered = ctx.code_is_running();
        ctx.code_ended().await;
        self.lock_running().remove(&key);
        // A slot is free: claim what waits, if anything does. A slot held
        // by stopped code also held a place in its task's concurrency
        // limit, which the last claim may have skipped.
        if lingered || !self.drained() {
            self.inner.wake.notify_one();
        }
    }

    async fn execute(&self, run: &Run, ctx: TaskContext) -> Result<Value, TaskError> {
        let Some(def) = registry::task_def(&run.task_title) else {
            return Err(TaskError::UnknownTask { title: run.task_title.clone() });
        };
        let timeout = run.timeout_ms.map(Duration::from_millis);
        self.inner.executors.execute(run.executor, def, ctx, run.payload.clone(), timeout).await
    }

    /// Stores an attempt's outcome with its last `progress` the store lacks.
    async fn report(
        &self,
        run: &Run,
        ctx: &TaskContext,
        result: Result<Value, TaskError>,
        lease: &Lease,
        progress: Option<Progress>,
    ) {
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
                // The run's log tells its attempts apart, and keeps why each
                // failed (a panic's text included) beside what it logged.
                if !matches!(error, TaskError::Cancelled) {
                    let next = match retry_at {
                        Some(at) => format!("; retrying in {:.1}s", at.0.saturating_sub(now.0) as f64 / 1000.0),
                        None if run.attempt < run.max_attempts => " (not retried)".to_owned(),
                        None => String::new(),
                    };
                    ctx.warn(format_args!("attempt {} of {} failed: {error}{next}", run.attempt, run.max_attempts));
                }
                Outcome::Failed {
                    error: RunError { kind: error.kind().to_owned(), message: error.to_string() },
                    retry_at,
                }
            }
        };
        self.store_outcome(run, outcome, lease, progress).await;
    }

    /// Hands a claimed run back unexecuted (`Released`: pending again, the
    /// attempt not counted); tried again while the claim's lease lasts.
    async fn release(&self, run: &Run, asked: Instant) {
        let lease = Lease::granted(asked, self.inner.config.lease);
        self.store_outcome(run, Outcome::Released, &lease, None).await;
    }

    /// Stores how this worker's attempt of `run` ended and publishes the run.
    async fn store_outcome(&self, run: &Run, outcome: Outcome, lease: &Lease, progress: Option<Progress>) {
        let report = Report {
            id: run.id,
            attempt: run.attempt,
            worker_id: self.inner.config.worker_id.clone(),
            outcome,
            now: Timestamp::now(),
            progress,
        };
        // A failed write (a dropped connection, the database restarting, a
        // pool exhausted) is tried again for as long as this worker holds
        // the attempt, its lease renewed by the heartbeat meanwhile: losing
        // the report would throw the attempt's work away, the run being
        // re-queued and executed again. It stops when the store says the
        // attempt is no longer this worker's, or when the lease could not be
        // renewed in time (the rescuer may have taken the run). Retrying is
        // safe: the store fences reports by attempt and worker, so a report
        // that did commit, with only its answer lost, is refused as stale
        // the second time.
        let cancelled =
            matches!(&report.outcome, Outcome::Failed { error, .. } if error.kind == TaskError::Cancelled.kind());
        let mut wait = REPORT_RETRY.0;
        let mut retried = false;
        loop {
            match self.inner.source.finish(report.clone()).await {
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
                    // A cancelled or deleted run's own end is refused as a
                    // matter of course: worth a line only when debugging.
                    if cancelled {
                        tracing::debug!(%error, "taskflow engine: the store refused the outcome of a cancelled run");
                    } else {
                        tracing::info!(%error, "taskflow engine: the store refused a stale outcome");
                    }
                    if retried {
                        if let Ok(Some(run)) = self.inner.source.get(run.id).await {
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
                        && lease.is_held() =>
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
        let mut last = Instant::now();
        loop {
            // Leases are renewed through a shutdown's grace period too, or
            // another worker would rescue runs still finishing here.
            // Progress brings the renewal forward, so that it is stored soon.
            tokio::select! {
                () = tokio::time::sleep_until(last + config.heartbeat_interval) => {}
                () = self.inner.progressed.notified() => {
                    tokio::time::sleep_until(last + PROGRESS_INTERVAL.min(config.heartbeat_interval)).await;
                }
            }
            last = Instant::now();
            let held: Vec<(Renewal, Arc<Lease>, Arc<ProgressCell>)> = self
                .lock_running()
                .iter()
                .filter(|(_, held)| held.renewing)
                .map(|(&(id, attempt), held)| {
                    let renewal = Renewal { id, attempt, progress: held.progress.unsent() };
                    (renewal, held.lease.clone(), held.progress.clone())
                })
                .collect();
            if held.is_empty() {
                if self.inner.shutdown.is_cancelled() && self.running_count() == 0 {
                    return;
                }
                continue;
            }
            let asked = Instant::now();
            let until = Timestamp::now().plus(config.lease);
            let renewals = held.iter().map(|(renewal, ..)| *renewal).collect();
            // A renewal answered later than half a lease is worth nothing
            // (the next one is due), and one that never answers (a
            // blackholed connection) must not stall every renewal after it.
            let patience = config.lease / 2;
            match tokio::time::timeout(patience, self.inner.source.heartbeat(config.worker_id.clone(), renewals, until))
                .await
            {
                // Runs this worker no longer holds (cancelled, re-queued)
                // stop; only the attempt the heartbeat named, since a newer
                // attempt of the same run may have started here meanwhile.
                Ok(Ok(lost)) => {
                    let lost: HashSet<RunId> = lost.into_iter().collect();
                    for (renewal, lease, progress) in held {
                        if lost.contains(&renewal.id) {
                            lease.lose();
                            self.cancel_attempt((renewal.id, renewal.attempt));
                        } else {
                            lease.renewed(asked);
                            if let Some(sent) = renewal.progress {
                                progress.stored(sent);
                            }
                        }
                    }
                }
                Ok(Err(error)) => log_error("renewing leases", &error),
                // The symptom (attempts stopped, runs executed again) shows
                // up far from the cause (a stalled store): say so.
                Err(_) => tracing::warn!(
                    runs = held.len(),
                    "taskflow engine: renewing leases took over {patience:?}, half the {:?} lease; given up on \
                     this renewal (an attempt whose lease is not renewed in time is stopped)",
                    config.lease
                ),
            }
        }
    }

    /// Writes log lines in batches: whatever arrived while the last batch was
    /// being written goes in the next. A batch that cannot be stored for a
    /// passing reason (the database unreachable or busy) is tried again,
    /// in order, rather than dropped.
    async fn log_writer(self) {
        let mut rx = self.inner.log_rx.lock().await;
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 1024).await > 0 {
            let lines: Vec<_> =
                batch.drain(..).map(|(id, line)| (id, Timestamp::from(line.at), line.level, line.message)).collect();
            let mut wait = REPORT_RETRY.0;
            loop {
                match self.inner.source.append_logs(lines.clone()).await {
                    // Subscribers get the lines as stored, with their sequence
                    // numbers, so a live view and `logs` agree.
                    Ok(stored) => break stored.into_iter().for_each(|line| self.publish(RunEvent::Log(line))),
                    Err(error) if error.is_transient() && !self.inner.shutdown.is_cancelled() => {
                        tracing::warn!(%error, "taskflow engine: storing log lines failed; retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(REPORT_RETRY.1);
                    }
                    Err(error) => break log_error("storing log lines", &error),
                }
            }
        }
    }
}

/// Payload and lookup errors fail the same way every time: no retry; nor do
/// executor errors that would repeat (a missing image, a result too large).
fn is_retryable(error: &TaskError) -> bool {
    match error {
        TaskError::Failed { .. }
        | TaskError::Panicked { .. }
        | TaskError::TimedOut { .. }
        | TaskError::LeaseExpired { .. } => true,
        TaskError::Executor(error) => error.is_retryable(),
        _ => false,
    }
}

/// The engine has no caller to return background errors to; they go to the
/// application's `tracing` subscriber (the app installs one).
pub(crate) fn log_error(doing: &str, error: &store::Error) {
    tracing::error!(%error, "taskflow engine: {doing} failed");
}

/// A random number for jitter and names; no cryptographic quality needed.
pub(crate) fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}
