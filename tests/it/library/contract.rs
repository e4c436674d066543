//! The worker's side of the delivery contract when things go wrong around a
//! run: a panic before the task's future exists, reports that cannot be
//! stored for longer than a lease, sync tasks that ignore cancellation, a
//! heartbeat that hangs, a cancel that lands between a claim and the start,
//! a claim in flight at shutdown, a delete on another server, timings that cannot hold a lease, a loop that
//! panics, log lines that cannot be stored at once.
//!
//! Each case wraps the real store (SQLite file or PostgreSQL database) in
//! hooks that fail or hold one call at the moment the case needs, and each
//! reproduced its defect before the fix (issue 23; the names C2… are the
//! review's, `../shared/reviews/delivery-contract.md`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use taskflow::client::{Client, SubmitOptions};
use taskflow::engine::{Engine, EngineConfig};
use taskflow::registry::BoxFuture;
use taskflow::run::{Run, RunId, RunStatus, Timestamp};
use taskflow::store::{self, ClaimRequest, Renewal, Report, SqliteStore, Store, StoredLogLine};
use taskflow::{Level, TaskContext, task};
use tokio::sync::Notify;

use crate::support::backends::{Backend, on_every_backend};
use crate::support::store_hooks::{Hooked, Hooks};

const WAIT: Duration = Duration::from_secs(60);

/// What the tasks below did, as `(key, what)`: the key is the test case's
/// own (tests of both backends run at once in this process).
static SEEN: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

fn record(key: &str, what: &'static str) {
    SEEN.lock().unwrap().push((key.to_owned(), what));
}

fn count(key: &str, what: &str) -> usize {
    SEEN.lock().unwrap().iter().filter(|(k, w)| k == key && *w == what).count()
}

/// Waits (a minute at most) until `key` recorded `what`.
async fn until_seen(key: &str, what: &str) -> bool {
    for _ in 0..6000 {
        if count(key, what) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Keys whose blocking tasks may return.
static RELEASED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn release(key: &str) {
    RELEASED.lock().unwrap().get_or_insert_with(HashSet::new).insert(key.to_owned());
}

fn released(key: &str) -> bool {
    RELEASED.lock().unwrap().as_ref().is_some_and(|keys| keys.contains(key))
}

/// A unique key per case and backend.
fn key(case: &str, backend: Backend) -> String {
    format!("{case}-{backend:?}-{}", RunId::new())
}

async fn real_store(backend: Backend, dir: &std::path::Path) -> Option<Arc<dyn Store>> {
    Some(match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open_in(dir).unwrap()),
        Backend::Postgres => crate::support::backends::fresh_postgres().await?,
    })
}

fn config(lease: Duration, heartbeat: Duration) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(50);
    config.lease = lease;
    config.heartbeat_interval = heartbeat;
    config.rescue_interval = Duration::from_millis(100);
    config
}

fn unavailable(what: &str) -> store::Error {
    store::Error::from(store::DatabaseError::new(store::DatabaseErrorKind::Unavailable, format!("{what} (injected)")))
}

// ---------------------------------------------------------------- C2

/// A string whose conversion panics on `explode`: user code that runs while
/// the task's arguments are converted, before its future exists.
#[derive(JsonSchema)]
struct Exploding(#[allow(dead_code)] String);

impl<'de> Deserialize<'de> for Exploding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        assert!(text != "explode", "converting `explode` panicked");
        Ok(Exploding(text))
    }
}

#[task(title = "contract.async_conversion_panics")]
async fn async_conversion_panics(value: Exploding) -> Result<u32, String> {
    let _ = value;
    Ok(1)
}

/// C2: the panic ends the run `failed` with kind `panicked` and frees its
/// slot; it no longer leaves the run `running` for ever.
async fn a_panic_converting_async_arguments_fails_the_run(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = real_store(backend, dir.path()).await else { return };
    let engine = Engine::start(store, config(Duration::from_secs(5), Duration::from_secs(1))).unwrap();
    let client = Client::new(engine.clone());
    let run = client.submit("contract.async_conversion_panics", json!({"value": "explode"})).await.unwrap();
    let done = client.wait(run.id, Duration::from_secs(20)).await.expect("the run ends");
    assert_eq!(done.status, RunStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.kind, "panicked", "{error:?}");
    assert!(error.message.contains("converting `explode` panicked"), "{error:?}");
    wait_idle(&engine).await;
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- C3

#[task(title = "contract.counts_executions")]
async fn counts_executions(ctx: &TaskContext, key: String) -> Result<u32, String> {
    record(&key, "executed");
    Ok(ctx.attempt())
}

/// Refuses every report for `for_how_long`, as an unreachable database
/// would, while heartbeats reach the store.
struct ReportsDown {
    until: tokio::time::Instant,
    refused: Arc<AtomicUsize>,
}

impl Hooks for ReportsDown {
    fn finish(&self, inner: &Arc<dyn Store>, report: Report) -> BoxFuture<store::Result<Run>> {
        if tokio::time::Instant::now() < self.until {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async { Err(unavailable("reports refused")) });
        }
        inner.finish(report)
    }
}

/// C3: an outcome that cannot be stored for three leases is retried while
/// the run is held, then stored: the run completes at its first attempt and
/// executes once.
async fn an_outcome_is_retried_while_the_run_is_held(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(inner) = real_store(backend, dir.path()).await else { return };
    let refused = Arc::new(AtomicUsize::new(0));
    let lease = Duration::from_secs(1);
    let hooks = ReportsDown { until: tokio::time::Instant::now() + lease * 3, refused: refused.clone() };
    let store: Arc<dyn Store> = Arc::new(Hooked { inner, hooks });
    let engine = Engine::start(store, config(lease, Duration::from_millis(200))).unwrap();
    let client = Client::new(engine.clone());
    let key = key("c3", backend);
    let mut options = SubmitOptions::default();
    options.retries = Some(2);
    let run = client.submit_with("contract.counts_executions", json!({"key": key}), options).await.unwrap();
    let done = client.wait(run.id, WAIT).await.unwrap();
    assert!(refused.load(Ordering::SeqCst) > 1, "the hook refused reports");
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!((done.attempt, done.result), (1, Some(json!(1))));
    assert_eq!(count(&key, "executed"), 1, "the completed run was executed again");
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- C4

/// A sync task that ignores cancellation: it returns only once the test
/// releases its key. At most one at a time (`concurrency = 1`).
#[task(title = "contract.ignores_cancellation", concurrency = 1)]
fn ignores_cancellation(key: String) -> Result<(), String> {
    record(&key, "started");
    let running = IGNORING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_IGNORING.fetch_max(running, Ordering::SeqCst);
    while !released(&key) {
        std::thread::sleep(Duration::from_millis(5));
    }
    IGNORING.fetch_sub(1, Ordering::SeqCst);
    record(&key, "returned");
    Ok(())
}

static IGNORING: AtomicUsize = AtomicUsize::new(0);
static MOST_IGNORING: AtomicUsize = AtomicUsize::new(0);

/// C4: a timed-out sync task whose thread runs on keeps its slot and its
/// place in the task's concurrency limit until it returns: the next run of
/// the task waits (while a run of another task takes the other slot), and
/// two bodies of the task never execute at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_task_that_runs_on_after_its_timeout_keeps_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    let mut config = config(Duration::from_secs(5), Duration::from_secs(1));
    config.max_concurrency = 2;
    let engine = Engine::start(store, config).unwrap();
    let client = Client::new(engine.clone());
    let zombie = key("c4-zombie", Backend::Sqlite);
    let mut options = SubmitOptions::default();
    options.timeout = Some(Duration::from_millis(200));
    let first = client.submit_with("contract.ignores_cancellation", json!({"key": zombie}), options).await.unwrap();
    let first = client.wait(first.id, WAIT).await.unwrap();
    assert_eq!(first.status, RunStatus::Failed);
    assert_eq!(first.error.unwrap().kind, "timeout");
    assert!(count(&zombie, "started") == 1 && count(&zombie, "returned") == 0, "the thread runs on");
    assert_eq!(engine.running_count(), 1, "the thread that runs on holds its slot");

    // The next run of the task is submitted first, a run of another task
    // after it: the claim that takes the second passes the first over.
    let next_key = key("c4-next", Backend::Sqlite);
    let next = client.submit("contract.ignores_cancellation", json!({"key": next_key})).await.unwrap();
    let other_key = key("c4-other", Backend::Sqlite);
    let other = client.submit("contract.counts_executions", json!({"key": other_key})).await.unwrap();
    let other = client.wait(other.id, WAIT).await.unwrap();
    assert_eq!(other.status, RunStatus::Completed);
    let next_now = client.get(next.id).await.unwrap();
    assert_eq!(next_now.status, RunStatus::Pending, "a second run of a concurrency-1 task started beside the first");

    release(&zombie);
    release(&next_key);
    let next = client.wait(next.id, WAIT).await.unwrap();
    assert_eq!(next.status, RunStatus::Completed, "{:?}", next.error);
    assert_eq!(MOST_IGNORING.load(Ordering::SeqCst), 1, "two bodies of a concurrency-1 task ran at once");
    wait_idle(&engine).await;
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- C5

/// An async task that runs until its context is cancelled (the executor
/// drops it then).
#[task(title = "contract.until_cancelled")]
async fn until_cancelled(ctx: &TaskContext, key: String) -> Result<(), String> {
    record(&key, "started");
    ctx.cancelled().await;
    Err("cancelled".to_owned())
}

/// Heartbeats that never answer once `hang` is set: a blackholed
/// connection.
struct HangingHeartbeats {
    hang: Arc<AtomicBool>,
}

impl Hooks for HangingHeartbeats {
    fn heartbeat(
        &self,
        inner: &Arc<dyn Store>,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        if self.hang.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        inner.heartbeat(worker_id, runs, lease_until)
    }
}

/// C5: a worker whose heartbeats stop answering stops its attempt by its
/// own lease deadline, before another worker could take the run.
async fn an_attempt_stops_when_its_lease_cannot_be_renewed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(inner) = real_store(backend, dir.path()).await else { return };
    let hang = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn Store> =
        Arc::new(Hooked { inner: inner.clone(), hooks: HangingHeartbeats { hang: hang.clone() } });
    let mut config = config(Duration::from_secs(2), Duration::from_millis(300));
    // No rescuer of its own in reach: only the worker's deadline can stop it.
    config.rescue_interval = Duration::from_secs(3600);
    let engine = Engine::start(store, config).unwrap();
    let client = Client::new(engine.clone());
    let key = key("c5", backend);
    let run = client.submit("contract.until_cancelled", json!({"key": key})).await.unwrap();
    assert!(until_seen(&key, "started").await);
    hang.store(true, Ordering::SeqCst);
    assert!(idle(&engine).await, "the attempt ran on past its lease");
    // The store still held the attempt (nothing rescued it): the report says why it ended.
    let done = client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.error.unwrap().kind, "lease_expired");
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- C7

/// Claims that, once they took the run of `key`, answer only after the test
/// cancelled it: a cancel between a claim's commit and the run's start.
struct HeldClaim {
    claimed: Arc<Notify>,
    go_on: Arc<Notify>,
}

impl Hooks for HeldClaim {
    fn claim(&self, inner: &Arc<dyn Store>, request: ClaimRequest) -> BoxFuture<store::Result<Vec<Run>>> {
        let (inner, claimed, go_on) = (inner.clone(), self.claimed.clone(), self.go_on.clone());
        Box::pin(async move {
            let runs = inner.claim(request).await?;
            if !runs.is_empty() {
                claimed.notify_one();
                go_on.notified().await;
            }
            Ok(runs)
        })
    }
}

/// C7: a cancel (or force delete) acknowledged after the claim committed
/// but before the run started stops it before its code runs.
async fn a_cancel_between_claim_and_start_is_kept(backend: Backend) {
    for delete in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some(held) = claim_held(backend, dir.path(), "c7").await else { return };
        let (engine, client, run, key) = (&held.engine, &held.client, &held.run, &held.key);
        if delete {
            client.delete(run.id, true).await.unwrap();
        } else {
            assert_eq!(client.cancel(run.id).await.unwrap().status, RunStatus::Cancelled);
        }
        held.go_on.notify_one();
        assert!(idle(engine).await, "the cancelled run went on executing (delete: {delete})");
        assert_eq!(count(key, "started"), 0, "the run started after its cancel was acknowledged (delete: {delete})");
        engine.shutdown(Duration::from_secs(1)).await;
    }
}

/// A run of `contract.until_cancelled` whose claim has committed and is
/// held in the store ([`HeldClaim`]) until `go_on`.
struct ClaimHeld {
    inner: Arc<dyn Store>,
    engine: Engine,
    client: Client,
    run: Run,
    key: String,
    go_on: Arc<Notify>,
}

async fn claim_held(backend: Backend, dir: &std::path::Path, case: &str) -> Option<ClaimHeld> {
    let inner = real_store(backend, dir).await?;
    let hooks = HeldClaim { claimed: Arc::new(Notify::new()), go_on: Arc::new(Notify::new()) };
    let (claimed, go_on) = (hooks.claimed.clone(), hooks.go_on.clone());
    let store: Arc<dyn Store> = Arc::new(Hooked { inner: inner.clone(), hooks });
    // Heartbeats too rare to stop the run in the test's time.
    let engine = Engine::start(store, config(Duration::from_secs(120), Duration::from_secs(50))).unwrap();
    let client = Client::new(engine.clone());
    let key = key(case, backend);
    let mut options = SubmitOptions::default();
    // Delayed, so that the claim loop takes it, not its submit.
    options.delay = Some(Duration::from_millis(100));
    let run = client.submit_with("contract.until_cancelled", json!({"key": key}), options).await.unwrap();
    claimed.notified().await;
    Some(ClaimHeld { inner, engine, client, run, key, go_on })
}

// ---------------------------------------------------------------- C9

/// C9: a claim in flight when shutdown begins hands its runs back: pending
/// again, on the same attempt, no lease, never started; a shutdown that
/// does not wait for the claim leaves the run `running` under a lease
/// nobody renews (seen with the wait removed). (The race the
/// review named, a shutdown between the claim loop's check and its flag,
/// has no await between the two to hold; the loop now sets the flag first
/// and checks after, which this case cannot tell apart.)
async fn a_claim_in_flight_at_shutdown_hands_its_runs_back(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(ClaimHeld { inner, engine, run, key, go_on, .. }) = claim_held(backend, dir.path(), "c9").await else {
        return;
    };
    // `shutdown` marks the engine as stopping in its first poll, before the
    // held claim is let go.
    tokio::join!(engine.shutdown(Duration::from_secs(1)), async {
        tokio::task::yield_now().await;
        go_on.notify_one();
    });
    let stored = inner.get(run.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Pending, "{stored:?}");
    assert_eq!(stored.attempt, 1, "a hand-back is not an attempt: {stored:?}");
    assert_eq!(stored.worker_id, None, "its lease is released: {stored:?}");
    assert_eq!(count(&key, "started"), 0, "claimed while stopping, it must not start");
}

// ---------------------------------------------------------------- C8

/// C8: on PostgreSQL, a force delete made on another server stops the run
/// on the server executing it at once, as a cancel does, not at its next
/// heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_another_server_stops_the_run() {
    let Some(server) = crate::support::backends::postgres_server() else { return };
    let url = store::PostgresStore::create_test_database(&server).await.unwrap();
    let executing: Arc<dyn Store> = Arc::new(store::PostgresStore::connect(&url).await.unwrap());
    let other = store::PostgresStore::connect(&url).await.unwrap();
    let engine = Engine::start(executing, config(Duration::from_secs(600), Duration::from_secs(250))).unwrap();
    let client = Client::new(engine.clone());
    let key = key("c8", Backend::Postgres);
    let run = client.submit("contract.until_cancelled", json!({"key": key})).await.unwrap();
    assert!(until_seen(&key, "started").await);
    other.delete(run.id, true).await.unwrap();
    assert!(idle(&engine).await, "the deleted run went on executing");
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- C10

/// C10: timings under which every lease would expire before it is renewed
/// are refused at start, naming both settings.
#[tokio::test]
async fn a_heartbeat_not_well_under_the_lease_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path()).unwrap());
    for (lease, heartbeat) in [(5, 10), (10, 5), (4, 3)] {
        let config = config(Duration::from_secs(lease), Duration::from_secs(heartbeat));
        let error = Engine::start(store.clone(), config).expect_err("timings that cannot hold a lease").to_string();
        assert!(error.contains("heartbeat") && error.contains("lease"), "{error}");
    }
    let engine = Engine::start(store, config(Duration::from_secs(10), Duration::from_secs(4))).unwrap();
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- S1

/// A heartbeat that panics, once.
struct PanickingHeartbeat {
    panicked: AtomicBool,
}

impl Hooks for PanickingHeartbeat {
    fn heartbeat(
        &self,
        inner: &Arc<dyn Store>,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        assert!(self.panicked.swap(true, Ordering::SeqCst), "a heartbeat panicked (injected)");
        inner.heartbeat(worker_id, runs, lease_until)
    }
}

#[task(title = "contract.outlasts_leases")]
async fn outlasts_leases(ctx: &TaskContext, key: String) -> Result<u32, String> {
    record(&key, "executed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(ctx.attempt())
}

/// S1: a loop of the worker that panics is started again: the leases of a
/// run longer than three of them are still renewed after the heartbeat
/// panicked.
async fn a_panicking_heartbeat_loop_is_restarted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(inner) = real_store(backend, dir.path()).await else { return };
    let hooks = PanickingHeartbeat { panicked: AtomicBool::new(false) };
    let store: Arc<dyn Store> = Arc::new(Hooked { inner, hooks });
    let engine = Engine::start(store, config(Duration::from_secs(1), Duration::from_millis(200))).unwrap();
    let client = Client::new(engine.clone());
    let key = key("s1", backend);
    let mut options = SubmitOptions::default();
    options.retries = Some(3);
    let run = client.submit_with("contract.outlasts_leases", json!({"key": key}), options).await.unwrap();
    let done = client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.attempt, 1, "the lease was lost after the heartbeat panicked");
    assert_eq!(count(&key, "executed"), 1);
    engine.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- S5

#[task(title = "contract.logs_lines")]
async fn logs_lines(ctx: &TaskContext) -> Result<(), String> {
    for n in 0..5 {
        ctx.info(format!("line {n}"));
    }
    Ok(())
}

/// Refuses the first `failures` log appends, as an unreachable database
/// would.
struct LogsDown {
    failures: AtomicUsize,
}

impl Hooks for LogsDown {
    fn append_logs(
        &self,
        inner: &Arc<dyn Store>,
        lines: Vec<(RunId, Timestamp, Level, String)>,
    ) -> BoxFuture<store::Result<Vec<StoredLogLine>>> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Box::pin(async { Err(unavailable("log append refused")) });
        }
        inner.append_logs(lines)
    }
}

/// S5: log lines whose append fails for a while are stored once it passes.
async fn log_lines_survive_a_failed_append(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(inner) = real_store(backend, dir.path()).await else { return };
    let store: Arc<dyn Store> =
        Arc::new(Hooked { inner: inner.clone(), hooks: LogsDown { failures: AtomicUsize::new(3) } });
    let engine = Engine::start(store, config(Duration::from_secs(5), Duration::from_secs(1))).unwrap();
    let client = Client::new(engine.clone());
    let run = client.submit("contract.logs_lines", json!({})).await.unwrap();
    assert_eq!(client.wait(run.id, WAIT).await.unwrap().status, RunStatus::Completed);
    let mut lines = Vec::new();
    for _ in 0..600 {
        lines = inner.logs(run.id, 0, 100).await.unwrap();
        if lines.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<&str> = lines.iter().map(|line| line.message.as_str()).collect();
    assert_eq!(texts, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
    engine.shutdown(Duration::from_secs(1)).await;
}

/// Whether the engine holds no run within a minute.
async fn idle(engine: &Engine) -> bool {
    for _ in 0..6000 {
        if engine.running_count() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Waits (a minute at most) until the engine holds no run.
async fn wait_idle(engine: &Engine) {
    assert!(idle(engine).await, "the engine still holds {} runs", engine.running_count());
}

on_every_backend!(
    a_panic_converting_async_arguments_fails_the_run,
    an_outcome_is_retried_while_the_run_is_held,
    an_attempt_stops_when_its_lease_cannot_be_renewed,
    a_cancel_between_claim_and_start_is_kept,
    a_claim_in_flight_at_shutdown_hands_its_runs_back,
    a_panicking_heartbeat_loop_is_restarted,
    log_lines_survive_a_failed_append,
);
