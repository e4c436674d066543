//! The engine over a real SQLite file: submit, execute, retry, time out,
//! cancel, delete, de-duplicate, and rescue runs of a dead worker.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use taskflow::ExecutorKind;

use crate::support::backends::Backend;
use taskflow::client::{Client, ClientError, SubmitOptions};
use taskflow::engine::{Engine, EngineConfig};
use taskflow::run::{RunStatus, Timestamp};
use taskflow::store::{self, ClaimRequest, RunFilter, SqliteStore, Store};

const WAIT: Duration = Duration::from_secs(30);

/// An engine with test timings over a fresh database file.
struct Fixture {
    client: Client,
    engine: Engine,
    backend: Backend,
    _dir: tempfile::TempDir,
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_secs(5);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rescue_interval = Duration::from_millis(100);
    config
}

/// The engine, on a fresh database of `backend`; `None` (after a loud
/// `SKIPPED`) when that backend is not available here.
async fn fixture(backend: Backend) -> Option<Fixture> {
    let (store, dir) = fresh_store(backend).await?;
    Some(start(store, dir, backend))
}

/// A fresh store with no engine yet, to arrange runs before any claim.
async fn fresh_store(backend: Backend) -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open_in(dir.path()).unwrap()),
        Backend::Postgres => crate::support::backends::fresh_postgres().await?,
    };
    Some((store, dir))
}

/// Starts the engine on a store.
fn start(store: Arc<dyn Store>, dir: tempfile::TempDir, backend: Backend) -> Fixture {
    start_with(store, dir, backend, config())
}

/// Starts an engine with `config` on a store.
fn start_with(store: Arc<dyn Store>, dir: tempfile::TempDir, backend: Backend, config: EngineConfig) -> Fixture {
    let engine = Engine::start(store.clone(), config).unwrap();
    Fixture { client: Client::new(engine.clone()), engine, backend, _dir: dir }
}

/// The test timings changed by `f`.
fn config_with(f: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut config = config();
    f(&mut config);
    config
}

/// An engine with `config` on a fresh database of `backend`.
async fn fixture_with(backend: Backend, config: EngineConfig) -> Option<Fixture> {
    let (store, dir) = fresh_store(backend).await?;
    Some(start_with(store, dir, backend, config))
}

fn options(f: impl FnOnce(&mut SubmitOptions)) -> SubmitOptions {
    let mut options = SubmitOptions::default();
    f(&mut options);
    options
}

async fn a_run_completes_with_its_result_and_logs(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let run = fx.client.submit("tests.echo_logged", json!({"text": "hello"})).await.unwrap();
    // Pending, or already running: once the engine's first claim has found
    // the queue empty, a submit claims its run itself (`NewRun::claim`), and
    // whether that claim came back before this submit is the machine's
    // timing, not the engine's behaviour.
    assert!(matches!(run.status, RunStatus::Pending | RunStatus::Running), "{:?}", run.status);
    assert_eq!(run.attempt, 1);
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.result, Some(json!("hello")));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    // Log lines are written in batches after the run; wait for them.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = fx.client.logs(run.id, 0, 100).await.unwrap();
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].seq, lines[0].message.as_str()), (1, "echo hello"));
}

async fn bad_submits_store_nothing(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let error = fx.client.submit("tests.async_double", json!({"n": "two"})).await.unwrap_err();
    assert_eq!(error.to_string(), r#"payload.n: expected integer, found string "two""#);
    let error = fx.client.submit("no.such.task", json!({})).await.unwrap_err();
    assert!(matches!(error, ClientError::UnknownTask(_)), "{error}");
    assert_eq!(fx.client.list(RunFilter::default()).await.unwrap().total, 0);
}

async fn failed_attempts_retry_with_back_off_until_one_succeeds(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let payload = json!({"key": format!("retry-then-succeed-{:?}", fx.backend), "failures": 2});
    let run = fx
        .client
        .submit_with("tests.flaky", payload, options(|o| o.retry_delay = Some(Duration::from_millis(10))))
        .await
        .unwrap();
    assert_eq!(run.max_attempts, 6, "the task's retries = 5");
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.attempt, 3);
    assert_eq!(done.result, Some(json!(3)));
}

async fn a_run_fails_after_its_last_attempt(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let payload = json!({"key": format!("always-fails-{:?}", fx.backend), "failures": 100});
    let run = fx
        .client
        .submit_with(
            "tests.flaky",
            payload,
            options(|o| {
                o.retries = Some(2);
                o.retry_delay = Some(Duration::from_millis(5));
            }),
        )
        .await
        .unwrap();
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.attempt, 3);
    let error = done.error.unwrap();
    assert_eq!((error.kind.as_str(), error.message.as_str()), ("failed", "failure 3"));
}

async fn panics_fail_the_attempt_and_are_retried(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let run = fx
        .client
        .submit_with(
            "tests.panics",
            json!({"message": "boom"}),
            options(|o| {
                o.retries = Some(1);
                o.retry_delay = Some(Duration::from_millis(5));
            }),
        )
        .await
        .unwrap();
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.attempt, 2, "a panic may pass next time, so it is retried");
    let error = done.error.unwrap();
    assert_eq!((error.kind.as_str(), error.message.as_str()), ("panicked", "the task panicked: boom"));
}

async fn runs_for_every_executor_are_stored_with_it(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    for executor in [ExecutorKind::Process, ExecutorKind::Docker] {
        // Delayed: the executors themselves are tested in their own modules.
        let run = fx
            .client
            .submit_with(
                "tests.unit",
                json!({}),
                options(|o| {
                    o.executor = Some(executor);
                    o.delay = Some(Duration::from_secs(3600));
                    o.no_dedup = true;
                }),
            )
            .await
            .unwrap();
        assert_eq!(fx.client.get(run.id).await.unwrap().executor, executor);
    }
}

async fn a_run_times_out(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let run = fx
        .client
        .submit_with("tests.spin_until_cancelled", json!({}), options(|o| o.timeout = Some(Duration::from_millis(100))))
        .await
        .unwrap();
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.error.unwrap().kind, "timeout");
}

async fn pending_and_running_runs_cancel_and_final_ones_refuse(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let later = fx
        .client
        .submit_with("tests.unit", json!({}), options(|o| o.delay = Some(Duration::from_secs(3600))))
        .await
        .unwrap();
    assert_eq!(fx.client.cancel(later.id).await.unwrap().status, RunStatus::Cancelled);

    let spinning = fx.client.submit("tests.spin_until_cancelled", json!({})).await.unwrap();
    wait_for_status(&fx.client, spinning.id, RunStatus::Running).await;
    assert_eq!(fx.client.cancel(spinning.id).await.unwrap().status, RunStatus::Cancelled);
    let done = fx.client.wait(spinning.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Cancelled, "the late report changes nothing");
    // The task saw the cancellation and its thread is free again.
    for _ in 0..200 {
        if fx.engine.running_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.engine.running_count(), 0);

    let error = fx.client.cancel(later.id).await.unwrap_err();
    assert_eq!(error.to_string(), format!("run {}: a cancelled run cannot be cancelled", later.id));
}

async fn deleting_an_active_run_needs_force(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let run = fx
        .client
        .submit_with("tests.unit", json!({}), options(|o| o.delay = Some(Duration::from_secs(3600))))
        .await
        .unwrap();
    let error = fx.client.delete(run.id, false).await.unwrap_err();
    assert!(matches!(error, ClientError::Store(store::Error::Active(_))), "{error}");
    fx.client.delete(run.id, true).await.unwrap();
    assert!(matches!(fx.client.get(run.id).await, Err(ClientError::Store(store::Error::NotFound(_)))));
}

async fn equal_submits_share_an_active_run_unless_asked_not_to(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    // Delayed, so they stay active; `also` sets what else the submit asks.
    let submit = |also: fn(&mut SubmitOptions)| {
        let client = fx.client.clone();
        async move {
            let asked = options(|o| {
                o.delay = Some(Duration::from_secs(3600));
                also(o);
            });
            client.submit_with("tests.async_double", json!({"n": 1}), asked).await.unwrap()
        }
    };
    let first = submit(|_| {}).await;
    let second = submit(|_| {}).await;
    assert_eq!(first.id, second.id);
    let third = submit(|o| o.no_dedup = true).await;
    assert_ne!(first.id, third.id);
    // The executor is part of what is asked: a submit for another one is
    // not handed the active run of the first.
    let elsewhere = submit(|o| o.executor = Some(ExecutorKind::Process)).await;
    assert_ne!(first.id, elsewhere.id, "another executor, another run");
    assert_eq!(elsewhere.executor, ExecutorKind::Process);

    let keyed = |n: i64| {
        let client = fx.client.clone();
        async move {
            client
                .submit_with("tests.async_double", json!({"n": n}), options(|o| o.idempotency_key = Some("k-1".into())))
                .await
        }
    };
    let a = keyed(5).await.unwrap();
    let b = keyed(5).await.unwrap();
    assert_eq!(a.id, b.id);
    let error = keyed(6).await.unwrap_err();
    assert!(matches!(error, ClientError::Store(store::Error::IdempotencyConflict { .. })), "{error}");

    // A keyed submit equal to an unkeyed active run gets a run of its own,
    // so the key is recorded and a retry after that run ends is still safe.
    let delayed = options(|o| o.delay = Some(Duration::from_secs(3600)));
    let unkeyed = fx.client.submit_with("tests.async_double", json!({"n": 7}), delayed).await.unwrap();
    let keyed_run = fx
        .client
        .submit_with("tests.async_double", json!({"n": 7}), options(|o| o.idempotency_key = Some("k-2".into())))
        .await
        .unwrap();
    assert_ne!(unkeyed.id, keyed_run.id);
    fx.client.wait(keyed_run.id, WAIT).await.unwrap();
    let retried = fx
        .client
        .submit_with("tests.async_double", json!({"n": 7}), options(|o| o.idempotency_key = Some("k-2".into())))
        .await
        .unwrap();
    assert_eq!(retried.id, keyed_run.id, "the retry after completion returns the same run");
}

async fn a_dead_workers_run_is_rescued_and_counted_as_an_attempt(backend: Backend) {
    let Some((store, dir)) = fresh_store(backend).await else { return };
    let submitter = Client::for_store(store.clone());
    let run =
        submitter.submit_with("tests.async_double", json!({"n": 21}), options(|o| o.retries = Some(1))).await.unwrap();
    // Another worker claims it and dies: its lease simply runs out. No
    // engine runs yet, so nothing can claim it first.
    let claimed = store
        .claim(ClaimRequest {
            worker_id: "dead-worker".into(),
            limit: 10,
            lease: Duration::from_millis(200),
            executors: vec![ExecutorKind::Thread],
            titles: vec!["tests.async_double".into()],
            task_limits: Vec::new(),
            lingering: Vec::new(),
            now: Timestamp::now(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, run.id);
    let fx = start(store, dir, backend);
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.attempt, 2, "the expired lease cost an attempt");
    assert_eq!(done.result, Some(json!(42)));
}

/// Waits until the engine holds `count` runs.
async fn wait_for_running_count(engine: &Engine, count: usize) {
    for _ in 0..1000 {
        if engine.running_count() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the engine never held {count} runs (it holds {})", engine.running_count());
}

async fn wait_for_status(client: &Client, id: taskflow::run::RunId, status: RunStatus) {
    for _ in 0..1000 {
        if client.get(id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {id} never became {status}");
}

async fn a_task_concurrency_limit_holds_across_the_engine(backend: Backend) {
    let Some((store, dir)) = fresh_store(backend).await else { return };
    // All four are pending before the engine starts, so its first claim
    // could take them all: the limit is what keeps them one at a time.
    let submitter = Client::for_store(store.clone());
    let group = format!("{backend:?}");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(submitter.submit("tests.limited", json!({"n": n, "group": group})).await.unwrap().id);
    }
    let fx = start(store, dir, backend);
    for id in ids {
        assert_eq!(fx.client.wait(id, WAIT).await.unwrap().status, RunStatus::Completed);
    }
    assert_eq!(crate::support::tasks::most_inside_limited(&group), 1);
}

async fn typed_helpers_submit_and_return_the_tasks_own_types(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    use crate::support::tasks;
    let run = tasks::nested::deeper::async_double::submit(&fx.client, 21).await.unwrap();
    assert_eq!(run.run().task_title, "tests.async_double");
    assert_eq!(run.wait().await.unwrap(), 42);

    let points = vec![tasks::Point { x: 1, y: 2 }];
    let sink = tasks::kitchen_sink::submit(
        &fx.client,
        7,
        0.5,
        true,
        "typed".into(),
        Some(1),
        points,
        Default::default(),
        tasks::Colour::Blue,
        tasks::Point { x: 3, y: 4 },
    )
    .await
    .unwrap();
    assert_eq!(sink.wait().await.unwrap(), "7 0.5 true typed Some(1) 1 0 Blue 3,4");

    let failing = tasks::fails::submit(&fx.client).await.unwrap();
    assert_eq!(failing.wait().await.unwrap_err().to_string(), "disk on fire");

    // Types that only go one way are told at run time, clearly.
    let error = tasks::only_in::submit(&fx.client, tasks::OnlyIn { x: 1 }).await.unwrap_err();
    assert!(
        error.to_string().starts_with("argument `value`: `it::support::tasks::OnlyIn` does not implement `Serialize`"),
        "{error}"
    );
    let error = tasks::only_out::submit(&fx.client, 5).await.unwrap().wait().await.unwrap_err();
    assert!(error.to_string().contains("`it::support::tasks::OnlyOut` does not implement `Deserialize`"), "{error}");
}

async fn a_heartbeat_keeps_a_short_lease_alive_through_a_long_run(backend: Backend) {
    let config = config_with(|c| {
        c.lease = Duration::from_secs(1);
        c.heartbeat_interval = Duration::from_millis(200);
    });
    let Some(fx) = fixture_with(backend, config).await else { return };
    // Retries left, so a lost lease would show as a second attempt rather
    // than only as a failure.
    let run =
        fx.client.submit_with("tests.sleep_ms", json!({"ms": 3000}), options(|o| o.retries = Some(3))).await.unwrap();
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.attempt, 1, "the lease never ran out");
    assert_eq!(done.result, Some(json!(3000)));
}

async fn an_engine_runs_at_most_max_concurrency_at_once(backend: Backend) {
    let Some((store, dir)) = fresh_store(backend).await else { return };
    // All six are pending before the engine starts, so only its slots
    // bound how many it takes at once.
    let submitter = Client::for_store(store.clone());
    let group = format!("max-concurrency-{backend:?}");
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(submitter.submit("tests.overlap", json!({"n": n, "group": group})).await.unwrap().id);
    }
    let fx = start_with(store, dir, backend, config_with(|c| c.max_concurrency = 2));
    for id in ids {
        assert_eq!(fx.client.wait(id, WAIT).await.unwrap().status, RunStatus::Completed);
    }
    let most = crate::support::tasks::most_inside_overlap(&group);
    assert!((1..=2).contains(&most), "{most} runs were inside at once");
}

async fn higher_priority_runs_start_first(backend: Backend) {
    let Some((store, dir)) = fresh_store(backend).await else { return };
    let submitter = Client::for_store(store.clone());
    let group = format!("priorities-{backend:?}");
    let mut ids = Vec::new();
    for (label, priority) in [("low", -5), ("high", 10), ("medium", 0)] {
        let payload = json!({"group": group, "label": label});
        let run =
            submitter.submit_with("tests.record_start", payload, options(|o| o.priority = priority)).await.unwrap();
        ids.push(run.id);
    }
    let fx = start_with(store, dir, backend, config_with(|c| c.max_concurrency = 1));
    for id in ids {
        assert_eq!(fx.client.wait(id, WAIT).await.unwrap().status, RunStatus::Completed);
    }
    assert_eq!(crate::support::tasks::start_order(&group), ["high", "medium", "low"]);
}

async fn shutdown_gives_a_running_run_back_for_the_next_engine(backend: Backend) {
    let Some((store, dir)) = fresh_store(backend).await else { return };
    let first = Engine::start(store.clone(), config_with(|c| c.worker_id = "first-engine".into())).unwrap();
    let client = Client::new(first.clone());
    let key = format!("shutdown-{backend:?}");
    let run = client.submit("tests.spin_until_released", json!({"key": key})).await.unwrap();
    wait_for_status(&client, run.id, RunStatus::Running).await;
    // Held by the engine, not only claimed in the store (see the report: a
    // claim still in flight when shutdown begins is not given back).
    wait_for_running_count(&first, 1).await;
    first.shutdown(Duration::from_millis(100)).await;
    assert_eq!(first.running_count(), 0, "the cancelled task unwound");
    let released = client.get(run.id).await.unwrap();
    assert_eq!(released.status, RunStatus::Pending, "{released:?}");
    assert_eq!(released.attempt, 1, "a released attempt is not counted");
    // Nothing claims it while no engine runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.get(run.id).await.unwrap().status, RunStatus::Pending);

    let fx = start_with(store, dir, backend, config_with(|c| c.worker_id = "second-engine".into()));
    wait_for_status(&fx.client, run.id, RunStatus::Running).await;
    let taken = fx.client.get(run.id).await.unwrap();
    assert_eq!((taken.worker_id.as_deref(), taken.attempt), (Some("second-engine"), 1));
    crate::support::tasks::release(&key);
    let done = fx.client.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.attempt, 1);
    assert_eq!(done.result, Some(json!(key)));
}

async fn a_forced_delete_stops_an_executing_run_for_good(backend: Backend) {
    let Some(fx) = fixture(backend).await else { return };
    let run = fx.client.submit("tests.spin_until_cancelled", json!({})).await.unwrap();
    wait_for_status(&fx.client, run.id, RunStatus::Running).await;
    fx.client.delete(run.id, true).await.unwrap();
    assert!(matches!(fx.client.get(run.id).await, Err(ClientError::Store(store::Error::NotFound(_)))));
    // The task was told to stop and its slot is free again.
    for _ in 0..1000 {
        if fx.engine.running_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.engine.running_count(), 0);
    // Neither its late report, the heartbeat nor the rescuer brings it back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(fx.client.get(run.id).await, Err(ClientError::Store(store::Error::NotFound(_)))));
    assert_eq!(fx.client.list(RunFilter::default()).await.unwrap().total, 0);
    assert_eq!(fx.engine.running_count(), 0);
}

async fn subscribers_see_a_runs_status_changes_and_logs(backend: Backend) {
    use taskflow::engine::RunEvent;
    let Some(fx) = fixture(backend).await else { return };
    let mut events = fx.client.subscribe();
    let run = fx.client.submit("tests.echo_logged", json!({"text": "hello"})).await.unwrap();
    let mut seen = Vec::new();
    let collect = async {
        loop {
            match events.recv().await {
                Ok(event) if event.run_id() == run.id => {
                    seen.push(event);
                    let completed =
                        seen.iter().any(|e| matches!(e, RunEvent::Status(r) if r.status == RunStatus::Completed));
                    let logged = seen.iter().any(|e| matches!(e, RunEvent::Log(_)));
                    if completed && logged {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => panic!("the subscription failed: {error}"),
            }
        }
    };
    tokio::time::timeout(WAIT, collect).await.expect("the run's events within the deadline");
    // Pending, running and completed. The submitter publishes `pending`
    // after its commit and the engine may claim in between, so only running
    // before completed is ordered, and completed is the last word.
    let statuses: Vec<RunStatus> = seen
        .iter()
        .filter_map(|e| match e {
            RunEvent::Status(r) => Some(r.status),
            _ => None,
        })
        .collect();
    // A run its submit claimed is stored running: it never was pending.
    if run.status == RunStatus::Pending {
        assert!(statuses.contains(&RunStatus::Pending), "{statuses:?}");
    }
    let running = statuses.iter().position(|s| *s == RunStatus::Running).expect("running seen");
    let completed = statuses.iter().rposition(|s| *s == RunStatus::Completed).expect("completed seen");
    assert!(running < completed, "running before completed: {statuses:?}");
    assert_eq!(statuses.last(), Some(&RunStatus::Completed), "{statuses:?}");
    let logs: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log(line) => Some(line.message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(logs, ["echo hello"]);
}

/// Two engines' worth of connections on one PostgreSQL database: a client
/// of one store submits, an engine on another connection executes, and the
/// first client sees the run finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_submitted_on_one_postgres_connection_is_executed_by_an_engine_on_another() {
    use taskflow::store::PostgresStore;
    let Some(server) = crate::support::backends::postgres_server() else { return };
    let url = PostgresStore::create_test_database(&server).await.expect("a fresh test database");
    let store_a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.expect("the test database opens"));
    let store_b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.expect("the test database opens"));
    // A never runs an engine: only B can execute the run.
    let client_a = Client::for_store(store_a);
    let engine_b = Engine::start(store_b, config_with(|c| c.worker_id = "engine-b".into())).unwrap();
    let run = client_a.submit("tests.async_double", json!({"n": 21})).await.unwrap();
    let done = client_a.wait(run.id, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.result, Some(json!(42)));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    engine_b.shutdown(Duration::from_secs(1)).await;
}

/// A run submitted to an idle engine is claimed by its submit: it comes
/// back `running`, leased to this engine, started when it was created, and
/// completes. While a run waits in the queue, a new submit does not claim
/// its own run: it queues behind and starts after the waiting one.
/// (SQLite: the PostgreSQL store stores such a run pending, for now.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_to_an_idle_engine_claims_its_run_and_never_overtakes_a_waiting_one() {
    let config = config_with(|c| c.max_concurrency = 1);
    let worker_id = config.worker_id.clone();
    let Some(fx) = fixture_with(Backend::Sqlite, config).await else { return };
    // Idle once a first run went through: the engine's last claim came back short.
    let first = fx.client.submit("tests.sleep_ms", json!({"ms": 0})).await.unwrap();
    assert_eq!(fx.client.wait(first.id, WAIT).await.unwrap().status, RunStatus::Completed);
    settle(&fx.engine).await;

    let direct = fx.client.submit("tests.sleep_ms", json!({"ms": 1})).await.unwrap();
    assert_eq!(direct.status, RunStatus::Running, "{direct:?}");
    assert_eq!(direct.worker_id.as_deref(), Some(worker_id.as_str()));
    assert_eq!(direct.started_at, Some(direct.created_at));
    assert!(direct.lease_until.is_some_and(|until| until > direct.created_at));
    let done = fx.client.wait(direct.id, WAIT).await.unwrap();
    assert_eq!((done.status, done.result), (RunStatus::Completed, Some(json!(1))));
    settle(&fx.engine).await;

    // The one slot taken by a run of 300 ms: the next one waits, and the
    // one after it must not take the slot first.
    let blocker = fx.client.submit("tests.sleep_ms", json!({"ms": 300})).await.unwrap();
    assert_eq!(blocker.status, RunStatus::Running, "{blocker:?}");
    let waiting = fx.client.submit("tests.sleep_ms", json!({"ms": 2})).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Pending, "{waiting:?}");
    let later = fx.client.submit("tests.sleep_ms", json!({"ms": 3})).await.unwrap();
    assert_eq!(later.status, RunStatus::Pending, "{later:?}");
    let waiting = fx.client.wait(waiting.id, WAIT).await.unwrap();
    let later = fx.client.wait(later.id, WAIT).await.unwrap();
    assert_eq!((waiting.status, later.status), (RunStatus::Completed, RunStatus::Completed));
    assert!(waiting.finished_at <= later.started_at, "{waiting:?} then {later:?}");
    fx.engine.shutdown(Duration::from_secs(1)).await;
}

/// A submit its caller stops waiting for, once the run is on its way to
/// the store claimed for this engine, still starts that run: it completes
/// rather than sitting `running` with nobody executing it until its lease
/// runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_submit_whose_caller_stops_waiting_still_starts_its_run() {
    let Some(fx) = fixture_with(Backend::Sqlite, config()).await else { return };
    let first = fx.client.submit("tests.sleep_ms", json!({"ms": 0})).await.unwrap();
    fx.client.wait(first.id, WAIT).await.unwrap();
    settle(&fx.engine).await;
    // Polled once, then dropped, as a caller that stops waiting does: its
    // write cannot have committed within one poll (no timer involved, whose
    // millisecond ticks would let a fast commit finish first).
    let mut abandoned = Box::pin(fx.client.submit("tests.sleep_ms", json!({"ms": 7})));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(abandoned.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "the submit finished within one poll: {first:?}");
    drop(abandoned);
    let mut filter = RunFilter::default();
    filter.task_title = Some("tests.sleep_ms".to_owned());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let runs = fx.client.list(filter.clone()).await.unwrap().items;
        let run = runs.iter().find(|run| run.payload == json!({"ms": 7}));
        if let Some(run) = run.filter(|run| run.status.is_final()) {
            assert_eq!((run.status, run.result.clone()), (RunStatus::Completed, Some(json!(7))), "{run:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the abandoned submit's run never finished: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fx.engine.shutdown(Duration::from_secs(1)).await;
}

/// Until the engine holds no run (a run's completion is published just
/// before its slot is freed), then ten poll intervals for its claim loop to
/// find the queue empty.
async fn settle(engine: &Engine) {
    for _ in 0..1000 {
        if engine.running_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(config().poll_interval * 10).await;
}

crate::support::backends::on_every_backend!(
    typed_helpers_submit_and_return_the_tasks_own_types,
    a_run_completes_with_its_result_and_logs,
    bad_submits_store_nothing,
    failed_attempts_retry_with_back_off_until_one_succeeds,
    a_run_fails_after_its_last_attempt,
    panics_fail_the_attempt_and_are_retried,
    runs_for_every_executor_are_stored_with_it,
    a_run_times_out,
    pending_and_running_runs_cancel_and_final_ones_refuse,
    deleting_an_active_run_needs_force,
    equal_submits_share_an_active_run_unless_asked_not_to,
    a_dead_workers_run_is_rescued_and_counted_as_an_attempt,
    a_task_concurrency_limit_holds_across_the_engine,
    a_heartbeat_keeps_a_short_lease_alive_through_a_long_run,
    an_engine_runs_at_most_max_concurrency_at_once,
    higher_priority_runs_start_first,
    shutdown_gives_a_running_run_back_for_the_next_engine,
    a_forced_delete_stops_an_executing_run_for_good,
    subscribers_see_a_runs_status_changes_and_logs,
);
