//! The decisions of the store's writes, apart from any database: how a new
//! run looks, which candidates a claim takes, and how a claim, a report, a
//! cancel and an expired lease change a [`Run`]. Each backend loads the
//! runs (locking them as it must), applies these, and saves the result in
//! the same transaction. Every status change goes through
//! [`run::transition`](crate::run::transition).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ClaimRequest, Error, NewRun, Outcome, Report, Result, illegal};
use crate::run::ExecutorKind;
use crate::run::{Attempt, AttemptOutcome, Event, Run, RunError, RunId, RunStatus, Timestamp, transition};

/// How far past its limit a claim looks when tasks with a concurrency limit
/// may have to be passed over.
const LIMITED_WINDOW: u32 = 64;

/// The run a submit creates, `pending` from `new.not_before` (or `now`).
pub(super) fn create(new: &NewRun, now: Timestamp) -> Result<Run> {
    let mut run = Run {
        id: RunId::new(),
        task_title: new.task_title.clone(),
        payload: new.payload.clone(),
        status: RunStatus::Pending,
        attempt: 1,
        // At least the one attempt it is about to get.
        max_attempts: new.max_attempts.max(1),
        executor: new.executor,
        priority: new.priority,
        not_before: new.not_before.unwrap_or(now),
        timeout_ms: new.timeout_ms,
        retry_delay_ms: new.retry_delay_ms,
        created_at: now,
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        worker_id: None,
        lease_until: None,
        idempotency_key: new.idempotency_key.clone(),
        attempts: Vec::new(),
        progress: None,
    };
    // Claimed at its submit: only a run that is due (a delayed one waits
    // in the queue like any other).
    if let Some(by) = new.claim.as_ref().filter(|_| run.not_before <= now) {
        claim(&mut run, &by.worker_id, now.plus(by.lease), now)?;
    }
    Ok(run)
}

/// Gives back the claim a submit made ([`NewRun::claim`]): the run waits in
/// the queue like any other (a concurrency limit another claimer declared
/// for its task must be counted by a claim).
pub(super) fn unclaim_submit(run: &mut Run) -> Result<()> {
    run.status = transition(run.status, Event::Release).map_err(illegal(run.id))?;
    run.worker_id = None;
    run.lease_until = None;
    run.started_at = None;
    Ok(())
}

/// The executors of a claim, each once, in the order given.
pub(super) fn distinct(executors: &[ExecutorKind]) -> Vec<ExecutorKind> {
    let mut distinct: Vec<ExecutorKind> = Vec::with_capacity(executors.len());
    for executor in executors {
        if !distinct.contains(executor) {
            distinct.push(*executor);
        }
    }
    distinct
}

/// How many candidates a claim of `limit` selects: a few more when tasks
/// with a concurrency limit (`room`) may have to be passed over.
pub(super) fn window(limit: u32, room: &BTreeMap<&str, u32>) -> u32 {
    if room.is_empty() { limit } else { limit.saturating_add(LIMITED_WINDOW) }
}

/// The tasks with no room left under their concurrency limit.
pub(super) fn full<'a>(room: &BTreeMap<&'a str, u32>) -> Vec<&'a str> {
    room.iter().filter(|(_, left)| **left == 0).map(|(title, _)| *title).collect()
}

/// When the concurrency limits a claim at `now` declares stop binding other
/// claimers: [`LIMIT_DECLARATION_LEASES`](super::LIMIT_DECLARATION_LEASES)
/// leases on.
pub(super) fn declarations_expire(now: Timestamp, lease: Duration) -> Timestamp {
    now.plus(lease.saturating_mul(super::LIMIT_DECLARATION_LEASES))
}

/// The concurrency limit a claim honours for each task it may take: the
/// smallest of its own (`request.task_limits`) and the live ones other
/// claimers declared (`others`, the smallest per task).
pub(super) fn limits<'a>(request: &'a ClaimRequest, others: &BTreeMap<String, u32>) -> BTreeMap<&'a str, u32> {
    let mut limits = BTreeMap::new();
    for title in &request.titles {
        let own = request.task_limits.iter().filter(|(t, _)| t == title).map(|(_, limit)| *limit);
        if let Some(limit) = own.chain(others.get(title).copied()).min() {
            limits.insert(title.as_str(), limit);
        }
    }
    limits
}

/// Room left under each limit: the limit less the task's runs running in
/// the store (`running`) and the claimer's own attempts that still execute
/// although their runs no longer count as running (`request.lingering`).
pub(super) fn room<'a>(
    limits: BTreeMap<&'a str, u32>,
    running: &BTreeMap<String, i64>,
    request: &ClaimRequest,
) -> BTreeMap<&'a str, u32> {
    limits
        .into_iter()
        .map(|(title, limit)| {
            let running = u32::try_from(running.get(title).copied().unwrap_or(0)).unwrap_or(u32::MAX);
            let lingering: u32 = request.lingering.iter().filter(|(t, _)| t == title).map(|(_, n)| *n).sum();
            (title, limit.saturating_sub(running.saturating_add(lingering)))
        })
        .collect()
}

/// Takes up to `limit` of `candidates` (in their order), passing over runs
/// of tasks without `room` left and counting the room the others use.
/// Candidates after the last one taken are not looked at.
pub(super) fn pick(
    candidates: impl IntoIterator<Item = Result<Run>>,
    limit: u32,
    room: &mut BTreeMap<&str, u32>,
) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for candidate in candidates {
        if runs.len() >= limit as usize {
            break;
        }
        let run = candidate?;
        if let Some(left) = room.get_mut(run.task_title.as_str()) {
            if *left == 0 {
                continue;
            }
            *left -= 1;
        }
        runs.push(run);
    }
    Ok(runs)
}

/// A pending run claimed by `worker_id`: running from `now`, leased until
/// `lease_until`.
pub(super) fn claim(run: &mut Run, worker_id: &str, lease_until: Timestamp, now: Timestamp) -> Result<()> {
    run.status = transition(run.status, Event::Claim).map_err(illegal(run.id))?;
    run.worker_id = Some(worker_id.to_owned());
    run.lease_until = Some(lease_until);
    run.started_at = Some(now);
    // A new attempt starts from nothing done.
    run.progress = None;
    Ok(())
}

/// Applies a worker's report to its run: refused with
/// [`Error::StaleAttempt`] (the run unchanged) unless the run is running
/// that attempt for that worker; then completed, failed, re-queued for a
/// retry (while attempts are left) or released.
pub(super) fn finish(run: &mut Run, report: Report) -> Result<()> {
    let Report { id, attempt, worker_id, outcome, now, progress } = report;
    let holds = run.status == RunStatus::Running
        && run.attempt == attempt
        && run.worker_id.as_deref() == Some(worker_id.as_str());
    if !holds {
        return Err(Error::StaleAttempt { id, attempt, worker_id });
    }
    if progress.is_some() {
        run.progress = progress;
    }
    let ended = |run: &mut Run, outcome: AttemptOutcome| end_attempt(run, outcome, now);
    match outcome {
        Outcome::Completed(value) => {
            ended(run, AttemptOutcome::Completed);
            run.status = transition(run.status, Event::Complete).map_err(illegal(id))?;
            run.result = Some(value);
            run.finished_at = Some(now);
        }
        Outcome::Failed { error, retry_at } => {
            let retry_at = retry_at.filter(|_| run.attempt < run.max_attempts);
            run.status = transition(run.status, Event::Fail { retry: retry_at.is_some() }).map_err(illegal(id))?;
            run.error = Some(error);
            ended(run, AttemptOutcome::Failed);
            match retry_at {
                Some(at) => {
                    run.attempt += 1;
                    run.not_before = at;
                }
                None => run.finished_at = Some(now),
            }
        }
        Outcome::Released => {
            run.status = transition(run.status, Event::Release).map_err(illegal(id))?;
        }
    }
    run.worker_id = None;
    run.lease_until = None;
    Ok(())
}

/// Records the attempt running now as ended at `now` with `outcome` (and
/// the run's error, for a failed one), before the run moves on.
fn end_attempt(run: &mut Run, outcome: AttemptOutcome, now: Timestamp) {
    let error = if outcome == AttemptOutcome::Failed { run.error.clone() } else { None };
    run.attempts.push(Attempt {
        number: run.attempt,
        worker_id: run.worker_id.clone(),
        executor: run.executor,
        started_at: run.started_at,
        finished_at: now,
        outcome,
        error,
    });
}

/// Cancels a pending or running run at `now`.
pub(super) fn cancel(run: &mut Run, now: Timestamp) -> Result<()> {
    let executing = run.status == RunStatus::Running;
    run.status = transition(run.status, Event::Cancel).map_err(illegal(run.id))?;
    if executing {
        end_attempt(run, AttemptOutcome::Cancelled, now);
    }
    run.finished_at = Some(now);
    run.worker_id = None;
    run.lease_until = None;
    run.error = Some(RunError { kind: "cancelled".to_owned(), message: "cancelled on request".to_owned() });
    Ok(())
}

/// A running run whose lease ran out at `now`: re-queued at once with the
/// next attempt while attempts are left, failed otherwise. The attempt
/// counts either way.
pub(super) fn expire(run: &mut Run, now: Timestamp) -> Result<()> {
    let worker = run.worker_id.as_deref().unwrap_or_default();
    let message = format!("worker `{worker}` stopped renewing its lease");
    take_back(run, RunError { kind: "lease_expired".to_owned(), message }, now)
}

/// A running run of a worker an admin revoked at `now`: taken back as if its
/// lease had run out (the attempt counts; re-queued while attempts are left).
pub(super) fn revoke(run: &mut Run, now: Timestamp) -> Result<()> {
    let worker = run.worker_id.as_deref().unwrap_or_default();
    let message = format!("worker `{worker}` was revoked while it held the run");
    take_back(run, RunError { kind: "worker_revoked".to_owned(), message }, now)
}

/// Ends the running attempt of `run` as failed with `error`, for a reason
/// outside the attempt: re-queued at once while attempts are left.
fn take_back(run: &mut Run, error: RunError, now: Timestamp) -> Result<()> {
    let retry = run.attempt < run.max_attempts;
    run.status = transition(run.status, Event::LeaseExpired { retry }).map_err(illegal(run.id))?;
    run.error = Some(error);
    end_attempt(run, AttemptOutcome::Failed, now);
    run.worker_id = None;
    run.lease_until = None;
    if retry {
        run.attempt += 1;
        run.not_before = now;
    } else {
        run.finished_at = Some(now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn pending(title: &str, max_attempts: u32) -> Run {
        let mut new = NewRun::new(title, json!({"n": 1}));
        new.max_attempts = max_attempts;
        create(&new, Timestamp(100)).unwrap()
    }

    fn running(max_attempts: u32) -> Run {
        let mut run = pending("t", max_attempts);
        claim(&mut run, "w1", Timestamp(30_000), Timestamp(1_000)).unwrap();
        run
    }

    fn report(run: &Run, outcome: Outcome) -> Report {
        Report {
            id: run.id,
            attempt: run.attempt,
            worker_id: "w1".to_owned(),
            outcome,
            now: Timestamp(2_000),
            progress: None,
        }
    }

    fn failure() -> RunError {
        RunError { kind: "failed".to_owned(), message: "boom".to_owned() }
    }

    #[test]
    fn create_fills_the_defaults() {
        let mut new = NewRun::new("t", json!({}));
        new.max_attempts = 0;
        new.idempotency_key = Some("k".to_owned());
        let run = create(&new, Timestamp(7)).unwrap();
        assert_eq!((run.status, run.attempt, run.max_attempts), (RunStatus::Pending, 1, 1));
        assert_eq!((run.not_before, run.created_at), (Timestamp(7), Timestamp(7)));
        assert_eq!(run.idempotency_key.as_deref(), Some("k"));
        new.not_before = Some(Timestamp(50));
        assert_eq!(create(&new, Timestamp(7)).unwrap().not_before, Timestamp(50));
    }

    #[test]
    fn a_claim_at_submit_creates_a_running_run_unless_it_is_delayed() {
        let mut new = NewRun::new("t", json!({}));
        new.claim = Some(super::super::SubmitClaim { worker_id: "w1".to_owned(), lease: Duration::from_secs(30) });
        let run = create(&new, Timestamp(7)).unwrap();
        assert_eq!((run.status, run.attempt), (RunStatus::Running, 1));
        assert_eq!(
            (run.worker_id.as_deref(), run.lease_until, run.started_at),
            (Some("w1"), Some(Timestamp(30_007)), Some(Timestamp(7)))
        );
        new.not_before = Some(Timestamp(50));
        let delayed = create(&new, Timestamp(7)).unwrap();
        assert_eq!((delayed.status, delayed.worker_id, delayed.started_at), (RunStatus::Pending, None, None));
    }

    #[test]
    fn claims_pick_within_the_limits() {
        use ExecutorKind::{Docker, Thread};
        assert_eq!(distinct(&[Thread, Docker, Thread]), [Thread, Docker]);

        let mut room = BTreeMap::from([("limited", 1), ("full", 0)]);
        assert_eq!(full(&room), ["full"]);
        assert_eq!(window(5, &room), 5 + LIMITED_WINDOW);
        assert_eq!(window(u32::MAX, &room), u32::MAX);
        assert_eq!(window(5, &BTreeMap::new()), 5);

        let candidates = ["limited", "full", "limited", "free", "free"].map(|title| pending(title, 1));
        let picked = pick(candidates.iter().cloned().map(Ok), 2, &mut room).unwrap();
        assert_eq!(picked, [candidates[0].clone(), candidates[3].clone()]);
        assert_eq!(room["limited"], 0);

        // What comes after the last run taken is not looked at.
        let spoiled = [Ok(pending("free", 1)), Err(Error::Closed)];
        assert_eq!(pick(spoiled, 1, &mut BTreeMap::new()).unwrap().len(), 1);
        let spoiled = [Ok(pending("free", 1)), Err(Error::Closed)];
        assert!(matches!(pick(spoiled, 2, &mut BTreeMap::new()), Err(Error::Closed)));
    }

    #[test]
    fn claim_leases_a_pending_run() {
        let run = running(1);
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!((run.worker_id.as_deref(), run.lease_until), (Some("w1"), Some(Timestamp(30_000))));
        assert_eq!(run.started_at, Some(Timestamp(1_000)));
        let mut again = run.clone();
        let error = claim(&mut again, "w2", Timestamp(1), Timestamp(1)).unwrap_err();
        assert!(matches!(error, Error::IllegalTransition { id, .. } if id == run.id));
    }

    #[test]
    fn finish_is_fenced_by_attempt_and_worker() {
        let run = running(3);
        let stale = [
            Report { attempt: 2, ..report(&run, Outcome::Released) },
            Report { worker_id: "w2".to_owned(), ..report(&run, Outcome::Released) },
        ];
        for stale in stale {
            let mut copy = run.clone();
            assert!(matches!(finish(&mut copy, stale), Err(Error::StaleAttempt { .. })));
            assert_eq!(copy, run, "a stale report changes nothing");
        }
        let mut cancelled = run.clone();
        cancel(&mut cancelled, Timestamp(1_500)).unwrap();
        let late = report(&run, Outcome::Completed(json!(1)));
        assert!(matches!(finish(&mut cancelled, late), Err(Error::StaleAttempt { .. })));
    }

    #[test]
    fn finish_completes_retries_fails_and_releases() {
        let mut done = running(1);
        let sent = report(&done, Outcome::Completed(json!(42)));
        finish(&mut done, sent).unwrap();
        assert_eq!((done.status, done.result.clone()), (RunStatus::Completed, Some(json!(42))));
        assert_eq!((done.finished_at, done.worker_id.clone(), done.lease_until), (Some(Timestamp(2_000)), None, None));

        let mut retried = running(2);
        let outcome = Outcome::Failed { error: failure(), retry_at: Some(Timestamp(9_000)) };
        let sent = report(&retried, outcome);
        finish(&mut retried, sent).unwrap();
        assert_eq!((retried.status, retried.attempt, retried.not_before), (RunStatus::Pending, 2, Timestamp(9_000)));
        assert_eq!((retried.error.clone(), retried.finished_at), (Some(failure()), None));

        // A retry asked for without attempts left fails the run.
        let mut failed = running(1);
        let outcome = Outcome::Failed { error: failure(), retry_at: Some(Timestamp(9_000)) };
        let sent = report(&failed, outcome);
        finish(&mut failed, sent).unwrap();
        assert_eq!((failed.status, failed.attempt), (RunStatus::Failed, 1));
        assert_eq!(failed.finished_at, Some(Timestamp(2_000)));

        let mut released = running(1);
        let sent = report(&released, Outcome::Released);
        finish(&mut released, sent).unwrap();
        assert_eq!((released.status, released.attempt, released.finished_at), (RunStatus::Pending, 1, None));
        assert_eq!((released.worker_id, released.lease_until), (None, None));
    }

    #[test]
    fn cancel_ends_active_runs_only() {
        for mut run in [pending("t", 1), running(1)] {
            cancel(&mut run, Timestamp(5)).unwrap();
            assert_eq!((run.status, run.finished_at), (RunStatus::Cancelled, Some(Timestamp(5))));
            assert_eq!((run.worker_id.clone(), run.lease_until), (None, None));
            assert_eq!(run.error.clone().unwrap().kind, "cancelled");
            let before = run.clone();
            assert!(matches!(cancel(&mut run, Timestamp(6)), Err(Error::IllegalTransition { .. })));
            assert_eq!(run.status, before.status);
        }
    }

    #[test]
    fn an_expired_lease_costs_an_attempt() {
        let mut requeued = running(2);
        expire(&mut requeued, Timestamp(50_000)).unwrap();
        assert_eq!((requeued.status, requeued.attempt), (RunStatus::Pending, 2));
        assert_eq!((requeued.not_before, requeued.finished_at), (Timestamp(50_000), None));
        assert_eq!((requeued.worker_id.clone(), requeued.lease_until), (None, None));
        let error = requeued.error.unwrap();
        assert_eq!(
            (error.kind.as_str(), error.message.as_str()),
            ("lease_expired", "worker `w1` stopped renewing its lease")
        );

        let mut failed = running(1);
        expire(&mut failed, Timestamp(50_000)).unwrap();
        assert_eq!(
            (failed.status, failed.attempt, failed.finished_at),
            (RunStatus::Failed, 1, Some(Timestamp(50_000)))
        );

        let mut not_running = pending("t", 2);
        assert!(matches!(expire(&mut not_running, Timestamp(1)), Err(Error::IllegalTransition { .. })));
    }
}
