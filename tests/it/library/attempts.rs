//! A superseded attempt never touches the attempt after it on the same
//! engine: a heartbeat that named attempt 1 and was answered after attempt 2
//! had started does not cancel attempt 2.
//!
//! This is the cause of a flake seen under load, where a panicking run with
//! one retry ended `failed` at attempt 2 with kind `cancelled` instead of
//! `panicked`: the heartbeat's snapshot still held attempt 1 (it stays held
//! while its outcome is stored), the store answered "lost" for the run, and
//! the engine cancelled whatever attempt of that id it held by then. Here the
//! real store is wrapped so that the heartbeat is answered exactly in that
//! window, every time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use taskflow::TaskContext;
use taskflow::client::{Client, SubmitOptions};
use taskflow::engine::{Engine, EngineConfig};
use taskflow::registry::BoxFuture;
use taskflow::run::{Run, RunId, RunStatus, Timestamp};
use taskflow::store::{self, Renewal, Report, SqliteStore, Store};
use taskflow::task;
use tokio::sync::Notify;

use crate::support::backends::Backend;
use crate::support::store_hooks::{Hooked, Hooks};

/// Runs (by id) whose attempt 2 a heartbeat has named: the heartbeat before
/// it, the one about attempt 1, has been answered and acted on by then.
static NAMED_ATTEMPT_2: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn attempt_2_named(run_id: &str) -> bool {
    NAMED_ATTEMPT_2.lock().unwrap().as_ref().is_some_and(|named| named.contains(run_id))
}

/// Fails its first attempt at once; its second waits until a heartbeat has
/// named it (so the heartbeat about attempt 1 was answered while it ran),
/// then returns its attempt.
#[task(title = "attempts.second_waits_for_a_heartbeat")]
async fn second_waits_for_a_heartbeat(ctx: &TaskContext) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        return Err("the first attempt fails".to_owned());
    }
    for _ in 0..6000 {
        if attempt_2_named(ctx.run_id()) {
            return Ok(ctx.attempt());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("no heartbeat named attempt 2 within a minute: the engine forgot it".to_owned())
}

/// The real store, with attempt 1's report held back until a heartbeat has
/// taken attempt 1 in its snapshot, and that heartbeat held back until
/// attempt 2 is running.
struct HeldHeartbeat {
    snapshot_taken: Arc<Notify>,
}

impl Hooks for HeldHeartbeat {
    fn heartbeat(
        &self,
        inner: &Arc<dyn Store>,
        worker_id: String,
        runs: Vec<Renewal>,
        lease_until: Timestamp,
    ) -> BoxFuture<store::Result<Vec<RunId>>> {
        let inner = inner.clone();
        let snapshot_taken = self.snapshot_taken.clone();
        Box::pin(async move {
            for renewal in &runs {
                if renewal.attempt >= 2 {
                    NAMED_ATTEMPT_2.lock().unwrap().get_or_insert_with(HashSet::new).insert(renewal.id.to_string());
                }
            }
            if let Some(id) = runs.iter().find(|r| r.attempt == 1).map(|r| r.id) {
                snapshot_taken.notify_one();
                // Answered only once attempt 2 of the run executes.
                for _ in 0..6000 {
                    let run = inner.get(id).await?.expect("the run exists");
                    if run.attempt >= 2 && run.status == RunStatus::Running {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            inner.heartbeat(worker_id, runs, lease_until).await
        })
    }

    fn finish(&self, inner: &Arc<dyn Store>, report: Report) -> BoxFuture<store::Result<Run>> {
        let inner = inner.clone();
        let snapshot_taken = self.snapshot_taken.clone();
        Box::pin(async move {
            if report.attempt == 1 {
                snapshot_taken.notified().await;
            }
            inner.finish(report).await
        })
    }
}

async fn a_stale_heartbeat_answer_does_not_cancel_the_next_attempt(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::open_in(dir.path()).unwrap()),
        Backend::Postgres => match crate::support::backends::fresh_postgres().await {
            Some(store) => store,
            None => return,
        },
    };
    let hooks = HeldHeartbeat { snapshot_taken: Arc::new(Notify::new()) };
    let store: Arc<dyn Store> = Arc::new(Hooked { inner, hooks });
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(50);
    config.lease = Duration::from_secs(5);
    config.heartbeat_interval = Duration::from_millis(200);
    config.rescue_interval = Duration::from_millis(100);
    let engine = Engine::start(store, config).unwrap();
    let client = Client::new(engine.clone());
    let mut options = SubmitOptions::default();
    options.retries = Some(1);
    options.retry_delay = Some(Duration::from_millis(5));
    let run = client.submit_with("attempts.second_waits_for_a_heartbeat", json!({}), options).await.unwrap();

    let done = client.wait(run.id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "attempt 2 ended with {:?}", done.error);
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result, Some(json!(2)));
    engine.shutdown(Duration::from_secs(1)).await;
}

crate::support::backends::on_every_backend!(a_stale_heartbeat_answer_does_not_cancel_the_next_attempt);
