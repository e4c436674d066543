//! Runs tasks inside the server's process: sync tasks on Tokio's bounded
//! pool of blocking threads, async tasks on the runtime, with a concurrency
//! limit, timeouts and cancellation.
//!
//! A blocking thread cannot be killed. When a sync task times out or is
//! cancelled, the executor reports that at once and cancels the task's
//! context; the thread itself runs on until the task checks
//! [`TaskContext::is_cancelled`] (or finishes), and it keeps its concurrency
//! permit until then, so the limit stays true; the worker keeps the run's
//! slot, and its place in the task's `concurrency`, until then too. A sync
//! task that must stop when told runs on the process executor
//! (`#[task(executor = "process")]`), whose child is killed. Async tasks are
//! dropped at their next `.await`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::{Availability, Executor};
use crate::error::TaskError;
use crate::future::BoxFuture;
use crate::run::ExecutorKind;
use crate::task::context::TaskContext;
use crate::task::registry::{Invoker, TaskDef, TaskResult, catch_panic, invoke_async};

/// Settings of a [`ThreadExecutor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadExecutorConfig {
    /// How many runs execute at once; further runs wait for a slot.
    pub max_concurrency: usize,
}

impl Default for ThreadExecutorConfig {
    fn default() -> Self {
        ThreadExecutorConfig { max_concurrency: 32 }
    }
}

impl ThreadExecutorConfig {
    /// A configuration running at most `max_concurrency` runs at once (at
    /// least 1).
    pub fn with_max_concurrency(max_concurrency: usize) -> Self {
        ThreadExecutorConfig { max_concurrency: max_concurrency.max(1) }
    }
}

/// Executes runs on threads of this process. Cheap to clone; clones share
/// the concurrency limit.
#[derive(Debug, Clone)]
pub struct ThreadExecutor {
    permits: Arc<Semaphore>,
    config: ThreadExecutorConfig,
}

impl Default for ThreadExecutor {
    fn default() -> Self {
        ThreadExecutor::new(ThreadExecutorConfig::default())
    }
}

impl ThreadExecutor {
    /// An executor with `config`'s limits.
    pub fn new(config: ThreadExecutorConfig) -> ThreadExecutor {
        let config = ThreadExecutorConfig::with_max_concurrency(config.max_concurrency);
        ThreadExecutor { permits: Arc::new(Semaphore::new(config.max_concurrency)), config }
    }

    /// The limits this executor runs with.
    pub fn config(&self) -> ThreadExecutorConfig {
        self.config
    }

    /// Runs `def` with `payload` and waits for its outcome, at most
    /// `timeout` (the task's own `timeout` option when `None`). Cancelling
    /// `ctx` ends the wait with [`TaskError::Cancelled`].
    ///
    /// Must be called from within a Tokio runtime.
    pub async fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> TaskResult {
        let payload = def.prepare(payload)?;
        let timeout = timeout.or(def.options().timeout);
        // The timeout counts from here, the wait for a permit included: a run
        // queued behind others still ends when its time is up.
        let deadline = async {
            match timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let mut deadline = std::pin::pin!(deadline);
        let timed_out = || TaskError::TimedOut { after: timeout.unwrap_or_default() };
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit.map_err(|_| TaskError::Cancelled)?,
            () = ctx.cancelled() => return Err(TaskError::Cancelled),
            () = &mut deadline => return Err(timed_out()),
        };
        let mut handle = match def.invoker() {
            Invoker::Sync(call) => {
                let ctx = ctx.clone();
                // A blocking thread cannot be stopped: the worker holds the
                // run's slot until the code returns.
                let code = ctx.code_running();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let _code = code;
                    catch_panic(|| call(&ctx, payload))
                })
            }
            Invoker::Async(call) => {
                let future = invoke_async(call, ctx.clone(), payload);
                tokio::spawn(async move {
                    let _permit = permit;
                    future.await
                })
            }
        };
        let outcome = tokio::select! {
            joined = &mut handle => match joined {
                Ok(result) => result,
                Err(error) => Err(TaskError::Panicked { message: error.to_string() }),
            },
            () = &mut deadline => {
                ctx.cancel();
                handle.abort();
                return Err(timed_out());
            }
            () = ctx.cancelled() => {
                handle.abort();
                return Err(TaskError::Cancelled);
            }
        };
        // A task that stopped because it saw the cancellation was cancelled,
        // whatever it returned.
        match outcome {
            Err(_) if ctx.is_cancelled() => Err(TaskError::Cancelled),
            outcome => outcome,
        }
    }
}

impl Executor for ThreadExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Thread
    }

    fn availability(&self) -> BoxFuture<Availability> {
        Box::pin(std::future::ready(Availability {
            kind: ExecutorKind::Thread,
            available: true,
            detail: "runs tasks on threads of this process".to_owned(),
        }))
    }

    fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<TaskResult> {
        let this = self.clone();
        Box::pin(async move { ThreadExecutor::execute(&this, def, ctx, payload, timeout).await })
    }
}
