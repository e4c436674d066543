//! The one place where the core's values become the wire's
//! (`taskflow_proto`): runs, log lines, events and task definitions, and
//! times as RFC 3339. Both front ends print these shapes, the control plane
//! (`taskflow-web`) and the command line (`taskflow`'s `app`), so a script
//! reads the same run from either. Every match is exhaustive where the
//! core's enums are, so a new status or executor does not compile until it
//! has its wire word.

pub mod polling;

use taskflow_proto::{self as proto, Event, Function, FunctionOptions, TaskRun};

use crate::engine::RunEvent;
use crate::run::{Attempt, AttemptOutcome, Run, RunStatus};
use crate::store::StoredLogLine;
use crate::{ExecutorKind, Level, TaskDef};

/// A run's status in the wire's words.
pub fn status(status: RunStatus) -> proto::RunStatus {
    match status {
        RunStatus::Pending => proto::RunStatus::Pending,
        RunStatus::Running => proto::RunStatus::Running,
        RunStatus::Completed => proto::RunStatus::Completed,
        RunStatus::Failed => proto::RunStatus::Failed,
        RunStatus::Cancelled => proto::RunStatus::Cancelled,
    }
}

/// The core's status for the wire's.
pub fn core_status(status: proto::RunStatus) -> RunStatus {
    match status {
        proto::RunStatus::Pending => RunStatus::Pending,
        proto::RunStatus::Running => RunStatus::Running,
        proto::RunStatus::Completed => RunStatus::Completed,
        proto::RunStatus::Failed => RunStatus::Failed,
        proto::RunStatus::Cancelled => RunStatus::Cancelled,
    }
}

/// An executor kind in the wire's words.
pub fn executor(kind: ExecutorKind) -> proto::ExecutorKind {
    match kind {
        ExecutorKind::Thread => proto::ExecutorKind::Thread,
        ExecutorKind::Process => proto::ExecutorKind::Process,
        ExecutorKind::Docker => proto::ExecutorKind::Docker,
    }
}

/// An executor kind from the wire's words.
pub fn core_executor(kind: proto::ExecutorKind) -> ExecutorKind {
    match kind {
        proto::ExecutorKind::Thread => ExecutorKind::Thread,
        proto::ExecutorKind::Process => ExecutorKind::Process,
        proto::ExecutorKind::Docker => ExecutorKind::Docker,
    }
}

/// A log level in the wire's words.
pub fn level(level: Level) -> proto::Level {
    match level {
        Level::Debug => proto::Level::Debug,
        Level::Info => proto::Level::Info,
        Level::Warn => proto::Level::Warn,
        Level::Error => proto::Level::Error,
    }
}

/// A log level from the wire's words.
pub fn core_level(level: proto::Level) -> Level {
    match level {
        proto::Level::Debug => Level::Debug,
        proto::Level::Info => Level::Info,
        proto::Level::Warn => Level::Warn,
        proto::Level::Error => Level::Error,
    }
}

/// An event in wire form. Exhaustive: a new kind of `RunEvent` needs its
/// wire word here.
pub fn wire_event(event: RunEvent) -> Event {
    match event {
        RunEvent::Status(run) => Event::Status { task: Box::new(wire_run(*run)) },
        RunEvent::Log(line) => Event::Log { line: wire_line(line) },
        RunEvent::Progress { run_id, progress } => {
            Event::Progress { task_id: run_id.to_string(), done: progress.done, total: progress.total }
        }
        RunEvent::Deleted(id) => Event::Deleted { task_id: id.to_string() },
    }
}

/// A run as the wire shows it: `task_id`, RFC 3339 times, every attempt.
pub fn wire_run(run: Run) -> TaskRun {
    let mut attempts: Vec<proto::RunAttempt> = run.attempts.iter().map(wire_attempt).collect();
    if run.status == RunStatus::Running {
        attempts.push(proto::RunAttempt {
            number: run.attempt,
            outcome: proto::AttemptOutcome::Running,
            worker_id: run.worker_id.clone(),
            executor: executor(run.executor),
            started_at: run.started_at.map(|t| rfc3339(t.millis())),
            finished_at: None,
            error: None,
        });
    }
    TaskRun {
        attempts,
        task_id: run.id.to_string(),
        task_title: run.task_title,
        status: status(run.status),
        payload: run.payload,
        result: run.result,
        error: run.error.map(|e| proto::RunFailure { kind: e.kind, message: e.message }),
        attempt: run.attempt,
        max_attempts: run.max_attempts,
        executor: executor(run.executor),
        priority: run.priority,
        created_at: rfc3339(run.created_at.millis()),
        started_at: run.started_at.map(|t| rfc3339(t.millis())),
        finished_at: run.finished_at.map(|t| rfc3339(t.millis())),
        idempotency_key: run.idempotency_key,
        worker_id: run.worker_id,
        progress: run.progress.map(|p| proto::RunProgress { done: p.done, total: p.total }),
    }
}

fn wire_attempt(attempt: &Attempt) -> proto::RunAttempt {
    proto::RunAttempt {
        number: attempt.number,
        outcome: match attempt.outcome {
            AttemptOutcome::Completed => proto::AttemptOutcome::Completed,
            AttemptOutcome::Failed => proto::AttemptOutcome::Failed,
            AttemptOutcome::Cancelled => proto::AttemptOutcome::Cancelled,
        },
        worker_id: attempt.worker_id.clone(),
        executor: executor(attempt.executor),
        started_at: attempt.started_at.map(|t| rfc3339(t.millis())),
        finished_at: Some(rfc3339(attempt.finished_at.millis())),
        error: attempt.error.clone().map(|e| proto::RunFailure { kind: e.kind, message: e.message }),
    }
}

/// A stored log line as the wire shows it.
pub fn wire_line(line: StoredLogLine) -> proto::LogLine {
    proto::LogLine {
        task_id: line.run_id.to_string(),
        seq: line.seq,
        at: rfc3339(line.at.millis()),
        level: level(line.level),
        message: line.message,
    }
}

/// A task definition as the wire shows it.
pub fn wire_function(def: &TaskDef) -> Function {
    let options = def.options();
    let container = &options.container;
    Function {
        title: def.title().to_owned(),
        description: def.description().to_owned(),
        signature: def.signature().to_owned(),
        tags: options.tags.iter().map(|t| (*t).to_owned()).collect(),
        is_async: def.is_async(),
        options: FunctionOptions {
            timeout_ms: options.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            retries: options.retries,
            retry_delay_ms: u64::try_from(options.retry_delay.as_millis()).unwrap_or(u64::MAX),
            concurrency: options.concurrency,
            executor: executor(options.executor),
            tags: options.tags.iter().map(|t| (*t).to_owned()).collect(),
            queue: options.queue.to_owned(),
            image: container.image.map(str::to_owned),
            network: container.network,
            memory_bytes: container.memory_bytes,
            // Billionths of a CPU back to the CPUs `cpus = 1.5` gave.
            cpus: container.nano_cpus.map(|n| n as f64 / 1e9),
            pids: container.pids,
            env: container.env.iter().map(|v| (*v).to_owned()).collect(),
        },
        args_schema: def.args_schema().clone(),
        output_schema: def.output_schema().clone(),
    }
}

/// `ms` since the Unix epoch as RFC 3339, UTC, millisecond precision, as
/// the wire writes times (without a date-time dependency).
///
/// ```
/// # extern crate taskflow_core as taskflow;
/// assert_eq!(taskflow::wire::rfc3339(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(taskflow::wire::rfc3339(1_764_601_445_123), "2025-12-01T15:04:05.123Z");
/// ```
pub fn rfc3339(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (y, m, d).
/// The milliseconds [`rfc3339`] wrote (`2026-12-08T02:43:37.123Z`), or none
/// for any other text.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 || !text.is_ascii() || &text[4..5] != "-" || &text[7..8] != "-" || &text[10..11] != "T" {
        return None;
    }
    if &text[13..14] != ":" || &text[16..17] != ":" || &text[19..20] != "." || &text[23..] != "Z" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, millis) = (number(11..13)?, number(14..16)?, number(17..19)?, number(20..23)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from the civil date (the inverse of `civil_from_days`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1000) + millis)
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Resize an image, in a container
    #[crate::task(
        title = "wire.resize",
        timeout = "2m",
        retries = 2,
        retry_delay = "5s",
        concurrency = 4,
        executor = "docker",
        tags = ["image"],
        queue = "gpu",
        image = "debian:bookworm-slim",
        network = true,
        memory = "256MiB",
        cpus = 1.5,
        pids = 64,
        env = ["API_TOKEN"]
    )]
    fn resize(width: u32) -> u32 {
        width
    }

    #[test]
    fn every_option_of_a_task_reaches_the_wire() {
        let function = wire_function(crate::task_def("wire.resize").unwrap());
        assert_eq!(
            serde_json::to_value(&function.options).unwrap(),
            json!({
                "timeout_ms": 120_000, "retries": 2, "retry_delay_ms": 5000, "concurrency": 4,
                "executor": "docker", "tags": ["image"], "queue": "gpu", "image": "debian:bookworm-slim", "network": true,
                "memory_bytes": 256 * 1024 * 1024, "cpus": 1.5, "pids": 64, "env": ["API_TOKEN"],
            })
        );
        assert_eq!(function.tags, ["image"]);
        assert_eq!(resize(3), 3);
    }

    #[test]
    fn leap_days_and_ends_of_years() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn written_times_read_back() {
        for ms in [0, -1, 951_782_400_000, 1_704_067_199_999, 1_764_601_445_123, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        for text in ["", "2025-12-01T15:04:05Z", "2025-13-01T15:04:05.123Z", "2025-12-01 15:04:05.123Z"] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
