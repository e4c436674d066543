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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::Executor;
use super::child::{self, GroupChild};
use super::frame::{self, LineSplitter};
use super::{Availability, Error};
use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::future::BoxFuture;
use crate::task::context::TaskContext;
use crate::task::registry::{ExecutorKind, TaskDef, TaskResult};

/// Longest log line kept from a worker's standard error; the rest of a
/// longer line is dropped.
pub(crate) const MAX_LOG_LINE: usize = 64 * 1024;

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
        let stdout = child.inner().stdout.take();
        let stderr = child.inner().stderr.take();
        // A worker that exits without reading its input closes the pipe:
        // that write error says nothing the exit does not.
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        });
        let cap = self.config.max_result_bytes;
        // Shared, so what was read survives a reader abandoned after the
        // grace period (a process outside the group holding stdout open).
        let read_so_far = Arc::new(Mutex::new(Vec::new()));
        let mut frame_reader = {
            let read_so_far = read_so_far.clone();
            tokio::spawn(async move {
                match stdout {
                    Some(stdout) => read_capped(stdout, cap, &read_so_far).await,
                    None => true,
                }
            })
        };
        let log_ctx = ctx.clone();
        let mut logger = tokio::spawn(async move {
            match stderr {
                Some(stderr) => forward_lines(stderr, &log_ctx).await,
                None => None,
            }
        });

        let deadline = Deadline::within(timeout).reached();
        tokio::pin!(deadline);
        let mut read_done = false;
        let end = loop {
            tokio::select! {
                status = child.inner().wait() => break match status {
                    Ok(status) => End::Exited(status),
                    Err(error) => End::WaitFailed(error.to_string()),
                },
                fits = &mut frame_reader, if !read_done => {
                    if !fits.unwrap_or(true) {
                        break End::TooLarge;
                    }
                    read_done = true;
                }
                () = &mut deadline => break End::TimedOut,
                () = ctx.cancelled() => break End::Cancelled,
            }
        };
        // Whatever happened, nothing of the run lives on: the group goes.
        child.kill_group();
        writer.abort();
        let last_output = match tokio::time::timeout(DRAIN_GRACE, &mut logger).await {
            Ok(last) => last.ok().flatten(),
            Err(_) => {
                logger.abort();
                None
            }
        };
        let status = match end {
            End::Exited(status) => status,
            End::TooLarge => return Err(Error::ResultTooLarge { limit: cap }.into()),
            End::TimedOut => {
                let _ = child.inner().wait().await;
                return Err(TaskError::TimedOut { after: timeout.unwrap_or_default() });
            }
            End::Cancelled => {
                let _ = child.inner().wait().await;
                return Err(TaskError::Cancelled);
            }
            End::WaitFailed(message) => {
                return Err(Error::Crashed { how: format!("could not be waited for ({message})"), last_output }.into());
            }
        };
        if !read_done {
            match tokio::time::timeout(DRAIN_GRACE, &mut frame_reader).await {
                Ok(Ok(false)) => return Err(Error::ResultTooLarge { limit: cap }.into()),
                Ok(_) => {}
                Err(_) => frame_reader.abort(),
            }
        }
        let stdout = std::mem::take(&mut *read_so_far.lock().unwrap_or_else(|e| e.into_inner()));
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Crashed { how: describe(status), last_output }.into());
        }
        frame::decode_frame(&stdout)?
    }
}

/// How a wait for the worker ended.
enum End {
    Exited(ExitStatus),
    WaitFailed(String),
    TooLarge,
    TimedOut,
    Cancelled,
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    super::describe_exit(status.code(), signal)
}

/// Reads `reader` to its end into `out`; `false` as soon as that would be
/// more than `cap` bytes.
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize, out: &Mutex<Vec<u8>>) -> bool {
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                if out.len() + n > cap {
                    return false;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Forwards each line of `reader` to the run's log as it comes; answers the
/// last non-empty line (shortened), for a crash's message.
async fn forward_lines(mut reader: impl AsyncRead + Unpin, ctx: &TaskContext) -> Option<String> {
    let mut splitter = LineSplitter::new(MAX_LOG_LINE);
    let mut last = None;
    let mut chunk = vec![0; 16 * 1024];
    let mut forward = |line: &[u8]| {
        frame::forward_stderr_line(ctx, line);
        if telling(line) {
            last = Some(short(line));
        }
    };
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => splitter.push(&chunk[..n], &mut forward),
        }
    }
    splitter.finish(&mut forward);
    last
}

/// Whether a line of standard error says something about a crash: not
/// empty, and not part of a backtrace (indented frames, `stack backtrace:`,
/// the `RUST_BACKTRACE` notes), so a crash's message quotes the line that
/// matters ("memory allocation of … failed").
pub(crate) fn telling(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    !(text.trim().is_empty()
        || text.starts_with(char::is_whitespace)
        || text.starts_with("stack backtrace:")
        || (text.starts_with("note: ") && text.contains("RUST_BACKTRACE")))
}

/// A line for an error message: at most 300 characters.
pub(crate) fn short(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
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
