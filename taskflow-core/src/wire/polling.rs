//! The worker protocol's conversions, both ways: the server makes a
//! [`LeasedRun`] of each run a remote worker claims and reads its reports;
//! the worker reads the runs back and makes the reports. A value from the
//! other side that does not convert (an id that is not one) is an error
//! naming it, never a panic.

use taskflow_proto::polling::{AttemptReport, LeaseRenewal, LeasedRun, ReportedOutcome, WorkerLogLine};
use taskflow_proto::{self as proto, RunProgress};

use super::{core_executor, core_level, core_status, executor, level, parse_rfc3339};
use crate::Level;
use crate::run::{Progress, Run, RunError, RunId, RunStatus, Timestamp};
use crate::store::{Outcome, Renewal, Report};

/// A claimed run as the worker gets it.
pub fn leased_run(run: &Run) -> LeasedRun {
    LeasedRun {
        task_id: run.id.to_string(),
        task_title: run.task_title.clone(),
        payload: run.payload.clone(),
        attempt: run.attempt,
        max_attempts: run.max_attempts,
        executor: executor(run.executor),
        priority: run.priority,
        timeout_ms: run.timeout_ms,
        retry_delay_ms: run.retry_delay_ms,
        created_at_ms: run.created_at.millis(),
        lease_until_ms: run.lease_until.map_or(0, Timestamp::millis),
    }
}

/// The run a worker holds, from the server's [`LeasedRun`].
pub fn run_of_lease(lease: LeasedRun, worker_id: &str) -> Result<Run, String> {
    Ok(Run {
        id: run_id(&lease.task_id)?,
        task_title: lease.task_title,
        payload: lease.payload,
        status: RunStatus::Running,
        attempt: lease.attempt,
        max_attempts: lease.max_attempts,
        executor: core_executor(lease.executor),
        priority: lease.priority,
        not_before: Timestamp(lease.created_at_ms),
        timeout_ms: lease.timeout_ms,
        retry_delay_ms: lease.retry_delay_ms,
        created_at: Timestamp(lease.created_at_ms),
        started_at: Some(Timestamp::now()),
        finished_at: None,
        result: None,
        error: None,
        worker_id: Some(worker_id.to_owned()),
        lease_until: Some(Timestamp(lease.lease_until_ms)),
        idempotency_key: None,
        attempts: Vec::new(),
        progress: None,
    })
}

/// A run from the wire (as an update's reply carries it), as far as the
/// wire tells: a remote worker's view of the run it reported.
pub fn run_of_wire(run: proto::TaskRun) -> Result<Run, String> {
    let time = |text: &str| parse_rfc3339(text).map(Timestamp).ok_or_else(|| format!("`{text}` is not a time"));
    let optional = |text: &Option<String>| text.as_deref().map(time).transpose();
    let created_at = time(&run.created_at)?;
    Ok(Run {
        id: run_id(&run.task_id)?,
        task_title: run.task_title,
        payload: run.payload,
        status: core_status(run.status),
        attempt: run.attempt,
        max_attempts: run.max_attempts,
        executor: core_executor(run.executor),
        priority: run.priority,
        not_before: created_at,
        timeout_ms: None,
        retry_delay_ms: 0,
        created_at,
        started_at: optional(&run.started_at)?,
        finished_at: optional(&run.finished_at)?,
        result: run.result,
        error: run.error.map(|e| RunError { kind: e.kind, message: e.message }),
        worker_id: run.worker_id,
        lease_until: None,
        idempotency_key: run.idempotency_key,
        attempts: Vec::new(),
        progress: run.progress.map(core_progress),
    })
}

/// A run id from the wire, or what is wrong with it.
pub fn run_id(text: &str) -> Result<RunId, String> {
    text.parse().map_err(|_| format!("`{text}` is not a run id"))
}

/// A renewal on the wire.
pub fn wire_renewal(renewal: &Renewal) -> LeaseRenewal {
    LeaseRenewal {
        task_id: renewal.id.to_string(),
        attempt: renewal.attempt,
        progress: renewal.progress.map(wire_progress),
    }
}

/// A renewal from the wire.
pub fn core_renewal(renewal: &LeaseRenewal) -> Result<Renewal, String> {
    Ok(Renewal {
        id: run_id(&renewal.task_id)?,
        attempt: renewal.attempt,
        progress: renewal.progress.map(core_progress),
    })
}

/// Progress on the wire.
pub fn wire_progress(progress: Progress) -> RunProgress {
    RunProgress { done: progress.done, total: progress.total }
}

/// Progress from the wire.
pub fn core_progress(progress: RunProgress) -> Progress {
    Progress { done: progress.done, total: progress.total }
}

/// A report on the wire (its worker is the sender's).
pub fn wire_report(report: &Report) -> AttemptReport {
    let outcome = match &report.outcome {
        Outcome::Completed(result) => ReportedOutcome::Completed { result: result.clone() },
        Outcome::Failed { error, retry_at } => ReportedOutcome::Failed {
            kind: error.kind.clone(),
            message: error.message.clone(),
            retry_at_ms: retry_at.map(Timestamp::millis),
        },
        Outcome::Released => ReportedOutcome::Released,
    };
    AttemptReport {
        task_id: report.id.to_string(),
        attempt: report.attempt,
        outcome,
        progress: report.progress.map(wire_progress),
    }
}

/// A worker's report, from the wire, as `worker_id`'s at `now`.
pub fn core_report(report: AttemptReport, worker_id: &str, now: Timestamp) -> Result<Report, String> {
    let outcome = match report.outcome {
        ReportedOutcome::Completed { result } => Outcome::Completed(result),
        ReportedOutcome::Failed { kind, message, retry_at_ms } => {
            Outcome::Failed { error: RunError { kind, message }, retry_at: retry_at_ms.map(Timestamp) }
        }
        ReportedOutcome::Released => Outcome::Released,
    };
    Ok(Report {
        id: run_id(&report.task_id)?,
        attempt: report.attempt,
        worker_id: worker_id.to_owned(),
        outcome,
        now,
        progress: report.progress.map(core_progress),
    })
}

/// A log line on the wire.
pub fn wire_log_line(id: RunId, at: Timestamp, line_level: Level, message: String) -> WorkerLogLine {
    WorkerLogLine { task_id: id.to_string(), at_ms: at.millis(), level: level(line_level), message }
}

/// A log line from the wire.
pub fn core_log_line(line: WorkerLogLine) -> Result<(RunId, Timestamp, Level, String), String> {
    Ok((run_id(&line.task_id)?, Timestamp(line.at_ms), core_level(line.level), line.message))
}
