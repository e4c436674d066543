//! Leases: heartbeats renew them, rescues take back the runs whose lease
//! ended.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use super::{LEASE, failure, get, new_run, report, request, running};
use crate::run::{Progress, RunId, RunStatus, Timestamp};
use crate::store::{Error, Outcome, Renewal, Report, RunFilter, Store};

pub(super) async fn heartbeat_renews_and_reports_lost_runs(store: Arc<dyn Store>) {
    let store = &*store;
    let kept = running(store, new_run("kept", json!({})), "w1", 2_000).await;
    let cancelled = running(store, new_run("cancelled", json!({})), "w1", 2_000).await;
    store.cancel(cancelled.id, Timestamp(2_500)).await.unwrap();
    let unknown = RunId::new();

    let until = Timestamp(60_000);
    let lost = store
        .heartbeat("w1".to_owned(), vec![(kept.id, 1).into(), (cancelled.id, 1).into(), (unknown, 1).into()], until)
        .await
        .unwrap();
    assert_eq!(lost, [cancelled.id, unknown]);
    assert_eq!(get(store, kept.id).await.lease_until, Some(until));
    assert!(store.heartbeat("w1".to_owned(), Vec::new(), until).await.unwrap().is_empty());

    // Another worker, or another attempt, renews nothing.
    let lost = store.heartbeat("w2".to_owned(), vec![(kept.id, 1).into()], Timestamp(90_000)).await.unwrap();
    assert_eq!(lost, [kept.id]);
    let lost = store
        .heartbeat("w1".to_owned(), vec![(kept.id, 2).into(), (kept.id, 1).into()], Timestamp(90_000))
        .await
        .unwrap();
    assert_eq!(lost, [kept.id], "the wrong attempt is lost, the right one renewed");
    assert_eq!(get(store, kept.id).await.lease_until, Some(Timestamp(90_000)));
}

pub(super) async fn rescue_boundaries(store: Arc<dyn Store>) {
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
        assert!(store.heartbeat(worker, vec![(run.id, 1).into()], Timestamp(until)).await.unwrap().is_empty());
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
pub(super) async fn rescue_handles_more_than_a_batch(store: Arc<dyn Store>) {
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
    let filter = RunFilter { statuses: vec![RunStatus::Running], ..RunFilter::default() };
    assert_eq!(store.list(filter).await.unwrap().total, 0);
}

/// Progress travels with the renewals and the outcome of the attempt that
/// holds the run, and a new attempt starts without any.
pub(super) async fn progress_is_stored_with_the_attempt(store: Arc<dyn Store>) {
    let store = &*store;
    let mut new = new_run("t", json!({}));
    new.max_attempts = 2;
    let run = running(store, new, "w1", 2_000).await;
    assert_eq!(run.progress, None);
    let renewal = |attempt, done| Renewal { id: run.id, attempt, progress: Some(Progress { done, total: 10 }) };
    let until = Timestamp(60_000);

    assert!(store.heartbeat("w1".to_owned(), vec![renewal(1, 3)], until).await.unwrap().is_empty());
    assert_eq!(get(store, run.id).await.progress, Some(Progress { done: 3, total: 10 }));
    store.heartbeat("w1".to_owned(), vec![(run.id, 1).into()], until).await.unwrap();
    assert_eq!(get(store, run.id).await.progress, Some(Progress { done: 3, total: 10 }), "no news keeps it");
    // Neither another worker nor another attempt moves it.
    assert_eq!(store.heartbeat("w2".to_owned(), vec![renewal(1, 9)], until).await.unwrap(), [run.id]);
    assert_eq!(store.heartbeat("w1".to_owned(), vec![renewal(2, 9)], until).await.unwrap(), [run.id]);
    assert_eq!(get(store, run.id).await.progress, Some(Progress { done: 3, total: 10 }));

    // The outcome brings the last of it; the next attempt starts afresh.
    let failed = Outcome::Failed { error: failure("boom"), retry_at: Some(Timestamp(2_500)) };
    let failure_report =
        Report { progress: Some(Progress { done: 4, total: 10 }), ..report(&run, "w1", failed, 2_400) };
    assert_eq!(store.finish(failure_report).await.unwrap().progress, Some(Progress { done: 4, total: 10 }));
    assert_eq!(get(store, run.id).await.progress, Some(Progress { done: 4, total: 10 }));
    let second = store.claim(request("w1", 1, 3_000)).await.unwrap().remove(0);
    assert_eq!((second.attempt, second.progress), (2, None));
    assert_eq!(get(store, run.id).await.progress, None);
    let done = Report {
        progress: Some(Progress { done: 10, total: 10 }),
        ..report(&second, "w1", Outcome::Completed(json!(1)), 3_100)
    };
    store.finish(done).await.unwrap();
    assert_eq!(get(store, run.id).await.progress, Some(Progress { done: 10, total: 10 }));
}
