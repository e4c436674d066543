//! End-to-end tests of TaskFlow, in one binary (one link, one run).

mod backends;
mod cli;
mod crash;
mod engine;
mod executor;
mod faults;
mod invoke;
mod registry;
mod tasks;
mod tidy;
mod ui;
