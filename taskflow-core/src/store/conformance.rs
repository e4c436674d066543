//! The store contract as tests: every case runs against every backend,
//! SQLite on a fresh file and PostgreSQL on a fresh database.
//!
//! Each case is an `async fn` taking the store as `Arc<dyn Store>`;
//! [`conformance!`] turns it into one `#[tokio::test]` per backend
//! (`store::conformance::sqlite::<case>`, `store::conformance::postgres::<case>`).
//! The PostgreSQL variants create a database `tf_test_<random>` on the server
//! named by `TASKFLOW_TEST_DATABASE_URL` and drop it afterwards; without that
//! variable they say `SKIPPED` and pass (`scripts/test` always sets it).
//! Times are explicit [`Timestamp`]s, never sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{ClaimRequest, Error, NewRun, Outcome, Report, RunFilter, SqliteStore, Store};
use crate::log::Level;
use crate::run::ExecutorKind;
use crate::run::{Event, Run, RunError, RunId, RunStatus, Timestamp};

/// Expands each case into a test per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open_in(dir.path()).unwrap();
                    super::$case(std::sync::Arc::new(store)).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::pg::with_store(super::$case).await;
                }
            )*
        }
    };
}

conformance!(
    submit_get_round_trip,
    payload_and_result_keep_their_text,
    de_duplication,
    idempotency_key,
    equal_submits_at_once_make_one_run,
    claim_order_and_limit,
    claims_only_runs_of_known_tasks,
    claims_are_exclusive,
    task_concurrency_limits,
    task_concurrency_limits_hold_across_claimers,
    finish_is_fenced,
    retry_then_fail_at_max_attempts,
    release_gives_the_run_back,
    cancel_pending_and_running,
    delete_needs_force_for_active_runs,
    heartbeat_renews_and_reports_lost_runs,
    rescue_boundaries,
    rescue_handles_more_than_a_batch,
    prune_keeps_active_runs,
    log_sequence_numbers,
    concurrent_log_appends,
    list_filters_and_pages,
);

/// PostgreSQL test databases.
#[cfg(feature = "postgres")]
pub(super) mod pg {
    use std::future::Future;
    use std::io::Write;
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::super::{PostgresStore, Store};

    /// The variable naming the server the tests may create databases on.
    const SERVER: &str = "TASKFLOW_TEST_DATABASE_URL";

    /// At most this many tests use the server at once: each store pools up
    /// to eleven connections, and a machine with many cores runs many tests
    /// at once (`scripts/postgres` allows 300 connections).
    static AT_ONCE: Semaphore = Semaphore::const_new(8);

    /// Runs `case` on a store over a fresh database, then drops the
    /// database, also when the case panics.
    pub(crate) async fn with_store<F, Fut>(case: F)
    where
        F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        with_database(|url| async move {
            let store = PostgresStore::connect(&url).await.expect("the test database accepts the store");
            // The case owns the store: it is gone when the case ends.
            case(Arc::new(store)).await;
        })
        .await;
    }

    /// Runs `case` with the URL of a fresh database, then drops the
    /// database, also when the case panics. Says `SKIPPED` and returns when
    /// `TASKFLOW_TEST_DATABASE_URL` is not set.
    pub(crate) async fn with_database<F, Fut>(case: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(server) = std::env::var(SERVER).ok().filter(|url| !url.is_empty()) else {
            assert!(
                std::env::var_os("TASKFLOW_REQUIRE_POSTGRES").is_none(),
                "{SERVER} is not set, but TASKFLOW_REQUIRE_POSTGRES says PostgreSQL tests must run"
            );
            // Straight to stdout, past the test harness's capture, so the
            // skip shows (the one print in the test code).
            let _ = writeln!(std::io::stdout(), "SKIPPED: {SERVER} is not set");
            return;
        };
        let _turn = AT_ONCE.acquire().await.expect("the semaphore is never closed");
        let url = PostgresStore::create_test_database(&server).await.unwrap();
        let outcome = tokio::spawn(case(url.clone())).await;
        // Best effort: what is left is swept by a later test run.
        let _ = PostgresStore::drop_test_database(&server, &url).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

const LEASE: Duration = Duration::from_secs(30);

/// The tasks [`request`] claims runs of: every title the cases submit,
/// as if the claiming binary had all of them.
const TITLES: &str = "a add after at b before cancelled completed docker done even extreme free future high kept \
     last limited low-new low-old odd once one-at-a-time other pending running t tie u";

/// A run that may be claimed from `Timestamp(1_000)` on.
fn new_run(title: &str, payload: Value) -> NewRun {
    let mut new = NewRun::new(title, payload);
    new.not_before = Some(Timestamp(1_000));
    new
}

async fn submit_new(store: &dyn Store, new: NewRun) -> Run {
    let submitted = store.submit(new).await.unwrap();
    assert!(submitted.created);
    submitted.run
}

fn request(worker: &str, limit: u32, now: i64) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.to_owned(),
        limit,
        lease: LEASE,
        executors: vec![ExecutorKind::Thread],
        titles: TITLES.split_whitespace().map(str::to_owned).collect(),
        task_limits: Vec::new(),
        now: Timestamp(now),
    }
}

/// Submits a run and claims it for `worker` at `now`.
async fn running(store: &dyn Store, new: NewRun, worker: &str, now: i64) -> Run {
    let run = submit_new(store, new).await;
    let claimed = store.claim(request(worker, 1, now)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, run.id);
    claimed.into_iter().next().unwrap()
}

fn report(run: &Run, worker: &str, outcome: Outcome, now: i64) -> Report {
    Report { id: run.id, attempt: run.attempt, worker_id: worker.to_owned(), outcome, now: Timestamp(now) }
}

fn failure(message: &str) -> RunError {
    RunError { kind: "failed".to_owned(), message: message.to_owned() }
}

async fn get(store: &dyn Store, id: RunId) -> Run {
    store.get(id).await.unwrap().unwrap()
}

// ---------------------------------------------------------------------------
// Cases

async fn submit_get_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let mut new = NewRun::new("add", json!({"a": 1, "b": [true, null, "x"]}));
    new.max_attempts = 3;
    new.executor = ExecutorKind::Process;
    new.priority = -7;
    new.not_before = Some(Timestamp(42));
    new.timeout_ms = Some(30_000);
    new.retry_delay_ms = 250;
    new.idempotency_key = Some("key-1".to_owned());
    let before = Timestamp::now();
    let run = submit_new(store, new).await;
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!((run.attempt, run.max_attempts, run.priority), (1, 3, -7));
    assert_eq!(run.not_before, Timestamp(42));
    assert_eq!((run.timeout_ms, run.retry_delay_ms), (Some(30_000), 250));
    assert!(run.created_at >= before);
    assert_eq!(run.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(get(store, run.id).await, run);
    assert_eq!(store.get(RunId::new()).await.unwrap(), None);

    // Without a `not_before`, a run may start at once.
    let plain = submit_new(store, NewRun::new("add", json!({}))).await;
    assert_eq!(plain.not_before, plain.created_at);
    assert_eq!(get(store, plain.id).await, plain);

    // At least one attempt; the largest numbers survive.
    let mut extreme = new_run("extreme", json!({}));
    extreme.max_attempts = 0;
    extreme.priority = i32::MIN;
    extreme.timeout_ms = Some(u64::try_from(i64::MAX).unwrap());
    let extreme = submit_new(store, extreme).await;
    assert_eq!(extreme.max_attempts, 1);
    assert_eq!(get(store, extreme.id).await, extreme);
}

/// Payloads and results come back as submitted: key order, number
/// spelling and escapes included.
async fn payload_and_result_keep_their_text(store: Arc<dyn Store>) {
    let store = &*store;
    let text = r#"{"z":1,"a":{"y":[1e15,-0.0,18446744073709551615,-9223372036854775808,0.1],"b":"nul \u0000, ü, \"q\""},"m":null}"#;
    let payload: Value = serde_json::from_str(text).unwrap();
    let run = running(store, new_run("t", payload.clone()), "w1", 2_000).await;
    assert_eq!(run.payload.to_string(), payload.to_string());
    assert_eq!(get(store, run.id).await.payload.to_string(), payload.to_string());

    let result: Value = serde_json::from_str(r#"{"b":[2.5e-8,{"d":4,"c":3}],"a":"\u0000"}"#).unwrap();
    store.finish(report(&run, "w1", Outcome::Completed(result.clone()), 3_000)).await.unwrap();
    let done = get(store, run.id).await;
    assert_eq!(done.result.map(|r| r.to_string()), Some(result.to_string()));

    // Equal payloads in another key order are the same run.
    let first = submit_new(store, new_run("u", json!({"b": {"y": 1, "x": 2}, "a": [3]}))).await;
    let again = store.submit(new_run("u", json!({"a": [3], "b": {"x": 2, "y": 1}}))).await.unwrap();
    assert_eq!((again.run.id, again.created), (first.id, false));
}

async fn de_duplication(store: Arc<dyn Store>) {
    let store = &*store;
    let mut first = serde_json::Map::new();
    first.insert("a".to_owned(), json!(1));
    first.insert("b".to_owned(), json!({"y": 2, "x": 1}));
    let mut reordered = serde_json::Map::new();
    reordered.insert("b".to_owned(), json!({"x": 1, "y": 2}));
    reordered.insert("a".to_owned(), json!(1));
    assert_ne!(Value::Object(first.clone()).to_string(), Value::Object(reordered.clone()).to_string());

    let run = submit_new(store, new_run("t", Value::Object(first.clone()))).await;
    let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.run, run);

    // Another task with the same payload is another run.
    submit_new(store, new_run("other", Value::Object(first.clone()))).await;

    // Still de-duplicated while running; a new run once it finished.
    let claimed = store.claim(request("w", 1, 2_000)).await.unwrap();
    assert_eq!(claimed[0].id, run.id);
    let again = store.submit(new_run("t", Value::Object(reordered.clone()))).await.unwrap();
    assert_eq!((again.run.id, again.created), (run.id, false));
    store.finish(report(&claimed[0], "w", Outcome::Completed(json!(3)), 3_000)).await.unwrap();
    let fresh_run = submit_new(store, new_run("t", Value::Object(reordered.clone()))).await;
    assert_ne!(fresh_run.id, run.id);

    // `unique: false` always creates, and a unique submit then finds the
    // oldest active run.
    let mut not_unique = new_run("t", Value::Object(first.clone()));
    not_unique.unique = false;
    let other = submit_new(store, not_unique).await;
    assert_ne!(other.id, fresh_run.id);
    let again = store.submit(new_run("t", Value::Object(first.clone()))).await.unwrap();
    assert_eq!((again.run.id, again.created), (fresh_run.id, false));

    // A unique submit finds an active run made without `unique`, too.
    store.cancel(fresh_run.id, Timestamp(4_000)).await.unwrap();
    let again = store.submit(new_run("t", Value::Object(first))).await.unwrap();
    assert_eq!((again.run.id, again.created), (other.id, false));
}

async fn idempotency_key(store: Arc<dyn Store>) {
    let store = &*store;
    let keyed = |payload: Value| {
        let mut new = new_run("t", payload);
        new.idempotency_key = Some("k1".to_owned());
        new.unique = false;
        new
    };
    let run = submit_new(store, keyed(json!({"a": 1, "b": 2}))).await;
    let again = store.submit(keyed(json!({"b": 2, "a": 1}))).await.unwrap();
    assert_eq!((again.run.clone(), again.created), (run.clone(), false));

    match store.submit(keyed(json!({"a": 2}))).await {
        Err(Error::IdempotencyConflict { key, existing }) => {
            assert_eq!((key.as_str(), existing), ("k1", run.id));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // The key keeps its run after the run finished.
    store.cancel(run.id, Timestamp(5_000)).await.unwrap();
    let again = store.submit(keyed(json!({"a": 1, "b": 2}))).await.unwrap();
    assert_eq!((again.run.id, again.created), (run.id, false));
    assert_eq!(again.run.status, RunStatus::Cancelled);
}

/// Twenty equal submits at once make one run, by idempotency key and by
/// de-duplication.
async fn equal_submits_at_once_make_one_run(store: Arc<dyn Store>) {
    for key in [Some("same-key"), None] {
        let mut submits = JoinSet::new();
        for _ in 0..20 {
            let store = Arc::clone(&store);
            submits.spawn(async move {
                let mut new = new_run("once", json!({"key": key.is_some()}));
                new.idempotency_key = key.map(str::to_owned);
                store.submit(new).await.unwrap()
            });
        }
        let submitted = submits.join_all().await;
        assert_eq!(submitted.iter().filter(|s| s.created).count(), 1, "key {key:?}: {submitted:?}");
        let ids: HashSet<RunId> = submitted.iter().map(|s| s.run.id).collect();
        assert_eq!(ids.len(), 1, "key {key:?}");
    }
    let all = store.list(RunFilter::default()).await.unwrap();
    assert_eq!(all.total, 2);
}

async fn claim_order_and_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let with = |name: &str, priority: i32, not_before: i64| {
        let mut new = new_run(name, json!({}));
        new.priority = priority;
        new.not_before = Some(Timestamp(not_before));
        new
    };
    let low_old = submit_new(store, with("low-old", 0, 1_000)).await;
    let low_new = submit_new(store, with("low-new", 0, 2_000)).await;
    let high = submit_new(store, with("high", 5, 3_000)).await;
    let future = submit_new(store, with("future", 10, 9_000)).await;
    let mut docker = with("docker", 100, 1_000);
    docker.executor = ExecutorKind::Docker;
    let docker = submit_new(store, docker).await;
    // Same priority and not_before: the older id first.
    let tie = submit_new(store, with("tie", 0, 2_000)).await;

    let now = 5_000;
    let claimed = store.claim(request("w1", 2, now)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [high.id, low_old.id]);
    for run in &claimed {
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.worker_id.as_deref(), Some("w1"));
        assert_eq!(run.lease_until, Some(Timestamp(now).plus(LEASE)));
        assert_eq!(run.started_at, Some(Timestamp(now)));
        assert_eq!(run.attempt, 1);
        assert_eq!(&get(store, run.id).await, run);
    }

    let claimed = store.claim(request("w2", 10, now)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [low_new.id, tie.id]);
    assert!(store.claim(request("w2", 10, now)).await.unwrap().is_empty());
    assert_eq!(get(store, future.id).await.status, RunStatus::Pending);

    let mut docker_request = request("w3", 10, now);
    docker_request.executors = vec![ExecutorKind::Process, ExecutorKind::Docker, ExecutorKind::Docker];
    let claimed = store.claim(docker_request).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [docker.id]);
    let mut nothing = request("w3", 10, now);
    nothing.executors = Vec::new();
    assert!(store.claim(nothing).await.unwrap().is_empty());

    // `not_before` equal to now may run.
    let claimed = store.claim(request("w4", 10, 9_000)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [future.id]);
    assert!(store.claim(request("w4", 0, 9_000)).await.unwrap().is_empty());
}

/// Eight claimers over a thousand runs: each run is claimed exactly once.
/// A server claims only runs of the tasks it has; the others stay pending
/// for a server that has them (rolling upgrades, mixed binaries).
async fn claims_only_runs_of_known_tasks(store: Arc<dyn Store>) {
    let store = &*store;
    let unknown = submit_new(store, new_run("added-later", json!({}))).await;
    let known = submit_new(store, new_run("t", json!({}))).await;

    let claimed = store.claim(request("old", 10, 2_000)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [known.id]);
    assert_eq!(get(store, unknown.id).await, unknown, "a run of a task this binary lacks stays pending");

    let mut none = request("empty", 10, 2_000);
    none.titles.clear();
    assert!(store.claim(none).await.unwrap().is_empty(), "no titles, no claims");

    let mut newer = request("new", 10, 2_000);
    newer.titles = vec!["added-later".to_owned()];
    let claimed = store.claim(newer).await.unwrap();
    assert_eq!(claimed.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(), [(unknown.id, RunStatus::Running)]);
}

async fn claims_are_exclusive(store: Arc<dyn Store>) {
    let mut submits = JoinSet::new();
    for i in 0..1000 {
        let store = Arc::clone(&store);
        submits.spawn(async move { store.submit(new_run("t", json!({ "i": i }))).await.unwrap().run.id });
    }
    let submitted: HashSet<RunId> = submits.join_all().await.into_iter().collect();
    assert_eq!(submitted.len(), 1000);

    let mut claimers = JoinSet::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim(request(&format!("w{worker}"), 7, 5_000)).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|run| run.id));
            }
        });
    }
    let all: Vec<RunId> = claimers.join_all().await.into_iter().flatten().collect();
    assert_eq!(all.len(), 1000, "each run claimed exactly once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), submitted);
    let filter = RunFilter { status: Some(RunStatus::Pending), ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 0);
}

/// A task's concurrency limit caps its running runs; other tasks are
/// claimed past its pending ones.
async fn task_concurrency_limits(store: Arc<dyn Store>) {
    let store = &*store;
    let with = |title: &str, i: i32| {
        let mut new = new_run(title, json!({ "i": i }));
        new.priority = if title == "limited" { 10 } else { 0 };
        new
    };
    let mut limited = Vec::new();
    for i in 0..4 {
        limited.push(submit_new(store, with("limited", i)).await.id);
    }
    let free_a = submit_new(store, with("free", 0)).await.id;
    let free_b = submit_new(store, with("free", 1)).await.id;
    let limit = |worker: &str, count: u32, now: i64| {
        let mut claim = request(worker, count, now);
        claim.task_limits = vec![("limited".to_owned(), 2), ("absent".to_owned(), 1)];
        claim
    };

    let claimed = store.claim(limit("w1", 10, 2_000)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [limited[0], limited[1], free_a, free_b]);
    assert!(store.claim(limit("w2", 10, 2_000)).await.unwrap().is_empty(), "the limited task is full");

    // A run that ends makes room for one more.
    store.finish(report(&claimed[0], "w1", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
    let claimed = store.claim(limit("w2", 10, 3_000)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [limited[2]]);

    // Without the limit in the request, nothing holds the last one back.
    let claimed = store.claim(request("w3", 10, 3_000)).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [limited[3]]);
}

/// Eight claimers at once never run more than the limit of a task.
async fn task_concurrency_limits_hold_across_claimers(store: Arc<dyn Store>) {
    for i in 0..20 {
        submit_new(&*store, new_run("one-at-a-time", json!({ "i": i }))).await;
    }
    let mut claimers = JoinSet::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        claimers.spawn(async move {
            let mut claim = request(&format!("w{worker}"), 5, 2_000);
            claim.task_limits = vec![("one-at-a-time".to_owned(), 1)];
            store.claim(claim).await.unwrap().len()
        });
    }
    let claimed: usize = claimers.join_all().await.into_iter().sum();
    assert_eq!(claimed, 1);
    let filter = RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 1);
}

async fn finish_is_fenced(store: Arc<dyn Store>) {
    let store = &*store;
    let run = running(store, new_run("t", json!({})), "w1", 2_000).await;

    let mut wrong_attempt = report(&run, "w1", Outcome::Completed(json!(1)), 3_000);
    wrong_attempt.attempt = 2;
    let wrong_worker = report(&run, "w2", Outcome::Completed(json!(1)), 3_000);
    for stale in [wrong_attempt, wrong_worker] {
        match store.finish(stale).await {
            Err(Error::StaleAttempt { id, .. }) => assert_eq!(id, run.id),
            other => panic!("expected a stale attempt, got {other:?}"),
        }
        assert_eq!(get(store, run.id).await, run, "a stale report changes nothing");
    }

    let done = store.finish(report(&run, "w1", Outcome::Completed(json!({"sum": 3})), 3_000)).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.result, Some(json!({"sum": 3})));
    assert_eq!(done.finished_at, Some(Timestamp(3_000)));
    assert_eq!((done.worker_id.clone(), done.lease_until), (None, None));
    assert_eq!(get(store, run.id).await, done);

    let late = report(&run, "w1", Outcome::Failed { error: failure("late"), retry_at: None }, 4_000);
    assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
    assert_eq!(get(store, run.id).await, done);

    let mut unknown = report(&run, "w1", Outcome::Released, 4_000);
    unknown.id = RunId::new();
    assert!(matches!(store.finish(unknown).await, Err(Error::NotFound(_))));
}

async fn retry_then_fail_at_max_attempts(store: Arc<dyn Store>) {
    let store = &*store;
    let mut new = new_run("t", json!({}));
    new.max_attempts = 2;
    let run = running(store, new, "w1", 2_000).await;

    let retry_at = Timestamp(10_000);
    let failed = Outcome::Failed { error: failure("boom"), retry_at: Some(retry_at) };
    let retried = store.finish(report(&run, "w1", failed, 3_000)).await.unwrap();
    assert_eq!(retried.status, RunStatus::Pending);
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.not_before, retry_at);
    assert_eq!(retried.error, Some(failure("boom")));
    assert_eq!((retried.worker_id.clone(), retried.lease_until, retried.finished_at), (None, None, None));
    assert_eq!(get(store, run.id).await, retried);

    assert!(store.claim(request("w2", 1, 9_999)).await.unwrap().is_empty(), "not before the back-off");
    let second = store.claim(request("w2", 1, 10_000)).await.unwrap().remove(0);
    assert_eq!((second.id, second.attempt), (run.id, 2));

    let failed = Outcome::Failed { error: failure("again"), retry_at: Some(Timestamp(20_000)) };
    let done = store.finish(report(&second, "w2", failed, 11_000)).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.attempt, 2);
    assert_eq!(done.finished_at, Some(Timestamp(11_000)));
    assert_eq!(done.error, Some(failure("again")));
    assert_eq!(get(store, run.id).await, done);

    // No `retry_at` means no retry, attempts left or not.
    let mut new = new_run("u", json!({}));
    new.max_attempts = 5;
    let run = running(store, new, "w1", 2_000).await;
    let failed = Outcome::Failed { error: failure("fatal"), retry_at: None };
    let done = store.finish(report(&run, "w1", failed, 3_000)).await.unwrap();
    assert_eq!((done.status, done.attempt), (RunStatus::Failed, 1));
}

async fn release_gives_the_run_back(store: Arc<dyn Store>) {
    let store = &*store;
    let run = running(store, new_run("t", json!({})), "w1", 2_000).await;
    let released = store.finish(report(&run, "w1", Outcome::Released, 3_000)).await.unwrap();
    assert_eq!(released.status, RunStatus::Pending);
    assert_eq!(released.attempt, 1);
    assert_eq!((released.worker_id.clone(), released.lease_until), (None, None));
    assert_eq!(get(store, run.id).await, released);
    let again = store.claim(request("w2", 1, 3_000)).await.unwrap().remove(0);
    assert_eq!((again.id, again.attempt, again.worker_id.as_deref()), (run.id, 1, Some("w2")));
}

async fn cancel_pending_and_running(store: Arc<dyn Store>) {
    let store = &*store;
    let pending = submit_new(store, new_run("pending", json!({}))).await;
    let cancelled = store.cancel(pending.id, Timestamp(2_000)).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.finished_at, Some(Timestamp(2_000)));
    let expected = RunError { kind: "cancelled".to_owned(), message: "cancelled on request".to_owned() };
    assert_eq!(cancelled.error, Some(expected));
    assert_eq!(get(store, pending.id).await, cancelled);

    let run = running(store, new_run("running", json!({})), "w1", 2_000).await;
    let cancelled = store.cancel(run.id, Timestamp(3_000)).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!((cancelled.worker_id.clone(), cancelled.lease_until), (None, None));
    // The worker's late report is refused.
    let late = report(&run, "w1", Outcome::Completed(json!(1)), 4_000);
    assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
    assert_eq!(store.heartbeat("w1".to_owned(), vec![(run.id, 1)], Timestamp(9_000)).await.unwrap(), [run.id]);

    let done = running(store, new_run("done", json!({})), "w1", 2_000).await;
    let done = store.finish(report(&done, "w1", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
    match store.cancel(done.id, Timestamp(4_000)).await {
        Err(Error::IllegalTransition { id, source }) => {
            assert_eq!((id, source.from, source.event), (done.id, RunStatus::Completed, Event::Cancel));
        }
        other => panic!("expected an illegal transition, got {other:?}"),
    }
    assert_eq!(get(store, done.id).await, done);
    assert!(matches!(store.cancel(RunId::new(), Timestamp(4_000)).await, Err(Error::NotFound(_))));
}

async fn delete_needs_force_for_active_runs(store: Arc<dyn Store>) {
    let store = &*store;
    let run = running(store, new_run("running", json!({})), "w1", 2_000).await;
    let pending = submit_new(store, new_run("pending", json!({}))).await;
    store.append_logs(vec![(run.id, Timestamp(2_100), Level::Info, "hello".to_owned())]).await.unwrap();
    for active in [pending.id, run.id] {
        assert!(matches!(store.delete(active, false).await, Err(Error::Active(id)) if id == active));
        assert!(store.get(active).await.unwrap().is_some());
    }
    store.delete(run.id, true).await.unwrap();
    assert_eq!(store.get(run.id).await.unwrap(), None);
    assert!(store.logs(run.id, 0, 100).await.unwrap().is_empty());
    assert!(matches!(store.delete(run.id, true).await, Err(Error::NotFound(id)) if id == run.id));

    store.cancel(pending.id, Timestamp(3_000)).await.unwrap();
    store.delete(pending.id, false).await.unwrap();
    assert_eq!(store.get(pending.id).await.unwrap(), None);
}

async fn heartbeat_renews_and_reports_lost_runs(store: Arc<dyn Store>) {
    let store = &*store;
    let kept = running(store, new_run("kept", json!({})), "w1", 2_000).await;
    let cancelled = running(store, new_run("cancelled", json!({})), "w1", 2_000).await;
    store.cancel(cancelled.id, Timestamp(2_500)).await.unwrap();
    let unknown = RunId::new();

    let until = Timestamp(60_000);
    let lost =
        store.heartbeat("w1".to_owned(), vec![(kept.id, 1), (cancelled.id, 1), (unknown, 1)], until).await.unwrap();
    assert_eq!(lost, [cancelled.id, unknown]);
    assert_eq!(get(store, kept.id).await.lease_until, Some(until));
    assert!(store.heartbeat("w1".to_owned(), Vec::new(), until).await.unwrap().is_empty());

    // Another worker, or another attempt, renews nothing.
    let lost = store.heartbeat("w2".to_owned(), vec![(kept.id, 1)], Timestamp(90_000)).await.unwrap();
    assert_eq!(lost, [kept.id]);
    let lost = store.heartbeat("w1".to_owned(), vec![(kept.id, 2), (kept.id, 1)], Timestamp(90_000)).await.unwrap();
    assert_eq!(lost, [kept.id], "the wrong attempt is lost, the right one renewed");
    assert_eq!(get(store, kept.id).await.lease_until, Some(Timestamp(90_000)));
}

async fn rescue_boundaries(store: Arc<dyn Store>) {
    let store = &*store;
    let with_attempts = |name: &str, max_attempts: u32| {
        let mut new = new_run(name, json!({}));
        new.max_attempts = max_attempts;
        new
    };
    let before = running(store, with_attempts("before", 3), "w1", 2_000).await;
    let at = running(store, with_attempts("at", 3), "w1", 2_000).await;
    let after = running(store, with_attempts("after", 3), "w1", 2_000).await;
    let last = running(store, with_attempts("last", 1), "w2", 2_000).await;
    let now = 50_000;
    for (run, until) in [(&before, now - 1), (&at, now), (&after, now + 1), (&last, now - 10)] {
        let worker = run.worker_id.clone().unwrap();
        assert!(store.heartbeat(worker, vec![(run.id, 1)], Timestamp(until)).await.unwrap().is_empty());
    }

    let rescued = store.rescue_expired(Timestamp(now)).await.unwrap();
    let rescued_ids: HashSet<RunId> = rescued.iter().map(|r| r.id).collect();
    assert_eq!(rescued_ids, HashSet::from([before.id, last.id]));

    let requeued = get(store, before.id).await;
    assert_eq!(requeued.status, RunStatus::Pending);
    assert_eq!(requeued.attempt, 2);
    assert_eq!(requeued.not_before, Timestamp(now));
    assert_eq!((requeued.worker_id.clone(), requeued.lease_until, requeued.finished_at), (None, None, None));
    let error = requeued.error.clone().unwrap();
    assert_eq!(error.kind, "lease_expired");
    assert_eq!(error.message, "worker `w1` stopped renewing its lease");
    assert!(rescued.contains(&requeued));

    let failed = get(store, last.id).await;
    assert_eq!((failed.status, failed.attempt), (RunStatus::Failed, 1));
    assert_eq!(failed.finished_at, Some(Timestamp(now)));
    assert_eq!(failed.error.unwrap().message, "worker `w2` stopped renewing its lease");

    for untouched in [&at, &after] {
        let current = get(store, untouched.id).await;
        assert_eq!(current.status, RunStatus::Running);
        assert_eq!(current.attempt, 1);
    }
    assert!(store.rescue_expired(Timestamp(now)).await.unwrap().is_empty());

    // The old worker cannot report the rescued attempt.
    let late = report(&before, "w1", Outcome::Completed(json!(1)), now + 5);
    assert!(matches!(store.finish(late).await, Err(Error::StaleAttempt { .. })));
}

/// More expired runs than two rescue batches (500 in both backends).
async fn rescue_handles_more_than_a_batch(store: Arc<dyn Store>) {
    let count = 1003;
    let mut submits = JoinSet::new();
    for i in 0..count {
        let store = Arc::clone(&store);
        submits.spawn(async move {
            let mut new = new_run("t", json!({ "i": i }));
            new.max_attempts = 2;
            store.submit(new).await.unwrap()
        });
    }
    submits.join_all().await;
    let claimed = store.claim(request("w1", u32::MAX, 2_000)).await.unwrap();
    assert_eq!(claimed.len(), count);

    let expired = Timestamp(2_000).plus(LEASE).plus(Duration::from_millis(1));
    let rescued = store.rescue_expired(expired).await.unwrap();
    assert_eq!(rescued.len(), count);
    assert_eq!(rescued.iter().map(|r| r.id).collect::<HashSet<_>>().len(), count);
    assert!(rescued.iter().all(|r| r.status == RunStatus::Pending && r.attempt == 2));
    let filter = RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 0);
}

async fn prune_keeps_active_runs(store: Arc<dyn Store>) {
    let store = &*store;
    let active = running(store, new_run("running", json!({})), "w1", 2_000).await;
    let completed = running(store, new_run("completed", json!({})), "w1", 2_000).await;
    let pending = submit_new(store, new_run("pending", json!({}))).await;
    store.finish(report(&completed, "w1", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
    store.append_logs(vec![(completed.id, Timestamp(2_500), Level::Info, "done".to_owned())]).await.unwrap();
    let cancelled = submit_new(store, new_run("cancelled", json!({}))).await;
    store.cancel(cancelled.id, Timestamp(5_000)).await.unwrap();

    assert_eq!(store.prune(Timestamp(3_000)).await.unwrap(), 0, "finished exactly at `before` stays");
    assert_eq!(store.prune(Timestamp(3_001)).await.unwrap(), 1);
    assert_eq!(store.get(completed.id).await.unwrap(), None);
    assert!(store.logs(completed.id, 0, 100).await.unwrap().is_empty());
    assert!(store.get(cancelled.id).await.unwrap().is_some());

    assert_eq!(store.prune(Timestamp(i64::MAX)).await.unwrap(), 1);
    assert_eq!(store.get(cancelled.id).await.unwrap(), None);
    assert_eq!(get(store, pending.id).await.status, RunStatus::Pending);
    assert_eq!(get(store, active.id).await.status, RunStatus::Running);
}

async fn log_sequence_numbers(store: Arc<dyn Store>) {
    let store = &*store;
    let a = submit_new(store, new_run("a", json!({}))).await;
    let b = submit_new(store, new_run("b", json!({}))).await;
    let line = |id: RunId, at: i64, level: Level, text: &str| (id, Timestamp(at), level, text.to_owned());
    let first = store
        .append_logs(vec![
            line(a.id, 1, Level::Debug, "a1"),
            line(b.id, 2, Level::Info, "b1"),
            line(RunId::new(), 3, Level::Info, "dropped"),
            line(a.id, 4, Level::Warn, "a2"),
            line(a.id, 5, Level::Error, "a3"),
        ])
        .await
        .unwrap();
    let second =
        store.append_logs(vec![line(a.id, 6, Level::Info, "a4"), line(b.id, 7, Level::Info, "b2")]).await.unwrap();
    assert!(store.append_logs(Vec::new()).await.unwrap().is_empty());

    // Each append answers its lines as stored, in the order given, without
    // the dropped one.
    let answered: Vec<_> = first.iter().map(|l| (l.run_id, l.seq, l.at.0, l.level, l.message.as_str())).collect();
    assert_eq!(
        answered,
        [
            (a.id, 1, 1, Level::Debug, "a1"),
            (b.id, 1, 2, Level::Info, "b1"),
            (a.id, 2, 4, Level::Warn, "a2"),
            (a.id, 3, 5, Level::Error, "a3")
        ]
    );
    let answered: Vec<_> = second.iter().map(|l| (l.run_id, l.seq, l.message.as_str())).collect();
    assert_eq!(answered, [(a.id, 4, "a4"), (b.id, 2, "b2")]);
    let mut stored = store.logs(a.id, 0, 100).await.unwrap();
    stored.extend(store.logs(b.id, 0, 100).await.unwrap());
    for line in first.iter().chain(&second) {
        assert!(stored.contains(line), "{line:?} is what `logs` returns");
    }

    let all = store.logs(a.id, 0, 100).await.unwrap();
    let seen: Vec<_> = all.iter().map(|l| (l.seq, l.at.0, l.level, l.message.as_str())).collect();
    assert_eq!(
        seen,
        [(1, 1, Level::Debug, "a1"), (2, 4, Level::Warn, "a2"), (3, 5, Level::Error, "a3"), (4, 6, Level::Info, "a4")]
    );
    assert!(all.iter().all(|l| l.run_id == a.id));
    let page: Vec<u64> = store.logs(a.id, 1, 2).await.unwrap().iter().map(|l| l.seq).collect();
    assert_eq!(page, [2, 3]);
    assert!(store.logs(a.id, 4, 100).await.unwrap().is_empty());
    let b_lines: Vec<_> = store.logs(b.id, 0, 100).await.unwrap().into_iter().map(|l| (l.seq, l.message)).collect();
    assert_eq!(b_lines, [(1, "b1".to_owned()), (2, "b2".to_owned())]);
    // Only the given lines: a run's log never had more.
    assert!(store.logs(RunId::new(), 0, 100).await.unwrap().is_empty());
}

/// Writers appending to the same runs at once: every line gets its own
/// number, with no gap, and each writer's lines keep their order.
async fn concurrent_log_appends(store: Arc<dyn Store>) {
    let a = submit_new(&*store, new_run("a", json!({}))).await.id;
    let b = submit_new(&*store, new_run("b", json!({}))).await.id;
    let mut writers = JoinSet::new();
    for writer in 0..8 {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            for batch in 0..5 {
                // Runs in both orders, so writers lock them in both orders.
                let (first, second) = if writer % 2 == 0 { (a, b) } else { (b, a) };
                let lines = (0..4)
                    .map(|i| {
                        let id = if i % 2 == 0 { first } else { second };
                        (id, Timestamp(i), Level::Info, format!("{writer}/{batch}/{i}"))
                    })
                    .collect();
                store.append_logs(lines).await.unwrap();
            }
        });
    }
    writers.join_all().await;
    for id in [a, b] {
        let lines = store.logs(id, 0, 1000).await.unwrap();
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), (1..=80).collect::<Vec<_>>());
        for writer in 0..8 {
            let mine: Vec<(u32, u32)> = lines
                .iter()
                .filter_map(|l| {
                    let mut parts = l.message.split('/').map(|p| p.parse::<u32>().unwrap());
                    let (w, batch, i) = (parts.next()?, parts.next()?, parts.next()?);
                    (w == writer).then_some((batch, i))
                })
                .collect();
            let mut sorted = mine.clone();
            sorted.sort_unstable();
            assert_eq!(mine, sorted, "writer {writer}'s lines keep their order");
            assert_eq!(mine.len(), 10);
        }
    }
}

async fn list_filters_and_pages(store: Arc<dyn Store>) {
    let store = &*store;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit_new(store, new_run(if i % 2 == 0 { "even" } else { "odd" }, json!({ "i": i }))).await.id);
    }
    store.cancel(ids[0], Timestamp(2_000)).await.unwrap();

    let page = store.list(RunFilter::default()).await.unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());

    let mut filter =
        RunFilter { task_title: Some("even".to_owned()), limit: Some(1), offset: Some(1), ..RunFilter::default() };
    let page = store.list(filter.clone()).await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert_eq!(page.items[0].id, ids[2]);

    filter.status = Some(RunStatus::Pending);
    filter.offset = None;
    filter.limit = Some(10);
    let page = store.list(filter).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[4], ids[2]]);

    let only_status = RunFilter { status: Some(RunStatus::Cancelled), ..RunFilter::default() };
    let page = store.list(only_status).await.unwrap();
    assert_eq!((page.total, page.items.iter().map(|r| r.id).collect::<Vec<_>>()), (1, vec![ids[0]]));

    // Past the end: no items, the total still counted.
    let past = RunFilter { offset: Some(10), ..RunFilter::default() };
    let page = store.list(past).await.unwrap();
    assert_eq!((page.total, page.items.len()), (5, 0));
}
