//! The worker protocol of `<binary> __run <title>`: the payload as JSON on
//! standard input (or, for a worker started ahead of its run, an
//! [`Envelope`] around it), exactly one [`ResultFrame`] as one JSON line on
//! standard output, log lines on standard error. The process and Docker
//! executors speak it.
//!
//! Version 1. Frames are serde enums so a later version can add variants;
//! the `ok` / `error` shapes never change.
//!
//! The parent's side lives here too, so both ends of the protocol are read
//! in one file: [`decode_frame`] turns standard output back into a run's
//! outcome, [`parse_log_line`] turns a line of standard error back into a
//! log line or progress.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ExecutorError;
use crate::error::{PayloadError, PayloadIssue, TaskError};
use crate::log::Level;
use crate::task::context::TaskContext;

/// The protocol version this binary speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Set (to `1`) in a worker's environment when its standard input carries
/// an [`Envelope`] rather than the bare payload: a container started ahead
/// of its run (the Docker executor's warm pool) learns the run from it.
pub const ENVELOPE_ENV: &str = "TASKFLOW_ENVELOPE";

/// A run as a worker started ahead receives it on standard input (since
/// version 1; only with [`ENVELOPE_ENV`] set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The run's id (otherwise `TASKFLOW_RUN_ID`).
    pub run_id: String,
    /// The attempt, from 1 (otherwise `TASKFLOW_ATTEMPT`).
    pub attempt: u32,
    /// The payload.
    pub payload: Value,
}

/// The line a worker given an [`Envelope`] writes on standard error after
/// its result frame: all its output has been written, so the parent need
/// not wait for the process (or its container) to end to have it all.
pub const END_LINE: &str = "[taskflow] end of output";

/// The one frame `__run` writes on standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultFrame {
    /// The run's result (since version 1).
    Ok(Value),
    /// Why the run failed (since version 1).
    Error(ErrorFrame),
}

/// A failure on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// [`TaskError::kind`]: `payload`, `failed`, `panicked`, …
    pub kind: String,
    /// The error's message.
    pub message: String,
    /// The payload's issues, for `kind = "payload"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<PayloadIssue>,
}

impl From<&TaskError> for ErrorFrame {
    fn from(error: &TaskError) -> Self {
        let issues = match error {
            TaskError::Payload(payload) => payload.issues.clone(),
            _ => Vec::new(),
        };
        ErrorFrame { kind: error.kind().to_owned(), message: error.to_string(), issues }
    }
}

impl From<Result<Value, TaskError>> for ResultFrame {
    fn from(result: Result<Value, TaskError>) -> Self {
        match result {
            Ok(value) => ResultFrame::Ok(value),
            Err(error) => ResultFrame::Error(ErrorFrame::from(&error)),
        }
    }
}

impl ErrorFrame {
    /// The error the frame describes, as the worker had it: a failure of the
    /// task keeps its kind, so retries and the UI treat a run executed in a
    /// child like one executed on a thread.
    pub fn into_task_error(self) -> TaskError {
        let ErrorFrame { kind, message, issues } = self;
        match kind.as_str() {
            "payload" if !issues.is_empty() => TaskError::Payload(PayloadError { issues }),
            "panicked" => TaskError::Panicked {
                message: message.strip_prefix("the task panicked: ").map(str::to_owned).unwrap_or(message),
            },
            "output" => TaskError::Output {
                message: message
                    .strip_prefix("the task's result could not be serialized: ")
                    .map(str::to_owned)
                    .unwrap_or(message),
            },
            "unknown_task" => {
                let title = message.split('`').nth(1).unwrap_or_default().to_owned();
                TaskError::UnknownTask { title }
            }
            "cancelled" => TaskError::Cancelled,
            _ => TaskError::Failed { message },
        }
    }
}

/// What one line of a worker's standard error means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrLine {
    /// `[level] message`, as [`StderrSink`](crate::StderrSink) writes it; any
    /// other line (a task's `println!`, a panic's report) is an info line.
    Log(Level, String),
    /// `[progress] done/total`.
    Progress(u64, u64),
}

/// Reads one line of a worker's standard error (without its line break).
pub fn parse_log_line(line: &str) -> StderrLine {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((tag, message)) = rest.split_once("] ") {
            let level = match tag {
                "debug" => Some(Level::Debug),
                "info" => Some(Level::Info),
                "warn" => Some(Level::Warn),
                "error" => Some(Level::Error),
                _ => None,
            };
            if let Some(level) = level {
                return StderrLine::Log(level, message.to_owned());
            }
            if tag == "progress" {
                if let Some((done, total)) = message.split_once('/') {
                    if let (Ok(done), Ok(total)) = (done.trim().parse(), total.trim().parse()) {
                        return StderrLine::Progress(done, total);
                    }
                }
            }
        }
    }
    StderrLine::Log(Level::Info, line.to_owned())
}

/// Forwards one line of a worker's standard error to the run's context.
pub(crate) fn forward_stderr_line(ctx: &TaskContext, line: &[u8]) {
    match parse_log_line(&String::from_utf8_lossy(line)) {
        StderrLine::Log(level, message) => ctx.log(level, message),
        StderrLine::Progress(done, total) => ctx.progress(done, total),
    }
}

/// Splits a byte stream into lines, each at most `max` bytes (a longer line
/// is cut, and the rest is dropped up to its line break), so a worker that
/// writes without line breaks cannot make the parent buffer without bound.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    buffer: Vec<u8>,
    max: usize,
    /// Inside an overlong line whose first `max` bytes were already emitted.
    skipping: bool,
}

impl LineSplitter {
    /// A splitter cutting lines at `max` bytes.
    pub(crate) fn new(max: usize) -> LineSplitter {
        LineSplitter { buffer: Vec::new(), max: max.max(1), skipping: false }
    }

    /// Feeds `bytes`, calling `line` for every complete line.
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n');
            let (chunk, rest, complete) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.skipping {
                let room = self.max - self.buffer.len();
                self.buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if self.buffer.len() == self.max && !complete {
                    line(&self.buffer);
                    self.buffer.clear();
                    self.skipping = true;
                    continue;
                }
            }
            if complete {
                if !self.skipping {
                    line(&self.buffer);
                }
                self.buffer.clear();
                self.skipping = false;
            }
        }
    }

    /// Emits what is left after the stream ended.
    pub(crate) fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.buffer.is_empty() && !self.skipping {
            line(&self.buffer);
        }
        self.buffer.clear();
    }
}

/// Turns everything a worker wrote on standard output into the run's
/// outcome: exactly one frame line (surrounding whitespace allowed).
///
/// # Errors
/// [`ExecutorError::MalformedFrame`] when the output is not one valid frame
/// (empty output is the caller's business: it knows how the worker ended).
pub fn decode_frame(stdout: &[u8]) -> Result<Result<Value, TaskError>, ExecutorError> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    let excerpt = || {
        let mut excerpt: String = text.chars().take(200).collect();
        if excerpt.len() < text.len() {
            excerpt.push('…');
        }
        excerpt
    };
    if text.lines().count() > 1 {
        return Err(ExecutorError::MalformedFrame {
            reason: "more than one line on standard output".to_owned(),
            excerpt: excerpt(),
        });
    }
    match serde_json::from_str::<ResultFrame>(text) {
        Ok(ResultFrame::Ok(value)) => Ok(Ok(value)),
        Ok(ResultFrame::Error(frame)) => Ok(Err(frame.into_task_error())),
        Err(error) => Err(ExecutorError::MalformedFrame { reason: error.to_string(), excerpt: excerpt() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_become_log_lines_and_progress() {
        assert_eq!(parse_log_line("[warn] low disk"), StderrLine::Log(Level::Warn, "low disk".to_owned()));
        assert_eq!(parse_log_line("[progress] 3/10"), StderrLine::Progress(3, 10));
        assert_eq!(parse_log_line("plain output"), StderrLine::Log(Level::Info, "plain output".to_owned()));
        assert_eq!(parse_log_line("[progress] x/y"), StderrLine::Log(Level::Info, "[progress] x/y".to_owned()));
    }

    #[test]
    fn lines_are_split_and_capped() {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::new(4);
        splitter.push(b"ab\ncdefgh", |l| lines.push(l.to_vec()));
        splitter.push(b"ij\nk", |l| lines.push(l.to_vec()));
        splitter.finish(|l| lines.push(l.to_vec()));
        assert_eq!(lines, vec![b"ab".to_vec(), b"cdef".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn frames_decode_back_into_outcomes() {
        assert_eq!(decode_frame(b"{\"ok\": 5}\n").unwrap(), Ok(Value::from(5)));
        let panicked = br#"{"error": {"kind": "panicked", "message": "the task panicked: boom"}}"#;
        assert_eq!(decode_frame(panicked).unwrap(), Err(TaskError::Panicked { message: "boom".to_owned() }));
        assert!(matches!(decode_frame(b"not json"), Err(ExecutorError::MalformedFrame { .. })));
        assert!(matches!(decode_frame(b"{\"ok\": 1}\n{\"ok\": 2}\n"), Err(ExecutorError::MalformedFrame { .. })));
    }

    #[test]
    fn frames_have_the_documented_shape() {
        let ok = serde_json::to_value(ResultFrame::Ok(Value::from(5))).unwrap();
        assert_eq!(ok, serde_json::json!({"ok": 5}));
        let error = ResultFrame::from(Err(TaskError::Failed { message: "boom".into() }));
        assert_eq!(
            serde_json::to_value(error).unwrap(),
            serde_json::json!({"error": {"kind": "failed", "message": "boom"}})
        );
    }
}
