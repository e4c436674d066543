//! Executors: where a run's code executes. The [`ThreadExecutor`] runs it in
//! this process; the [`ProcessExecutor`] and the Docker executor (feature
//! `docker`) run the app binary as `__run <title>` and speak the protocol of
//! [`crate::protocol`] with it, in a child process or in a container.
//! [`availability`] says which of them can run here and why not.

mod child;
#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "docker")]
mod image;
mod process;
mod thread;
mod warm_pool;

use std::time::Duration;

use serde_json::Value;

use crate::context::TaskContext;
use crate::registry::{ExecutorKind, TaskDef, TaskResult};

#[cfg(feature = "docker")]
pub use docker::{DockerExecutor, DockerExecutorConfig, WorkerImage};
pub use process::{ProcessExecutor, ProcessExecutorConfig};
pub use thread::{ThreadExecutor, ThreadExecutorConfig};
pub use warm_pool::WarmPool;

/// `Result` with the executors' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an executor could not produce a run's result, each saying what
/// happened and, where there is something to do, what to do.
///
/// Carried by [`TaskError::Executor`](crate::TaskError::Executor); its
/// [`kind`](Error::kind) is the run's error kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker program could not be started.
    #[error("could not start the worker `{program}`: {message}; check the executor's `program` (default: this binary)")]
    Spawn {
        /// The program that was started.
        program: String,
        /// The operating system's reason.
        message: String,
    },
    /// The worker ended without writing a result: it crashed (`panic =
    /// "abort"`, a segfault), was killed by a signal, or exited early.
    #[error("the worker {how} without a result{}", last_output.as_ref().map(|l| format!("; its last output: {l}")).unwrap_or_default())]
    Crashed {
        /// How it ended: `exited with code 101`, `was killed by signal 9
        /// (SIGKILL)`.
        how: String,
        /// The last line it wrote on standard error, if any.
        last_output: Option<String>,
    },
    /// The worker wrote something on standard output that is not one result
    /// frame.
    #[error("the worker's result frame is not valid ({reason}): {excerpt}")]
    MalformedFrame {
        /// What is wrong with it.
        reason: String,
        /// Its beginning.
        excerpt: String,
    },
    /// The result frame is larger than the executor accepts.
    #[error(
        "the worker's result is larger than the limit of {limit} bytes; return less (store large data elsewhere and return a reference) or raise the executor's `max_result_bytes`"
    )]
    ResultTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The container was killed for using more memory than its limit.
    #[error("killed: memory limit {limit} exceeded; raise the task's `memory` option (e.g. `memory = \"1GiB\"`)")]
    OutOfMemory {
        /// The limit, as written: `256 MiB`.
        limit: String,
    },
    /// The Docker engine could not be reached.
    #[error(
        "the Docker engine is not reachable at {endpoint}: {message}; start it (`sudo systemctl start docker`), or point DOCKER_HOST at its socket (e.g. `unix:///var/run/docker.sock`), and make sure this user may use it (the `docker` group)"
    )]
    DockerUnavailable {
        /// The socket or `DOCKER_HOST` tried.
        endpoint: String,
        /// The connection error.
        message: String,
    },
    /// The Docker engine refused to build a worker image.
    #[error("building the worker image `{tag}` failed: {message}")]
    ImageBuild {
        /// The image's tag.
        tag: String,
        /// The daemon's message.
        message: String,
    },
    /// The task names a base image (`image = "…"`) this Docker engine does
    /// not have; TaskFlow never pulls.
    #[error(
        "the base image `{image}` of task `{title}` is not on this Docker engine, and TaskFlow pulls nothing: load or build it there first (`docker load`, `docker build`), or remove the task's `image` option to build from scratch"
    )]
    BaseImageMissing {
        /// The image named.
        image: String,
        /// The task.
        title: String,
    },
    /// The worker image could not be assembled from the binary.
    #[error("assembling the worker image failed: {message}")]
    Assembly {
        /// What went wrong.
        message: String,
    },
    /// A call to the Docker engine failed.
    #[error("docker: {doing} failed: {message}")]
    Docker {
        /// What was being done: `creating the container`.
        doing: String,
        /// The daemon's message.
        message: String,
    },
    /// This build lacks the executor (a cargo feature is off).
    #[error(
        "the {0} executor is not in this build; enable taskflow's `{0}` cargo feature, or submit with executor `thread` or `process`"
    )]
    NotBuilt(ExecutorKind),
}

impl Error {
    /// A stable, machine-readable name of the variant (the run's error kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Spawn { .. } => "worker_spawn",
            Error::Crashed { .. } => "crashed",
            Error::MalformedFrame { .. } => "protocol",
            Error::ResultTooLarge { .. } => "result_too_large",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::DockerUnavailable { .. } => "docker_unavailable",
            Error::ImageBuild { .. } => "image_build",
            Error::BaseImageMissing { .. } => "base_image_missing",
            Error::Assembly { .. } => "image_assembly",
            Error::Docker { .. } => "docker",
            Error::NotBuilt(_) => "executor_unavailable",
        }
    }

    /// Whether another attempt may succeed: a crash or an unreachable daemon
    /// may pass, a result that is too large or a missing image will not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Spawn { .. }
                | Error::Crashed { .. }
                | Error::OutOfMemory { .. }
                | Error::DockerUnavailable { .. }
                | Error::Docker { .. }
        )
    }
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
