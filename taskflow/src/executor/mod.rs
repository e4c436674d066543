//! Executors: where a run's code executes. This issue brings the
//! [`ThreadExecutor`]; the process and Docker executors speak the `__run`
//! protocol of [`crate::protocol`].

mod thread;

pub use thread::{ThreadExecutor, ThreadExecutorConfig};
