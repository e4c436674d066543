//! Claims: their order and limit, only known tasks, exclusive across
//! claimers, tasks' concurrency limits (the strictest any live claimer
//! declares).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use super::{LEASE, get, new_run, report, request, submit_new};
use crate::run::ExecutorKind;
use crate::run::{RunId, RunStatus, Timestamp};
use crate::store::{Outcome, RunFilter, Store};

pub(super) async fn claim_order_and_limit(store: Arc<dyn Store>) {
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
pub(super) async fn claims_only_runs_of_known_tasks(store: Arc<dyn Store>) {
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

pub(super) async fn claims_are_exclusive(store: Arc<dyn Store>) {
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
    let filter = RunFilter { statuses: vec![RunStatus::Pending], ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 0);
}

/// A task's concurrency limit caps its running runs; other tasks are
/// claimed past its pending ones.
pub(super) async fn task_concurrency_limits(store: Arc<dyn Store>) {
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

    // A claimer that declares no limit is held to the others' live one.
    assert!(store.claim(request("w3", 10, 3_000)).await.unwrap().is_empty(), "w2's limit binds w3");
    // Once every declaration lapsed, nothing holds the last one back.
    let claimed = store.claim(request("w3", 10, lapsed(3_000))).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [limited[3]]);
}

/// When the limits a claim at `at` declares no longer bind anyone.
fn lapsed(at: i64) -> i64 {
    at + i64::try_from((LEASE * crate::store::LIMIT_DECLARATION_LEASES).as_millis()).unwrap() + 1
}

/// Claimers that declare different limits for one task (binaries of two
/// versions during a rolling upgrade) are all held to the smallest live
/// one, whatever they declare themselves; a claimer's attempts still
/// executing off the store's books count against it.
pub(super) async fn the_strictest_live_limit_binds_every_claimer(store: Arc<dyn Store>) {
    let store = &*store;
    for i in 0..6 {
        submit_new(store, new_run("limited", json!({ "i": i }))).await;
    }
    let declaring = |worker: &str, limit: u32, now: i64| {
        let mut claim = request(worker, 10, now);
        claim.task_limits = vec![("limited".to_owned(), limit)];
        claim
    };
    let strict = store.claim(declaring("strict", 1, 2_000)).await.unwrap();
    assert_eq!(strict.len(), 1);
    assert!(store.claim(declaring("lax", 5, 2_000)).await.unwrap().is_empty(), "held to the strict limit of 1");
    assert!(store.claim(request("none", 10, 2_000)).await.unwrap().is_empty(), "held to it without a limit");

    // The strict claimer's run ends: one more may run, for anyone.
    store.finish(report(&strict[0], "strict", Outcome::Completed(json!(1)), 3_000)).await.unwrap();
    let lax = store.claim(declaring("lax", 5, 3_000)).await.unwrap();
    assert_eq!(lax.len(), 1, "room for one under the strict limit");

    // The strict declaration lapses (its claimer stopped claiming): the
    // lax one, renewed at 3_000 and still live, governs.
    let now = lapsed(2_000);
    let mut more = request("none", 10, now);
    more.lingering = vec![("limited".to_owned(), 1)];
    let claimed = store.claim(more).await.unwrap();
    assert_eq!(claimed.len(), 3, "5, less the lax claimer's running run and this claimer's lingering attempt");
    let filter = RunFilter { statuses: vec![RunStatus::Running], ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 4);
}

/// Eight claimers at once never run more than the limit of a task.
pub(super) async fn task_concurrency_limits_hold_across_claimers(store: Arc<dyn Store>) {
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
    let filter = RunFilter { statuses: vec![RunStatus::Running], ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 1);
}
