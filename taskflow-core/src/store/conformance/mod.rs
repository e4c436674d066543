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

use std::time::Duration;

use serde_json::Value;

use self::claim::{
    claim_order_and_limit, claims_are_exclusive, claims_only_runs_of_known_tasks, task_concurrency_limits,
    task_concurrency_limits_hold_across_claimers, the_strictest_live_limit_binds_every_claimer,
};
use self::finish::{
    cancel_pending_and_running, delete_needs_force_for_active_runs, every_attempt_is_kept, finish_is_fenced,
    prune_keeps_active_runs, release_gives_the_run_back, retry_then_fail_at_max_attempts,
};
use self::lease::{
    heartbeat_renews_and_reports_lost_runs, progress_is_stored_with_the_attempt, rescue_boundaries,
    rescue_handles_more_than_a_batch,
};
use self::list::list_filters_and_pages;
use self::logs::{concurrent_log_appends, log_sequence_numbers};
use self::submit::{
    a_unique_submit_finds_a_plain_run_of_its_batch, de_duplication, equal_submits_at_once_make_one_run,
    idempotency_key, payload_and_result_keep_their_text, submit_get_round_trip,
};
use self::workers::{
    a_provision_token_raced_for_registers_one, a_revoked_workers_runs_go_back,
    provision_tokens_register_one_worker_each,
};
use super::{ClaimRequest, NewRun, Outcome, Report, SqliteStore, Store};
use crate::run::ExecutorKind;
use crate::run::{Run, RunError, RunId, Timestamp};

/// Expands each case into a test per backend. The cases after `one_thread:`
/// run on a current-thread runtime, where the commands a case starts
/// together (`tokio::join!`) are all queued before the store's batcher
/// runs: one batch on PostgreSQL. (SQLite's writer is a thread of its own
/// and may split them; its answers must not differ.)
macro_rules! conformance {
    ($($case:ident),* $(,)?; one_thread: $($one:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open_in(dir.path()).unwrap();
                    super::$case(std::sync::Arc::new(store)).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $one() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open_in(dir.path()).unwrap();
                    super::$one(std::sync::Arc::new(store)).await;
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
            $(
                #[tokio::test]
                async fn $one() {
                    super::pg::with_store(super::$one).await;
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
    the_strictest_live_limit_binds_every_claimer,
    finish_is_fenced,
    retry_then_fail_at_max_attempts,
    every_attempt_is_kept,
    release_gives_the_run_back,
    cancel_pending_and_running,
    delete_needs_force_for_active_runs,
    heartbeat_renews_and_reports_lost_runs,
    progress_is_stored_with_the_attempt,
    rescue_boundaries,
    rescue_handles_more_than_a_batch,
    prune_keeps_active_runs,
    log_sequence_numbers,
    concurrent_log_appends,
    list_filters_and_pages,
    provision_tokens_register_one_worker_each,
    a_revoked_workers_runs_go_back,
    a_provision_token_raced_for_registers_one;
    one_thread: a_unique_submit_finds_a_plain_run_of_its_batch,
);

#[cfg(feature = "postgres")]
pub(super) mod pg;

mod claim;
mod finish;
mod lease;
mod list;
mod logs;
mod submit;
mod workers;

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
        lingering: Vec::new(),
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
    Report {
        id: run.id,
        attempt: run.attempt,
        worker_id: worker.to_owned(),
        outcome,
        now: Timestamp(now),
        progress: None,
    }
}

fn failure(message: &str) -> RunError {
    RunError { kind: "failed".to_owned(), message: message.to_owned() }
}

async fn get(store: &dyn Store, id: RunId) -> Run {
    store.get(id).await.unwrap().unwrap()
}
