//! The [`TaskContext`] a task may take as its first parameter: the run's id,
//! a logger whose lines belong to the run, progress reporting and the
//! cancellation check.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::log::{Level, LogLine};
pub use crate::run::Progress;

/// Where a run's log lines and progress go: standard error for the CLI and
/// the `__run` worker entry, the store for runs of the engine.
pub trait RunSink: Send + Sync + 'static {
    /// Records a line logged by run `run_id`.
    fn log(&self, run_id: &str, line: LogLine);
    /// Records the progress of run `run_id`.
    fn progress(&self, run_id: &str, progress: Progress) {
        let _ = (run_id, progress);
    }
}

/// Writes each line to standard error as `[level] message`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrSink;

impl RunSink for StderrSink {
    fn log(&self, _run_id: &str, line: LogLine) {
        eprintln!("[{}] {}", line.level, line.message);
    }

    fn progress(&self, _run_id: &str, progress: Progress) {
        eprintln!("[progress] {}/{}", progress.done, progress.total);
    }
}

/// Keeps every line in memory, for tests and short local runs.
#[derive(Debug, Default)]
pub struct MemorySink {
    lines: std::sync::Mutex<Vec<LogLine>>,
    progress: std::sync::Mutex<Option<Progress>>,
}

impl MemorySink {
    /// The lines logged so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last progress reported.
    pub fn last_progress(&self) -> Option<Progress> {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RunSink for MemorySink {
    fn log(&self, _run_id: &str, line: LogLine) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn progress(&self, _run_id: &str, progress: Progress) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress);
    }
}

/// What a running task knows about its run. Cheap to clone.
///
/// ```
/// # extern crate taskflow_core as taskflow;
/// use taskflow::{task, TaskContext};
///
/// /// Count to `n`, one step at a time.
/// #[task]
/// fn count(ctx: &TaskContext, n: u32) -> Result<u32, String> {
///     for i in 0..n {
///         ctx.check_cancelled()?; // stop early when the run is cancelled
///         ctx.info(format!("step {i}"));
///         ctx.progress(u64::from(i) + 1, u64::from(n));
///     }
///     Ok(n)
/// }
///
/// let ctx = TaskContext::new("example-run");
/// assert_eq!(count(&ctx, 3), Ok(3));
/// ```
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    run_id: String,
    attempt: u32,
    sink: Arc<dyn RunSink>,
    cancel: CancellationToken,
    /// How many pieces of the task's code still execute for this context
    /// (a sync task's blocking thread): the worker holds the run's slot
    /// until they end, even after the attempt's outcome is stored.
    code: AtomicUsize,
    code_ended: Notify,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("run_id", &self.inner.run_id)
            .field("attempt", &self.inner.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// The error of [`TaskContext::check_cancelled`]: the run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run was cancelled")]
pub struct Cancelled;

/// Lets `ctx.check_cancelled()?` work in tasks that return `Result<T, String>`.
impl From<Cancelled> for String {
    fn from(cancelled: Cancelled) -> String {
        cancelled.to_string()
    }
}

/// Lets `ctx.check_cancelled()?` work in tasks that return
/// `Result<T, TaskError>`: the run's error is [`TaskError::Cancelled`](crate::TaskError::Cancelled).
impl From<Cancelled> for crate::TaskError {
    fn from(Cancelled: Cancelled) -> crate::TaskError {
        crate::TaskError::Cancelled
    }
}

/// Lets `ctx.check_cancelled()?` work in tasks that return
/// `std::io::Result<T>`: an [`Interrupted`](std::io::ErrorKind::Interrupted)
/// error whose source is the [`Cancelled`].
impl From<Cancelled> for std::io::Error {
    fn from(cancelled: Cancelled) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::Interrupted, cancelled)
    }
}

impl TaskContext {
    /// A context for run `run_id` (attempt 1) that logs to standard error.
    pub fn new(run_id: impl Into<String>) -> TaskContext {
        TaskContext::with_sink(run_id, 1, Arc::new(StderrSink))
    }

    /// A context for attempt `attempt` of run `run_id` whose lines and
    /// progress go to `sink`.
    pub fn with_sink(run_id: impl Into<String>, attempt: u32, sink: Arc<dyn RunSink>) -> TaskContext {
        TaskContext {
            inner: Arc::new(Inner {
                run_id: run_id.into(),
                attempt,
                sink,
                cancel: CancellationToken::new(),
                code: AtomicUsize::new(0),
                code_ended: Notify::new(),
            }),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Logs a line at `level`; it belongs to this run.
    pub fn log(&self, level: Level, message: impl fmt::Display) {
        let line = LogLine { at: SystemTime::now(), level, message: message.to_string() };
        self.inner.sink.log(&self.inner.run_id, line);
    }

    /// Logs a debug line.
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(Level::Debug, message);
    }

    /// Logs an info line.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(Level::Info, message);
    }

    /// Logs a warning.
    pub fn warn(&self, message: impl fmt::Display) {
        self.log(Level::Warn, message);
    }

    /// Logs an error line (the run goes on; return `Err` to fail it).
    pub fn error(&self, message: impl fmt::Display) {
        self.log(Level::Error, message);
    }

    /// Reports that `done` of `total` steps are done (`total` 0 counts as 1).
    pub fn progress(&self, done: u64, total: u64) {
        let total = total.max(1);
        let progress = Progress { done: done.min(total), total };
        self.inner.sink.progress(&self.inner.run_id, progress);
    }

    /// Whether the run was cancelled or timed out. Long-running tasks check
    /// it between steps: a thread cannot be killed, so this is how a
    /// thread-executed task stops early.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// `Err(Cancelled)` once the run is cancelled, for `?`.
    pub fn check_cancelled(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() { Err(Cancelled) } else { Ok(()) }
    }

    /// Completes when the run is cancelled; for `tokio::select!` in async
    /// tasks.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Asks the task to stop: [`is_cancelled`](Self::is_cancelled) turns
    /// true for every clone of this context.
    pub fn cancel(&self) {
        self.inner.cancel.cancel();
    }

    /// Marks the task's code as executing for this context until the guard
    /// is dropped: an executor that cannot stop the code it started (a
    /// blocking thread) holds one, so the worker knows the code runs on
    /// after the executor gave up on it.
    pub(crate) fn code_running(&self) -> CodeRunning {
        self.inner.code.fetch_add(1, Ordering::SeqCst);
        CodeRunning(self.clone())
    }

    /// Whether code of the task still executes for this context.
    pub(crate) fn code_is_running(&self) -> bool {
        self.inner.code.load(Ordering::SeqCst) > 0
    }

    /// Completes once no code of the task executes for this context.
    pub(crate) async fn code_ended(&self) {
        loop {
            let ended = self.inner.code_ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.inner.code.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// Held while a task's code executes for a context
/// ([`TaskContext::code_running`]).
pub(crate) struct CodeRunning(TaskContext);

impl Drop for CodeRunning {
    fn drop(&mut self) {
        if self.0.inner.code.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.code_ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_cancelled_converts_for_the_usual_error_types() {
        let ctx = TaskContext::new("run");
        ctx.cancel();
        let io: std::io::Error = ctx.check_cancelled().unwrap_err().into();
        assert_eq!(io.kind(), std::io::ErrorKind::Interrupted);
        assert_eq!(io.to_string(), "the run was cancelled");
        let task: crate::TaskError = ctx.check_cancelled().unwrap_err().into();
        assert_eq!(task, crate::TaskError::Cancelled);
        let text: String = ctx.check_cancelled().unwrap_err().into();
        assert_eq!(text, "the run was cancelled");
    }
}
