//! End-to-end tests of TaskFlow, in one binary (one link, one run).

mod api;
mod backends;
mod browser;
mod cli;
mod crash;
mod delivery;
mod disk_full;
mod engine;
mod executor;
mod faults;
mod hardening;
mod invoke;
mod network_faults;
mod pages;
mod proxy;
mod registry;
mod server;
mod soak;
mod tasks;
mod tidy;
mod ui;
mod websockets;
