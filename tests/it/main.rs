//! End-to-end tests of TaskFlow, in one binary (one link, one run), grouped
//! by what they test: `library` (the Rust API), `web` (the control plane),
//! `executors`, `reliability` (faults and soaks), with what they share in
//! `support`; `tidy` checks the house rules over the sources and `ui` the
//! macro's compile errors.

mod executors;
mod library;
mod reliability;
mod support;
mod tidy;
mod ui;
mod web;

/// The tasks the process and Docker executor tests run, shared with the
/// worker binary `executor_app`.
#[path = "../bin/executor_tasks.rs"]
mod executor_tasks;
