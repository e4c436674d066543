//! Executors: where a run's code executes. The [`ThreadExecutor`] runs it in
//! this process; the [`ProcessExecutor`] and the Docker executor (feature
//! `docker`) run the app binary as `__run <title>` and speak the protocol of
//! [`crate::executor::frame`] with it, in a child process or in a container.
//! [`availability`] says which of them can run here and why not.

mod child;
#[cfg(feature = "docker")]
mod docker;
pub mod frame;
#[cfg(feature = "docker")]
mod image;
mod process;
mod thread;
mod warm_pool;

use std::time::Duration;

use serde_json::Value;

pub use crate::error::{ExecutorError as Error, ExecutorResult as Result};
use crate::run::ExecutorKind;
use crate::task::context::TaskContext;
use crate::task::registry::{TaskDef, TaskResult};

#[cfg(feature = "docker")]
pub use docker::{DockerExecutor, DockerExecutorConfig, WorkerImage};
pub use process::{ProcessExecutor, ProcessExecutorConfig};
pub use thread::{ThreadExecutor, ThreadExecutorConfig};
pub use warm_pool::WarmPool;

/// Whether an executor can run tasks here, for health checks and executor
/// pickers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Availability {
    /// The executor.
    pub kind: ExecutorKind,
    /// Whether runs on it can execute now.
    pub available: bool,
    /// For people: what it runs on (`Docker Engine 20.10.24 (API 1.41) at
    /// unix:///var/run/docker.sock`) or why it cannot (the connection
    /// error and how to fix it).
    pub detail: String,
}

/// Which executors can run here, with their default settings (this binary,
/// `DOCKER_HOST` or the default socket): one entry per [`ExecutorKind`], in
/// the order thread, process, docker. Never fails; an unavailable executor
/// says why in its `detail`.
///
/// [`Engine::availability`](crate::engine::Engine::availability) answers the
/// same for an engine's own executor settings.
pub async fn availability() -> Vec<Availability> {
    Executors {
        thread: ThreadExecutor::default(),
        process: ProcessExecutor::new(ProcessExecutorConfig::default()),
        #[cfg(feature = "docker")]
        docker: DockerExecutor::new(DockerExecutorConfig::default()),
    }
    .availability()
    .await
}

fn thread_availability() -> Availability {
    Availability {
        kind: ExecutorKind::Thread,
        available: true,
        detail: "runs tasks on threads of this process".to_owned(),
    }
}

#[cfg(not(feature = "docker"))]
fn docker_availability() -> Availability {
    Availability {
        kind: ExecutorKind::Docker,
        available: false,
        detail: Error::NotBuilt(ExecutorKind::Docker).to_string(),
    }
}

/// The executors of an engine, and the dispatch of a run to the one it
/// names.
#[derive(Debug, Clone)]
pub(crate) struct Executors {
    pub(crate) thread: ThreadExecutor,
    pub(crate) process: ProcessExecutor,
    #[cfg(feature = "docker")]
    pub(crate) docker: DockerExecutor,
}

impl Executors {
    /// The executors whose runs this engine claims: all this build has.
    pub(crate) fn kinds() -> Vec<ExecutorKind> {
        let mut kinds = vec![ExecutorKind::Thread, ExecutorKind::Process];
        if cfg!(feature = "docker") {
            kinds.push(ExecutorKind::Docker);
        }
        kinds
    }

    /// Whether each executor can run here: thread, process, docker.
    pub(crate) async fn availability(&self) -> Vec<Availability> {
        #[cfg(feature = "docker")]
        let docker = self.docker.availability().await;
        #[cfg(not(feature = "docker"))]
        let docker = docker_availability();
        vec![thread_availability(), self.process.availability(), docker]
    }

    /// Runs `def` on the executor `kind`.
    pub(crate) async fn execute(
        &self,
        kind: ExecutorKind,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> TaskResult {
        match kind {
            ExecutorKind::Thread => self.thread.execute(def, ctx, payload, timeout).await,
            ExecutorKind::Process => self.process.execute(def, ctx, payload, timeout).await,
            #[cfg(feature = "docker")]
            ExecutorKind::Docker => self.docker.execute(def, ctx, payload, timeout).await,
            #[allow(unreachable_patterns)]
            other => Err(Error::NotBuilt(other).into()),
        }
    }
}

/// How a worker process ended, in words: `exited with code 101`, `was
/// killed by signal 9 (SIGKILL)`.
pub(crate) fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(signal)) => format!("was killed by signal {signal}{}", signal_name(signal)),
        (Some(code), None) => format!("exited with code {code}"),
        (None, None) => "ended".to_owned(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        6 => " (SIGABRT: an abort, e.g. a panic with `panic = \"abort\"` or a failed allocation)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL: killed from outside, e.g. by the kernel's out-of-memory killer)",
        11 => " (SIGSEGV: a segmentation fault)",
        15 => " (SIGTERM)",
        _ => "",
    }
}
