//! The library through its Rust API: the engine, the registry, typed
//! calls, attempts and concurrency limits.

mod attempts;
mod contention;
mod contract;
mod engine;
mod invoke;
mod registry;
