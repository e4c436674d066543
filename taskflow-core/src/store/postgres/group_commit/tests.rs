//! The group commit's own cases: one batch, two servers, a run changed under a batch, rounds that fail.

use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use super::*;
use crate::run::ExecutorKind;
use crate::run::RunStatus;
use crate::store::conformance::pg::with_database;
use crate::store::{ClaimRequest, PostgresStore, Store};

/// A claim of up to `limit` runs of `t` by worker `w`, at 2 s.
fn claim_request(limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: "w".into(),
        limit,
        lease: Duration::from_secs(30),
        executors: vec![ExecutorKind::Thread],
        titles: vec!["t".into()],
        task_limits: Vec::new(),
        lingering: Vec::new(),
        now: Timestamp(2_000),
    }
}

fn new_run(payload: serde_json::Value, unique: bool) -> NewRun {
    let mut new = NewRun::new("t", payload);
    new.not_before = Some(Timestamp(1_000));
    new.unique = unique;
    new
}

/// Commands queued together (a current-thread runtime: the batcher runs
/// only once all are queued) are one batch, and each gets its own
/// answer: equal de-duplicated submits share a run, equal plain ones do
/// not; a stale or unknown report is refused without failing the rest.
#[tokio::test]
async fn one_batch_answers_each_command_alone() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let batches = &store.shared.batches;
        let (a, a_again, b, b_again, c) = tokio::join!(
            batches.submit(new_run(json!({"n": 1}), true)),
            batches.submit(new_run(json!({"n": 1}), true)),
            batches.submit(new_run(json!({"n": 2}), false)),
            batches.submit(new_run(json!({"n": 2}), false)),
            batches.submit(new_run(json!({"n": 3}), true)),
        );
        let (a, a_again, b, b_again, c) = (a.unwrap(), a_again.unwrap(), b.unwrap(), b_again.unwrap(), c.unwrap());
        assert!(a.created && !a_again.created);
        assert_eq!(a.run.id, a_again.run.id);
        assert!(b.created && b_again.created);
        assert_ne!(b.run.id, b_again.run.id);
        assert!(c.created);
        // An equal de-duplicated submit in a later batch finds the run.
        let later = batches.submit(new_run(json!({"n": 1}), true)).await.unwrap();
        assert_eq!((later.run.id, later.created), (a.run.id, false));
        assert_eq!(store.list(Default::default()).await.unwrap().total, 4);

        let claimed = store.claim(claim_request(2)).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let report = |run: &Run, attempt| Report {
            id: run.id,
            attempt,
            worker_id: "w".into(),
            outcome: Outcome::Completed(json!(run.id.to_string())),
            now: Timestamp(3_000),
            progress: None,
        };
        let unknown = RunId::new();
        let (done, stale, missing, other) = tokio::join!(
            batches.finish(report(&claimed[0], 1)),
            batches.finish(report(&claimed[1], 2)),
            batches.finish(Report { id: unknown, ..report(&claimed[0], 1) }),
            batches.finish(report(&claimed[1], 1)),
        );
        let done = done.unwrap();
        assert_eq!((done.status, done.result), (RunStatus::Completed, Some(json!(claimed[0].id.to_string()))));
        assert!(matches!(stale, Err(Error::StaleAttempt { attempt: 2, .. })), "{stale:?}");
        assert!(matches!(missing, Err(Error::NotFound(id)) if id == unknown), "{missing:?}");
        assert_eq!(other.unwrap().status, RunStatus::Completed);
        for run in &claimed {
            let stored = store.get(run.id).await.unwrap().unwrap();
            assert_eq!((stored.status, stored.finished_at), (RunStatus::Completed, Some(Timestamp(3_000))));
        }
    })
    .await;
}

/// Two servers submitting equal de-duplicated runs at once, in batches
/// of their own, make one run: the batch that loses on the unique index
/// submits again and finds the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_submits_of_two_servers_make_one_run() {
    with_database(|url| async move {
        let stores = [PostgresStore::connect(&url).await.unwrap(), PostgresStore::connect(&url).await.unwrap()];
        for round in 0..10 {
            let mut submits = JoinSet::new();
            for i in 0..16 {
                let store = stores[i % 2].clone();
                submits.spawn(async move { store.submit(new_run(json!({"round": round}), true)).await.unwrap() });
            }
            let submitted = submits.join_all().await;
            assert_eq!(submitted.iter().filter(|s| s.created).count(), 1, "round {round}: {submitted:?}");
            let ids: HashSet<RunId> = submitted.iter().map(|s| s.run.id).collect();
            assert_eq!(ids.len(), 1, "round {round}");
        }
        assert_eq!(stores[0].list(Default::default()).await.unwrap().total, 10);
    })
    .await;
}

/// A finish decided on a run that changed before the write (here:
/// cancelled) writes nothing: the write is a compare-and-set on the
/// holder, and says which runs it did write.
#[tokio::test]
async fn a_run_changed_after_its_read_is_not_overwritten() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let run = store.submit(new_run(json!({}), false)).await.unwrap().run;
        let claimed = store.claim(claim_request(1)).await.unwrap().remove(0);
        let report = Report {
            id: run.id,
            attempt: 1,
            worker_id: "w".into(),
            outcome: Outcome::Completed(json!(1)),
            now: Timestamp(3_000),
            progress: None,
        };
        let mut conn = store.pool.acquire().await.unwrap();
        let decided = decide_finishes(&mut conn, &[&report], &[0]).await.unwrap();
        assert_eq!(decided.changed.len(), 1);
        assert_eq!(decided.changed[0].run.status, RunStatus::Completed);
        store.cancel(claimed.id, Timestamp(2_500)).await.unwrap();

        let written = write_changes(&mut conn, "test", &NewRows::default(), &decided.changed).await.unwrap();
        assert!(written.is_empty(), "{written:?}");
        assert_eq!(store.get(run.id).await.unwrap().unwrap().status, RunStatus::Cancelled);
        // Through the batcher, the report is decided again and refused.
        let refused = store.finish(report).await.unwrap_err();
        assert!(matches!(refused, Error::StaleAttempt { .. }), "{refused:?}");
    })
    .await;
}

/// A batch of a plain submit and a finish whose run is cancelled between
/// the finish's read and its write (by `hook` at round 0), so the finish
/// is decided again in round 1; `fail` is what round 1's first write
/// meets. Returns the submit's and the finish's answers, and the run
/// the finish was about.
async fn batch_with_a_second_round(
    store: &PostgresStore,
    fail: DatabaseErrorKind,
) -> (Result<Submitted>, Result<Run>, Run) {
    store.submit(new_run(json!({"finished": true}), false)).await.unwrap();
    let claimed = store.claim(claim_request(1)).await.unwrap().remove(0);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let canceller = store.clone();
    let id = claimed.id;
    store.shared.batches.before_write(move |round| {
        let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let store = canceller.clone();
        Box::pin(async move {
            match (call, round) {
                (0, 0) => store.cancel(id, Timestamp(2_500)).await.map(drop),
                (1, 1) => Err(Error::Database(DatabaseError::new(fail, "injected"))),
                _ => Ok(()),
            }
        })
    });
    let report = Report {
        id,
        attempt: 1,
        worker_id: "w".into(),
        outcome: Outcome::Completed(json!(1)),
        now: Timestamp(3_000),
        progress: None,
    };
    let batches = &store.shared.batches;
    let (submitted, finished) =
        tokio::join!(batches.submit(new_run(json!({"submitted": true}), false)), batches.finish(report));
    (submitted, finished, claimed)
}

/// A later round failing (here: the connection lost) fails only the
/// finishes still open: the submit committed by round 0 is answered
/// with its run, not with an error that would make its client submit
/// it again.
#[tokio::test]
async fn a_later_round_failing_keeps_committed_submits_answered() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let (submitted, finished, _) = batch_with_a_second_round(&store, DatabaseErrorKind::Unavailable).await;
        let submitted = submitted.expect("the submit committed in round 0 is acknowledged");
        assert!(submitted.created);
        assert_eq!(store.get(submitted.run.id).await.unwrap().unwrap().status, RunStatus::Pending);
        let refused = finished.unwrap_err();
        assert_eq!(refused.database_kind(), Some(DatabaseErrorKind::Unavailable), "{refused:?}");
    })
    .await;
}

/// A deadlock in a later round retries that round only: the submit
/// round 0 wrote is not planned again (a new id) and inserted twice.
#[tokio::test]
async fn a_deadlock_in_a_later_round_does_not_insert_submits_again() {
    with_database(|url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let (submitted, finished, claimed) = batch_with_a_second_round(&store, DatabaseErrorKind::Deadlock).await;
        let submitted = submitted.unwrap();
        // Decided again after the deadlock: the run was cancelled.
        assert!(matches!(finished, Err(Error::StaleAttempt { .. })), "{finished:?}");
        let runs = store.list(Default::default()).await.unwrap();
        let ids: HashSet<RunId> = runs.items.iter().map(|run| run.id).collect();
        assert_eq!(ids, HashSet::from([claimed.id, submitted.run.id]), "{:?}", runs.items);
    })
    .await;
}
