//! End-to-end tests of TaskFlow, in one binary (one link, one run).

mod backends;
mod cli;
mod crash;
mod docker_executor;
mod engine;
mod executor;
mod faults;
mod invoke;
mod process_executor;
mod registry;
mod tasks;
mod tidy;
mod ui;

/// The tasks the process and Docker executor tests run, shared with the
/// worker binary `executor_app`.
#[path = "../bin/executor_tasks.rs"]
mod executor_tasks;
