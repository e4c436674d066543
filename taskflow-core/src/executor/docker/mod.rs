//! Runs each run in a fresh, hardened container of its task's own worker
//! image, on the Docker engine (feature `docker`).
//!
//! The image `taskflow-<app>/<title>:<hash>` is built on first use from the
//! app binary alone ([`contents`]): on the app's layer image
//! `taskflow-<app>:<hash>` (`FROM scratch`: the binary, its libraries, a
//! passwd, `/tmp`) or on the task's local `image`, with the entry point
//! `__run <title>`, labelled with app, task and hash.
//! It is found again by its tag (so neither a second run nor a restart
//! rebuilds it); a binary with another hash gets a new image, and the images
//! of the app's older binaries are removed.
//!
//! A container gets no network unless the task asks (`network = true`), a
//! read-only root with a small `/tmp` tmpfs, no capabilities,
//! `no-new-privileges`, user 65534, memory (swap included), CPU and pids
//! limits, and only the environment the task declares. Its standard output
//! carries the result frame, its standard error the log lines, streamed
//! into the run's log as they come. A timeout or cancel kills it; every
//! container is removed, and containers left behind by an earlier process
//! of this app (a crash) are removed when the engine starts.
//!
//! With a warm pool (`warm_containers` > 0) each Docker task keeps that
//! many containers created, attached and started ahead, their worker
//! waiting on standard input: a run takes one and writes it an envelope
//! (run id, attempt, payload; [`frame::Envelope`]) instead of creating
//! a container. Each serves one run and is removed like any other; the
//! pool is refilled behind it, and containers idle past `warm_idle` are
//! removed.

mod config;
mod warm_pool;

pub use config::DockerExecutorConfig;
pub use warm_pool::WarmPool;

#[cfg(feature = "docker")]
mod containers;
#[cfg(feature = "docker")]
mod contents;
#[cfg(feature = "docker")]
mod executor;
#[cfg(feature = "docker")]
mod images;
#[cfg(feature = "docker")]
mod leftovers;
#[cfg(feature = "docker")]
mod warm;

#[cfg(feature = "docker")]
pub use executor::DockerExecutor;
#[cfg(feature = "docker")]
pub use images::WorkerImage;
