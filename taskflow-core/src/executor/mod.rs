//! Executors: where a run's code executes. The [`ThreadExecutor`] runs it in
//! this process; the [`ProcessExecutor`] and the Docker executor (feature
//! `docker`) run the app binary as `__run <title>` and speak the protocol of
//! [`crate::executor::frame`] with it, in a child process or in a container.
//! [`availability`] says which of them can run here and why not.

mod child;
mod docker;
pub mod frame;
mod process;
mod thread;
mod worker_io;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::error::{ExecutorError as Error, ExecutorResult as Result};
use crate::future::BoxFuture;
use crate::run::ExecutorKind;
use crate::task::context::TaskContext;
use crate::task::registry::{TaskDef, TaskResult};

#[cfg(feature = "docker")]
pub use docker::{DockerExecutor, WorkerImage};
pub use docker::{DockerExecutorConfig, WarmPool};
pub use process::{ProcessExecutor, ProcessExecutorConfig};
pub use thread::{ThreadExecutor, ThreadExecutorConfig};

/// Where the runs of one [`ExecutorKind`] execute.
///
/// An engine holds one executor per kind its build has and hands each run to
/// the one the run names; it knows no executor by name. An executor keeps
/// what it needs across runs (a connection, a pool of containers) behind
/// [`start`](Executor::start) and [`shutdown`](Executor::shutdown).
pub trait Executor: fmt::Debug + Send + Sync + 'static {
    /// The runs it executes.
    fn kind(&self) -> ExecutorKind;

    /// Whether runs on it can execute here now, and on what (or why not).
    fn availability(&self) -> BoxFuture<Availability>;

    /// Called once when an engine starts, in the background: the Docker
    /// executor removes containers an earlier process left behind and fills
    /// its warm pool. A failure is the executor's to log; its runs then fail
    /// with the reason.
    fn start(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }

    /// Called once when an engine stops, after its runs have ended or been
    /// given back: the Docker executor removes its warm containers.
    fn shutdown(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }

    /// Runs `def` with `payload` and waits for its outcome, at most
    /// `timeout` (the task's own `timeout` option when `None`). Cancelling
    /// `ctx` ends it with [`TaskError::Cancelled`](crate::TaskError::Cancelled).
    fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<TaskResult>;
}

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
    Executors::built_in(
        ThreadExecutorConfig::default(),
        ProcessExecutorConfig::default(),
        DockerExecutorConfig::default(),
    )
    .availability()
    .await
}

/// The executors of an engine, one per kind, and the dispatch of a run to
/// the one it names. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Executors {
    by_kind: Arc<[Arc<dyn Executor>]>,
}

impl Executors {
    /// The executors this build has (thread and process; Docker with the
    /// `docker` feature), with these settings. The one place that knows
    /// which kinds a build has.
    pub(crate) fn built_in(
        thread: ThreadExecutorConfig,
        process: ProcessExecutorConfig,
        docker: DockerExecutorConfig,
    ) -> Executors {
        #[cfg(not(feature = "docker"))]
        let _ = docker;
        let by_kind: [Arc<dyn Executor>; _] = [
            Arc::new(ThreadExecutor::new(thread)),
            Arc::new(ProcessExecutor::new(process)),
            #[cfg(feature = "docker")]
            Arc::new(DockerExecutor::new(docker)),
        ];
        Executors { by_kind: Arc::new(by_kind) }
    }

    fn get(&self, kind: ExecutorKind) -> Option<&Arc<dyn Executor>> {
        self.by_kind.iter().find(|executor| executor.kind() == kind)
    }

    /// The kinds whose runs this engine claims: those it has an executor for.
    pub(crate) fn kinds(&self) -> Vec<ExecutorKind> {
        self.by_kind.iter().map(|executor| executor.kind()).collect()
    }

    /// Whether each executor can run here, one entry per kind (thread,
    /// process, docker); a kind this build lacks says which feature to
    /// enable.
    pub(crate) async fn availability(&self) -> Vec<Availability> {
        let mut all = Vec::new();
        for kind in [ExecutorKind::Thread, ExecutorKind::Process, ExecutorKind::Docker] {
            all.push(match self.get(kind) {
                Some(executor) => executor.availability().await,
                None => Availability { kind, available: false, detail: Error::NotBuilt(kind).to_string() },
            });
        }
        all
    }

    /// Starts every executor, each in the background.
    pub(crate) fn start(&self) {
        for executor in self.by_kind.iter() {
            tokio::spawn(executor.start());
        }
    }

    /// Shuts every executor down.
    pub(crate) async fn shutdown(&self) {
        for executor in self.by_kind.iter() {
            executor.shutdown().await;
        }
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
        match self.get(kind) {
            Some(executor) => executor.execute(def, ctx, payload, timeout).await,
            None => Err(Error::NotBuilt(kind).into()),
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
