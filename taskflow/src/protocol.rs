//! The worker protocol of `<binary> __run <title>`: the payload as JSON on
//! standard input, exactly one [`ResultFrame`] as one JSON line on standard
//! output, log lines on standard error. The process and Docker executors
//! speak it.
//!
//! Version 1. Frames are serde enums so a later version can add variants;
//! the `ok` / `error` shapes never change.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{PayloadIssue, TaskError};

/// The protocol version this binary speaks.
pub const PROTOCOL_VERSION: u32 = 1;

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

#[cfg(test)]
mod tests {
    use super::*;

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
