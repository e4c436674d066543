//! What both backends store the same way: a run's row before validation
//! ([`RawRun`]), how a row becomes a [`Run`] (a row that does not make a
//! valid run is an [`Error::Database`], never a panic), log levels by name,
//! and numbers as the databases hold them.

use std::fmt;

use serde_json::Value;

use super::{DatabaseError, DatabaseErrorKind, Error, Result, StoredLogLine};
use crate::log::Level;
use crate::run::{Progress, Run, RunError, RunId, RunStatus, Timestamp};

/// A run's row as a database holds it, before validation. Each backend
/// fills it from its own row type; [`RawRun::into_run`] checks it.
pub(super) struct RawRun {
    pub(super) id: String,
    pub(super) task_title: String,
    pub(super) payload: String,
    pub(super) status: String,
    pub(super) attempt: i64,
    pub(super) max_attempts: i64,
    pub(super) executor: String,
    pub(super) priority: i64,
    pub(super) not_before: i64,
    pub(super) timeout_ms: Option<i64>,
    pub(super) retry_delay_ms: i64,
    pub(super) created_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
    pub(super) result: Option<String>,
    pub(super) error_kind: Option<String>,
    pub(super) error_message: Option<String>,
    pub(super) worker_id: Option<String>,
    pub(super) lease_until: Option<i64>,
    pub(super) idempotency_key: Option<String>,
    /// The ended attempts, a JSON array; NULL for none.
    pub(super) attempts: Option<String>,
    /// The progress stored last: both NULL or neither.
    pub(super) progress_done: Option<i64>,
    pub(super) progress_total: Option<i64>,
}

/// Reads a [`RawRun`] from the run columns of `$row` (in the order of
/// both backends' `RUN_COLUMNS`) with `$row.$get(index)?`, inside a
/// function returning the backend's own error.
macro_rules! read_raw_run {
    ($row:expr, $get:ident) => {
        $crate::store::row::RawRun {
            id: $row.$get(0)?,
            task_title: $row.$get(1)?,
            payload: $row.$get(2)?,
            status: $row.$get(3)?,
            attempt: $row.$get(4)?,
            max_attempts: $row.$get(5)?,
            executor: $row.$get(6)?,
            priority: $row.$get(7)?,
            not_before: $row.$get(8)?,
            timeout_ms: $row.$get(9)?,
            retry_delay_ms: $row.$get(10)?,
            created_at: $row.$get(11)?,
            started_at: $row.$get(12)?,
            finished_at: $row.$get(13)?,
            result: $row.$get(14)?,
            error_kind: $row.$get(15)?,
            error_message: $row.$get(16)?,
            worker_id: $row.$get(17)?,
            lease_until: $row.$get(18)?,
            idempotency_key: $row.$get(19)?,
            attempts: $row.$get(20)?,
            progress_done: $row.$get(21)?,
            progress_total: $row.$get(22)?,
        }
    };
}
pub(super) use read_raw_run;

impl RawRun {
    /// The run the row holds; a value out of range or unreadable is an
    /// [`Error::Database`] naming the run and the column.
    pub(super) fn into_run(self) -> Result<Run> {
        let raw = self;
        let id = raw.id.as_str();
        let json = |what: &str, text: &str| -> Result<Value> {
            serde_json::from_str(text).map_err(|e| corrupt(id, &format!("{what} (not valid JSON)"), e))
        };
        Ok(Run {
            id: id.parse().map_err(|e: String| corrupt(id, "id", e))?,
            payload: json("payload", &raw.payload)?,
            status: parse_status(id, &raw.status)?,
            attempt: u32::try_from(raw.attempt).map_err(|_| corrupt(id, "attempt", raw.attempt))?,
            max_attempts: u32::try_from(raw.max_attempts).map_err(|_| corrupt(id, "max_attempts", raw.max_attempts))?,
            executor: raw.executor.parse().map_err(|e: String| corrupt(id, "executor", e))?,
            priority: i32::try_from(raw.priority).map_err(|_| corrupt(id, "priority", raw.priority))?,
            not_before: Timestamp(raw.not_before),
            timeout_ms: raw
                .timeout_ms
                .map(|ms| u64::try_from(ms).map_err(|_| corrupt(id, "timeout_ms", ms)))
                .transpose()?,
            retry_delay_ms: u64::try_from(raw.retry_delay_ms)
                .map_err(|_| corrupt(id, "retry_delay_ms", raw.retry_delay_ms))?,
            created_at: Timestamp(raw.created_at),
            started_at: raw.started_at.map(Timestamp),
            finished_at: raw.finished_at.map(Timestamp),
            result: raw.result.as_deref().map(|text| json("result", text)).transpose()?,
            error: match (raw.error_kind, raw.error_message) {
                (None, None) => None,
                (kind, message) => {
                    Some(RunError { kind: kind.unwrap_or_default(), message: message.unwrap_or_default() })
                }
            },
            task_title: raw.task_title,
            worker_id: raw.worker_id,
            lease_until: raw.lease_until.map(Timestamp),
            idempotency_key: raw.idempotency_key,
            attempts: match raw.attempts.as_deref() {
                Some(text) => serde_json::from_str(text).map_err(|e| corrupt(id, "attempts (not valid JSON)", e))?,
                None => Vec::new(),
            },
            progress: match (raw.progress_done, raw.progress_total) {
                (None, None) => None,
                (Some(done), Some(total)) => Some(Progress {
                    done: u64::try_from(done).map_err(|_| corrupt(id, "progress_done", done))?,
                    total: u64::try_from(total).map_err(|_| corrupt(id, "progress_total", total))?,
                }),
                (done, total) => {
                    return Err(corrupt(id, "progress (one of done and total is NULL)", format!("{done:?}/{total:?}")));
                }
            },
        })
    }
}

/// A run's progress as its two columns: NULL for none.
pub(super) fn progress_columns(progress: Option<Progress>) -> (Option<i64>, Option<i64>) {
    match progress {
        Some(p) => (Some(to_i64(p.done)), Some(to_i64(p.total))),
        None => (None, None),
    }
}

/// The text a run's ended attempts are stored as: NULL for none (most runs
/// until they end, every run before migration 3).
pub(super) fn attempts_json(run: &Run) -> Option<String> {
    (!run.attempts.is_empty()).then(|| serde_json::to_string(&run.attempts).expect("attempts serialize"))
}

/// A stored log line of run `run_id`, from its columns.
pub(super) fn log_line(run_id: RunId, seq: i64, at: i64, level: &str, message: String) -> Result<StoredLogLine> {
    let id = run_id.to_string();
    Ok(StoredLogLine {
        run_id,
        seq: u64::try_from(seq).map_err(|_| corrupt(&id, "log sequence number", seq))?,
        at: Timestamp(at),
        level: parse_level(level).ok_or_else(|| corrupt(&id, "log level", level))?,
        message,
    })
}

/// A stored status of run `id`.
pub(super) fn parse_status(id: &str, status: &str) -> Result<RunStatus> {
    status.parse().map_err(|e: String| corrupt(id, "status", e))
}

/// The name a log level is stored as.
pub(super) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// The level stored as `name`.
pub(super) fn parse_level(name: &str) -> Option<Level> {
    [Level::Debug, Level::Info, Level::Warn, Level::Error].into_iter().find(|level| level_name(*level) == name)
}

/// Milliseconds and counts above `i64::MAX` are stored as `i64::MAX`.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored value that does not make a valid run.
pub(super) fn corrupt(id: &str, what: &str, detail: impl fmt::Display) -> Error {
    let error =
        DatabaseError::new(DatabaseErrorKind::Corrupt, format!("run {id}: the stored {what} is invalid: {detail}"));
    Error::Database(match id.parse() {
        Ok(run) => error.for_run(run),
        Err(_) => error,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::run::ExecutorKind;

    fn raw(id: &RunId) -> RawRun {
        RawRun {
            id: id.to_string(),
            task_title: "t".to_owned(),
            payload: r#"{"a":1}"#.to_owned(),
            status: "running".to_owned(),
            attempt: 2,
            max_attempts: 3,
            executor: "thread".to_owned(),
            priority: -4,
            not_before: 10,
            timeout_ms: Some(500),
            retry_delay_ms: 1_000,
            created_at: 5,
            started_at: Some(11),
            finished_at: None,
            result: None,
            error_kind: None,
            error_message: Some("half an error".to_owned()),
            worker_id: Some("w1".to_owned()),
            lease_until: Some(40),
            idempotency_key: Some("k".to_owned()),
            attempts: None,
            progress_done: Some(3),
            progress_total: Some(10),
        }
    }

    fn message(error: Error) -> String {
        match error {
            Error::Database(error) => {
                assert_eq!(error.kind(), DatabaseErrorKind::Corrupt, "{error}");
                error.to_string()
            }
            other => panic!("expected a database error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_row_makes_its_run() {
        let id = RunId::new();
        let run = raw(&id).into_run().unwrap();
        assert_eq!(run.id, id);
        assert_eq!(run.payload, json!({"a": 1}));
        assert_eq!((run.status, run.attempt, run.max_attempts), (RunStatus::Running, 2, 3));
        assert_eq!((run.executor, run.priority), (ExecutorKind::Thread, -4));
        assert_eq!((run.timeout_ms, run.retry_delay_ms), (Some(500), 1_000));
        assert_eq!(
            (run.started_at, run.finished_at, run.lease_until),
            (Some(Timestamp(11)), None, Some(Timestamp(40)))
        );
        // Half an error is still an error, its other half empty.
        assert_eq!(run.error, Some(RunError { kind: String::new(), message: "half an error".to_owned() }));
        assert_eq!((run.worker_id.as_deref(), run.idempotency_key.as_deref()), (Some("w1"), Some("k")));
    }

    #[test]
    fn invalid_values_name_the_run_and_column() {
        let id = RunId::new();
        type Spoil = fn(&mut RawRun);
        let cases: [(&str, Spoil); 10] = [
            ("id", |r| r.id = "nope".to_owned()),
            ("payload (not valid JSON)", |r| r.payload = "{not json".to_owned()),
            ("result (not valid JSON)", |r| r.result = Some("[".to_owned())),
            ("status", |r| r.status = "sleeping".to_owned()),
            ("attempt", |r| r.attempt = -1),
            ("max_attempts", |r| r.max_attempts = i64::MAX),
            ("executor", |r| r.executor = "abacus".to_owned()),
            ("priority", |r| r.priority = i64::from(i32::MAX) + 1),
            ("timeout_ms", |r| r.timeout_ms = Some(-5)),
            ("retry_delay_ms", |r| r.retry_delay_ms = -1),
        ];
        for (column, spoil) in cases {
            let mut row = raw(&id);
            spoil(&mut row);
            let shown = if column == "id" { "nope".to_owned() } else { id.to_string() };
            let message = message(row.into_run().unwrap_err());
            assert!(message.starts_with(&format!("run {shown}: the stored {column} is invalid")), "{message}");
        }
    }

    #[test]
    fn levels_round_trip_by_name() {
        for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
            assert_eq!(parse_level(level_name(level)), Some(level));
        }
        assert_eq!(level_name(Level::Warn), "warn");
        assert_eq!(parse_level("WARN"), None);
    }

    #[test]
    fn log_lines_are_checked() {
        let id = RunId::new();
        let line = log_line(id, 3, 7, "info", "hi".to_owned()).unwrap();
        assert_eq!((line.run_id, line.seq, line.at, line.level), (id, 3, Timestamp(7), Level::Info));
        assert!(message(log_line(id, -1, 7, "info", String::new()).unwrap_err()).contains("log sequence number"));
        assert!(message(log_line(id, 1, 7, "loud", String::new()).unwrap_err()).contains("log level"));
    }

    #[test]
    fn large_numbers_are_capped() {
        assert_eq!(to_i64(5), 5);
        assert_eq!(to_i64(u64::MAX), i64::MAX);
    }
}
