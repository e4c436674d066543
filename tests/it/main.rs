//! End-to-end tests of TaskFlow, in one binary (one link, one run).

mod api;
mod attempts;
mod backends;
mod browser;
mod cli;
mod contention;
mod crash;
mod delivery;
mod disk_full;
mod docker_executor;
mod engine;
mod executor;
mod faults;
mod fencing;
mod hardening;
mod invoke;
mod network_faults;
mod pages;
mod process_executor;
mod proxy;
mod registry;
mod server;
mod soak;
mod store_hooks;
mod tasks;
mod tidy;
mod ui;
mod websockets;

/// The tasks the process and Docker executor tests run, shared with the
/// worker binary `executor_app`.
#[path = "../bin/executor_tasks.rs"]
mod executor_tasks;
