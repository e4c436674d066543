//! The executors: threads, child processes and Docker containers, and the
//! limits they hold a task to.

mod docker_executor;
mod executor;
mod hardening;
pub(crate) mod process_executor;
