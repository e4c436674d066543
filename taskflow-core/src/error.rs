//! The errors a run can end with: why a run failed ([`TaskError`]), what is
//! wrong with a payload ([`PayloadError`]), and why an executor produced no
//! result ([`ExecutorError`]). A leaf: every layer above may name them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::run::ExecutorKind;

/// A run's outcome: its result as JSON, or why there is none.
pub type TaskResult = Result<Value, TaskError>;

/// Why a run did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No task with this title is linked into the binary.
    #[error("unknown task `{title}`; `list` shows the tasks of this binary")]
    UnknownTask {
        /// The title asked for.
        title: String,
    },
    /// The payload does not match the task's arguments.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The task returned `Err`; the message is its `Display` text.
    #[error("{message}")]
    Failed {
        /// The error's text.
        message: String,
    },
    /// The task panicked.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// The task's return value could not be turned into JSON.
    #[error("the task's result could not be serialized: {message}")]
    Output {
        /// The serializer's message.
        message: String,
    },
    /// The run took longer than its timeout.
    #[error("timed out after {}", format_duration(*.after))]
    TimedOut {
        /// The timeout that passed.
        after: Duration,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The worker could not renew the run's lease in time (the store
    /// unreachable or too slow) and stopped the attempt, since another
    /// worker may take the run once the lease runs out.
    #[error(
        "stopped: this worker could not renew the run's {} lease in time (the store was unreachable or too slow)",
        format_duration(*.lease)
    )]
    LeaseExpired {
        /// The lease that could not be renewed.
        lease: Duration,
    },
    /// The executor could not run the task, or the worker ended without a
    /// result (a crash, a memory limit, Docker unreachable, …). The
    /// variant's own [`kind`](ExecutorError::kind) is this error's
    /// kind.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
}

impl TaskError {
    /// A stable, machine-readable name of the variant, used on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::UnknownTask { .. } => "unknown_task",
            TaskError::Payload(_) => "payload",
            TaskError::Failed { .. } => "failed",
            TaskError::Panicked { .. } => "panicked",
            TaskError::Output { .. } => "output",
            TaskError::TimedOut { .. } => "timeout",
            TaskError::Cancelled => "cancelled",
            TaskError::LeaseExpired { .. } => "lease_expired",
            TaskError::Executor(error) => error.kind(),
        }
    }
}

/// One thing wrong with a payload, at a path such as `payload.items[2].name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadIssue {
    /// Where in the payload: `payload`, `payload.b`, `payload.items[0]`.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for PayloadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a payload, each issue naming its path, e.g.
/// `payload.b: expected integer, found string "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PayloadError {
    /// The issues, in payload order; never empty.
    pub issues: Vec<PayloadIssue>,
}

impl PayloadError {
    /// A payload error with a single issue.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> PayloadError {
        PayloadError { issues: vec![PayloadIssue { path: path.into(), message: message.into() }] }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// `Result` with the executors' [`ExecutorError`].
pub type ExecutorResult<T, E = ExecutorError> = std::result::Result<T, E>;

/// Why an executor could not produce a run's result, each saying what
/// happened and, where there is something to do, what to do.
///
/// Carried by [`TaskError::Executor`] (and named `taskflow::executor::Error`); its
/// [`kind`](ExecutorError::kind) is the run's error kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The worker program could not be started.
    #[error("could not start the worker `{program}`: {message}; check the executor's `program` (default: this binary)")]
    Spawn {
        /// The program that was started.
        program: String,
        /// The operating system's reason.
        message: String,
    },
    /// The worker ended without writing a result: it crashed (`panic =
    /// "abort"`, a segfault), was killed by a signal, or exited early.
    #[error("the worker {how} without a result{}", last_output.as_ref().map(|l| format!("; its last output: {l}")).unwrap_or_default())]
    Crashed {
        /// How it ended: `exited with code 101`, `was killed by signal 9
        /// (SIGKILL)`.
        how: String,
        /// The last line it wrote on standard error, if any.
        last_output: Option<String>,
    },
    /// The worker wrote something on standard output that is not one result
    /// frame.
    #[error("the worker's result frame is not valid ({reason}): {excerpt}")]
    MalformedFrame {
        /// What is wrong with it.
        reason: String,
        /// Its beginning.
        excerpt: String,
    },
    /// The result frame is larger than the executor accepts.
    #[error(
        "the worker's result is larger than the limit of {limit} bytes; return less (store large data elsewhere and return a reference) or raise the executor's `max_result_bytes`"
    )]
    ResultTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The container was killed for using more memory than its limit.
    #[error("killed: memory limit {limit} exceeded; raise the task's `memory` option (e.g. `memory = \"1GiB\"`)")]
    OutOfMemory {
        /// The limit, as written: `256 MiB`.
        limit: String,
    },
    /// The Docker engine could not be reached.
    #[error(
        "the Docker engine is not reachable at {endpoint}: {message}; start it (`sudo systemctl start docker`), or point DOCKER_HOST at its socket (e.g. `unix:///var/run/docker.sock`), and make sure this user may use it (the `docker` group)"
    )]
    DockerUnavailable {
        /// The socket or `DOCKER_HOST` tried.
        endpoint: String,
        /// The connection error.
        message: String,
    },
    /// The Docker engine refused to build a worker image.
    #[error("building the worker image `{tag}` failed: {message}")]
    ImageBuild {
        /// The image's tag.
        tag: String,
        /// The daemon's message.
        message: String,
    },
    /// The task names a base image (`image = "…"`) this Docker engine does
    /// not have; TaskFlow never pulls.
    #[error(
        "the base image `{image}` of task `{title}` is not on this Docker engine, and TaskFlow pulls nothing: load or build it there first (`docker load`, `docker build`), or remove the task's `image` option to build from scratch"
    )]
    BaseImageMissing {
        /// The image named.
        image: String,
        /// The task.
        title: String,
    },
    /// The worker image could not be assembled from the binary.
    #[error("assembling the worker image failed: {message}")]
    Assembly {
        /// What went wrong.
        message: String,
    },
    /// A call to the Docker engine failed.
    #[error("docker: {doing} failed: {message}")]
    Docker {
        /// What was being done: `creating the container`.
        doing: String,
        /// The daemon's message.
        message: String,
    },
    /// This build lacks the executor (a cargo feature is off).
    #[error(
        "the {0} executor is not in this build; enable taskflow's `{0}` cargo feature, or submit with executor `thread` or `process`"
    )]
    NotBuilt(ExecutorKind),
}

impl ExecutorError {
    /// A stable, machine-readable name of the variant (the run's error kind).
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutorError::Spawn { .. } => "worker_spawn",
            ExecutorError::Crashed { .. } => "crashed",
            ExecutorError::MalformedFrame { .. } => "protocol",
            ExecutorError::ResultTooLarge { .. } => "result_too_large",
            ExecutorError::OutOfMemory { .. } => "out_of_memory",
            ExecutorError::DockerUnavailable { .. } => "docker_unavailable",
            ExecutorError::ImageBuild { .. } => "image_build",
            ExecutorError::BaseImageMissing { .. } => "base_image_missing",
            ExecutorError::Assembly { .. } => "image_assembly",
            ExecutorError::Docker { .. } => "docker",
            ExecutorError::NotBuilt(_) => "executor_unavailable",
        }
    }

    /// Whether another attempt may succeed: a crash or an unreachable daemon
    /// may pass, a result that is too large or a missing image will not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExecutorError::Spawn { .. }
                | ExecutorError::Crashed { .. }
                | ExecutorError::OutOfMemory { .. }
                | ExecutorError::DockerUnavailable { .. }
                | ExecutorError::Docker { .. }
        )
    }
}

/// `90s` → `1m30s`, `500ms` → `500ms`: durations as the options write them.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms % 1000 != 0 {
        return format!("{}ms", ms);
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_options() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(TaskError::TimedOut { after: Duration::from_secs(60) }.to_string(), "timed out after 1m");
    }

    #[test]
    fn payload_errors_join_their_issues() {
        let error = PayloadError {
            issues: vec![
                PayloadIssue { path: "payload.a".into(), message: "required field is missing".into() },
                PayloadIssue { path: "payload.b".into(), message: "expected integer, found string \"x\"".into() },
            ],
        };
        assert_eq!(
            error.to_string(),
            "payload.a: required field is missing; payload.b: expected integer, found string \"x\""
        );
    }
}
