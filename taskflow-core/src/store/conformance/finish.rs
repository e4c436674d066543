//! Ends of runs: fenced finishes, retries, the record of every attempt,
//! releases, cancels, deletes and prunes.

use std::sync::Arc;

use serde_json::json;

use super::{LEASE, failure, get, new_run, report, request, running, submit_new};
use crate::log::Level;
use crate::run::{AttemptOutcome, Event, ExecutorKind, RunError, RunId, RunStatus, Timestamp};
use crate::store::{Error, Outcome, Store};

pub(super) async fn finish_is_fenced(store: Arc<dyn Store>) {
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

pub(super) async fn retry_then_fail_at_max_attempts(store: Arc<dyn Store>) {
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

/// Every ended attempt is kept with the run: who executed it, where, when,
/// how it ended and why it failed; a hand-back is not an attempt.
pub(super) async fn every_attempt_is_kept(store: Arc<dyn Store>) {
    let store = &*store;
    let mut new = new_run("t", json!({}));
    new.max_attempts = 3;
    let first = running(store, new, "w1", 2_000).await;
    assert!(first.attempts.is_empty(), "the attempt running now is not among the ended ones");
    let failed = Outcome::Failed { error: failure("boom"), retry_at: Some(Timestamp(2_500)) };
    store.finish(report(&first, "w1", failed, 2_400)).await.unwrap();
    // Attempt 2 is handed back, then claimed again, then loses its lease.
    let second = store.claim(request("w2", 1, 3_000)).await.unwrap().remove(0);
    store.finish(report(&second, "w2", Outcome::Released, 3_100)).await.unwrap();
    let again = store.claim(request("w2", 1, 3_200)).await.unwrap().remove(0);
    assert_eq!(again.attempt, 2, "a hand-back is not an attempt");
    let expired_at = 3_200 + i64::try_from(LEASE.as_millis()).unwrap() + 1;
    assert_eq!(store.rescue_expired(Timestamp(expired_at)).await.unwrap().len(), 1);
    let third = store.claim(request("w3", 1, expired_at)).await.unwrap().remove(0);
    let done = store.finish(report(&third, "w3", Outcome::Completed(json!(7)), expired_at + 50)).await.unwrap();

    let summary: Vec<_> = done
        .attempts
        .iter()
        .map(|a| (a.number, a.worker_id.as_deref(), a.started_at, a.finished_at, a.outcome, a.executor))
        .collect();
    let thread = ExecutorKind::Thread;
    assert_eq!(
        summary,
        [
            (1, Some("w1"), Some(Timestamp(2_000)), Timestamp(2_400), AttemptOutcome::Failed, thread),
            (2, Some("w2"), Some(Timestamp(3_200)), Timestamp(expired_at), AttemptOutcome::Failed, thread),
            (3, Some("w3"), Some(Timestamp(expired_at)), Timestamp(expired_at + 50), AttemptOutcome::Completed, thread),
        ]
    );
    assert_eq!(done.attempts[0].error, Some(failure("boom")));
    assert_eq!(done.attempts[1].error.as_ref().map(|e| e.kind.as_str()), Some("lease_expired"));
    assert_eq!(done.attempts[2].error, None);
    assert_eq!(get(store, first.id).await, done, "as stored");

    // A cancel while it executes ends the attempt as cancelled.
    let run = running(store, new_run("u", json!({})), "w1", 2_000).await;
    let cancelled = store.cancel(run.id, Timestamp(2_300)).await.unwrap();
    let ended: Vec<_> = cancelled.attempts.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(ended, [(1, AttemptOutcome::Cancelled)]);
    assert_eq!(get(store, run.id).await.attempts, cancelled.attempts);
}

pub(super) async fn release_gives_the_run_back(store: Arc<dyn Store>) {
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

pub(super) async fn cancel_pending_and_running(store: Arc<dyn Store>) {
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
    assert_eq!(store.heartbeat("w1".to_owned(), vec![(run.id, 1).into()], Timestamp(9_000)).await.unwrap(), [run.id]);

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

pub(super) async fn delete_needs_force_for_active_runs(store: Arc<dyn Store>) {
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

pub(super) async fn prune_keeps_active_runs(store: Arc<dyn Store>) {
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
