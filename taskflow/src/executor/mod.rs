//! Executors: where a run's code executes. This issue brings the
//! [`ThreadExecutor`]; the process and Docker executors speak the `__run`
//! protocol of [`crate::protocol`].

mod thread;

pub use thread::{ThreadExecutor, ThreadExecutorConfig};

use crate::registry::ExecutorKind;

/// Whether runs can use an executor now, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Availability {
    /// The executor.
    pub kind: ExecutorKind,
    /// Whether runs can use it now.
    pub available: bool,
    /// What it is, or why it cannot be used.
    pub detail: String,
}

/// Each executor and whether this build can use it now.
pub async fn availability() -> Vec<Availability> {
    vec![
        Availability { kind: ExecutorKind::Thread, available: true, detail: "in this process".to_owned() },
        Availability { kind: ExecutorKind::Process, available: false, detail: "not in this version".to_owned() },
        Availability { kind: ExecutorKind::Docker, available: false, detail: "not in this version".to_owned() },
    ]
}
