//! Runs each run in a child process: the app binary re-executed as
//! `__run <title>`, the payload on its standard input, one result frame read
//! from its standard output, its standard error streamed line by line into
//! the run's log.
//!
//! A child leads its own process group; a timeout or a cancel kills the
//! whole group (the worker and whatever it started), and so does the end of
//! every run, so nothing a task left behind lives on. A child that ends
//! without a frame (a crash, a signal, an early exit) fails the run with
//! what happened; a frame that is not valid, or larger than
//! [`ProcessExecutorConfig::max_result_bytes`], fails it too — never a hang.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use super::Executor;
use super::child::{self, GroupChild};
use super::worker_io::{self, DriveOptions, Pipes, Worker};
use super::{Availability, Error};
use crate::error::TaskError;
use crate::future::BoxFuture;
use crate::task::context::TaskContext;
use crate::task::registry::{ExecutorKind, TaskDef, TaskResult};

/// How long output still open after the worker ended (or was killed) is
/// read before it is abandoned: a hang guard, not a deadline.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Settings of a [`ProcessExecutor`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessExecutorConfig {
    /// The program run as `<program> __run <title>`; `None` is this binary
    /// (`std::env::current_exe()`), which has the same tasks.
    pub program: Option<PathBuf>,
    /// The largest result frame accepted, in bytes (default 16 MiB).
    pub max_result_bytes: usize,
}

impl Default for ProcessExecutorConfig {
    fn default() -> Self {
        ProcessExecutorConfig { program: None, max_result_bytes: 16 * 1024 * 1024 }
    }
}

/// Executes runs in child processes of this binary. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ProcessExecutor {
    config: ProcessExecutorConfig,
}

impl ProcessExecutor {
    /// An executor with `config`.
    pub fn new(config: ProcessExecutorConfig) -> ProcessExecutor {
        ProcessExecutor { config }
    }

    /// Its settings.
    pub fn config(&self) -> &ProcessExecutorConfig {
        &self.config
    }

    /// The program it starts.
    ///
    /// # Errors
    /// When no program is configured and this binary's path is unknown.
    pub fn program(&self) -> Result<PathBuf, Error> {
        match &self.config.program {
            Some(program) => Ok(program.clone()),
            None => std::env::current_exe().map_err(|e| Error::Spawn {
                program: "<this binary>".to_owned(),
                message: format!("its path is unknown: {e}"),
            }),
        }
    }

    /// Whether the program exists.
    pub fn availability(&self) -> Availability {
        let (available, detail) = match self.program() {
            Ok(program) if program.is_file() => {
                (true, format!("runs `{} __run <title>` in a child process", program.display()))
            }
            Ok(program) => (false, format!("the worker program `{}` does not exist", program.display())),
            Err(error) => (false, error.to_string()),
        };
        Availability { kind: ExecutorKind::Process, available, detail }
    }

    /// Runs `def` with `payload` in a child and waits for its outcome, at
    /// most `timeout` (the task's own `timeout` option when `None`).
    /// Cancelling `ctx` kills the child and ends with
    /// [`TaskError::Cancelled`].
    ///
    /// Must be called from within a Tokio runtime.
    pub async fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> TaskResult {
        // Checked here as on every executor: a bad payload never starts a worker.
        let payload = def.prepare(payload)?;
        let timeout = timeout.or(def.options().timeout);
        if ctx.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        let program = self.program()?;
        let mut command = child::command(&program);
        command
            .arg("__run")
            .arg(def.title())
            .env("TASKFLOW_RUN_ID", ctx.run_id())
            .env("TASKFLOW_ATTEMPT", ctx.attempt().to_string());
        let mut child = GroupChild::spawn(&mut command)
            .map_err(|e| Error::Spawn { program: program.display().to_string(), message: e.to_string() })?;
        let input = serde_json::to_vec(&payload).map_err(|e| TaskError::Output { message: e.to_string() })?;
        let stdin = child.inner().stdin.take();
        let cap = self.config.max_result_bytes;
        let output = Pipes::spawn(child.inner().stdout.take(), child.inner().stderr.take(), &ctx, cap, DRAIN_GRACE);
        let options = DriveOptions { timeout, max_result_bytes: cap, wait_for_exit: true };
        worker_io::drive(&mut child, stdin, input, output, &ctx, options).await
    }
}

/// The child as its run's worker: waited for to its exit status.
impl Worker for GroupChild {
    type Exit = ExitStatus;
    type WaitError = String;

    async fn wait(&mut self) -> Result<ExitStatus, String> {
        self.inner().wait().await.map_err(|error| error.to_string())
    }

    /// Whatever happened, nothing of the run lives on: the group goes.
    async fn stop(&mut self, _exited: bool) {
        self.kill_group();
    }

    async fn reap(&mut self) {
        let _ = self.inner().wait().await;
    }

    fn wait_failed(&self, message: String, last_output: Option<String>) -> TaskError {
        Error::Crashed { how: format!("could not be waited for ({message})"), last_output }.into()
    }

    async fn crashed(&mut self, status: ExitStatus, last_output: Option<String>) -> TaskError {
        Error::Crashed { how: describe(status), last_output }.into()
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    super::describe_exit(status.code(), signal)
}

impl Executor for ProcessExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Process
    }

    fn availability(&self) -> BoxFuture<Availability> {
        Box::pin(std::future::ready(ProcessExecutor::availability(self)))
    }

    fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<TaskResult> {
        let this = self.clone();
        Box::pin(async move { ProcessExecutor::execute(&this, def, ctx, payload, timeout).await })
    }
}
