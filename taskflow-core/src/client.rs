//! [`Client`]: the Rust API to submit runs and follow them — `submit`, `get`,
//! `list`, `cancel`, `delete`, `logs`, `wait`. In-process today (over the
//! engine and its store, or over a store alone, executed by whichever engine
//! shares it); the same methods will work over HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::deadline::Deadline;
use crate::engine::{Engine, RunEvent};
use crate::error::{PayloadError, TaskError};
use crate::run::{Run, RunId, RunStatus, Timestamp};
use crate::store::{self, NewRun, Page, RunFilter, Store, StoredLogLine};
use crate::task::registry::{self, ExecutorKind};

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No task has this title.
    #[error("unknown task `{0}`")]
    UnknownTask(String),
    /// The payload does not fit the task's arguments.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A typed helper could not encode an argument.
    #[error("argument `{argument}`: {message}")]
    Encode {
        /// The argument.
        argument: String,
        /// Why.
        message: String,
    },
    /// The run asks for an executor this build does not have (the `docker`
    /// cargo feature is off).
    #[error(
        "the {0} executor is not in this build; enable taskflow's `{0}` feature, or submit with executor `thread` or `process`"
    )]
    ExecutorUnavailable(ExecutorKind),
    /// `wait` gave up before the run finished.
    #[error("run {id} did not finish within {after:?} (it is {status})")]
    WaitTimedOut {
        /// The run.
        id: RunId,
        /// How long was waited.
        after: Duration,
        /// Its status when the wait ended.
        status: RunStatus,
    },
}

/// Options of a submit beyond title and payload; the task's own options
/// apply where these say nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// Higher runs first (default 0).
    pub priority: i32,
    /// Start no earlier than this from now.
    pub delay: Option<Duration>,
    /// Overrides the task's `retries`.
    pub retries: Option<u32>,
    /// Overrides the task's `retry_delay`, the base of the back-off.
    pub retry_delay: Option<Duration>,
    /// Overrides the task's `timeout`.
    pub timeout: Option<Duration>,
    /// Overrides the task's `executor`.
    pub executor: Option<ExecutorKind>,
    /// `false` creates a new run even when the same title and payload is
    /// pending or running (default: de-duplicate).
    pub no_dedup: bool,
    /// Makes a retried submit safe: the same key returns the same run (and
    /// the same key with another title or payload is refused). A keyed
    /// submit is not de-duplicated by payload.
    pub idempotency_key: Option<String>,
}

/// Submits runs and follows them. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    /// The engine of this process, told about submits and cancels at once.
    engine: Option<Engine>,
    events: broadcast::Sender<RunEvent>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the in-process engine.
    pub fn new(engine: Engine) -> Client {
        Client { store: engine.store().clone(), events: engine.events(), engine: Some(engine) }
    }

    /// A client of a store alone: runs it submits are executed by whichever
    /// engine works on the same store (another process, or later this one).
    pub fn for_store(store: Arc<dyn Store>) -> Client {
        Client { store, engine: None, events: broadcast::channel(1024).0 }
    }

    /// The engine of this process, if the client has one.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The store the client works on (for what runs are not: the remote
    /// workers' registry).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Publishes an event to this process's subscribers: what a remote
    /// worker reported through the control plane, say.
    pub fn publish(&self, event: RunEvent) {
        let _ = self.events.send(event);
    }

    /// Submits a run of `title` with `payload`; the payload is validated
    /// (defaults applied) before anything is stored.
    pub async fn submit(&self, title: &str, payload: Value) -> Result<Run, ClientError> {
        self.submit_with(title, payload, SubmitOptions::default()).await
    }

    /// [`submit`](Self::submit) with options.
    pub async fn submit_with(&self, title: &str, payload: Value, options: SubmitOptions) -> Result<Run, ClientError> {
        let def = registry::task_def(title).ok_or_else(|| ClientError::UnknownTask(title.to_owned()))?;
        let payload = def.prepare(payload)?;
        let task = def.options();
        let mut new = NewRun::new(title, payload);
        new.max_attempts = options.retries.unwrap_or(task.retries).saturating_add(1);
        new.executor = options.executor.unwrap_or(task.executor);
        // A run for an executor this build lacks would stay pending forever.
        // One whose executor is only unreachable now (Docker down) is
        // stored: it fails with the reason, or runs once the daemon is back.
        if new.executor == ExecutorKind::Docker && !cfg!(feature = "docker") {
            return Err(ClientError::ExecutorUnavailable(new.executor));
        }
        new.priority = options.priority;
        new.not_before = options.delay.map(|delay| Timestamp::now().plus(delay));
        new.timeout_ms = options.timeout.or(task.timeout).map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let retry_delay = options.retry_delay.unwrap_or(task.retry_delay);
        new.retry_delay_ms = u64::try_from(retry_delay.as_millis()).unwrap_or(u64::MAX);
        // A keyed submit is governed by its key alone: de-duplicating it onto
        // an unkeyed run would leave the key unrecorded, and a retry after
        // that run finished would make a second run.
        new.unique = !options.no_dedup && options.idempotency_key.is_none();
        new.idempotency_key = options.idempotency_key;
        // With a free slot here and nothing waiting, the run is claimed by
        // its submit and starts at once: no second write, no claim loop.
        let Some((engine, reservation)) =
            self.engine.as_ref().and_then(|engine| Some((engine.clone(), engine.reserve(&new)?)))
        else {
            let submitted = self.store.submit(new).await?;
            self.announce(&submitted);
            return Ok(submitted.run);
        };
        new.claim = Some(reservation.claim());
        // A task of its own: once the store has the run claimed, it must be
        // started even if the caller stops waiting (a client that hung up),
        // or it would sit `running` with nobody executing it until its
        // lease ran out.
        let client = self.clone();
        let submit = tokio::spawn(async move {
            let submitted = client.store.submit(new).await?;
            if submitted.created && reservation.holds(&submitted.run) {
                engine.start_claimed(submitted.run.clone(), reservation);
            } else {
                drop(reservation);
                client.announce(&submitted);
            }
            Ok::<_, ClientError>(submitted.run)
        });
        submit.await.map_err(|error| {
            let failure =
                store::DatabaseError::new(store::DatabaseErrorKind::Other, "internal error: a submit did not finish");
            ClientError::Store(failure.with_source(error).into())
        })?
    }

    /// Publishes a run its submit created pending, and wakes the engine.
    fn announce(&self, submitted: &store::Submitted) {
        if submitted.created {
            self.publish(RunEvent::Status(Box::new(submitted.run.clone())));
            if let Some(engine) = &self.engine {
                engine.wake();
            }
        }
    }

    /// One run.
    pub async fn get(&self, id: RunId) -> Result<Run, ClientError> {
        self.store.get(id).await?.ok_or(ClientError::Store(store::Error::NotFound(id)))
    }

    /// Runs matching `filter`, newest first.
    pub async fn list(&self, filter: RunFilter) -> Result<Page<Run>, ClientError> {
        Ok(self.store.list(filter).await?)
    }

    /// Cancels a pending or running run (a running one is told through its
    /// context; a finished one is an error).
    pub async fn cancel(&self, id: RunId) -> Result<Run, ClientError> {
        let run = self.store.cancel(id, Timestamp::now()).await?;
        if let Some(engine) = &self.engine {
            engine.cancel_local(id);
        }
        self.publish(RunEvent::Status(Box::new(run.clone())));
        Ok(run)
    }

    /// Deletes a run and its log; an active run only when `force` (a run
    /// executing here is told to stop; its late report is ignored).
    pub async fn delete(&self, id: RunId, force: bool) -> Result<(), ClientError> {
        self.store.delete(id, force).await?;
        if let Some(engine) = &self.engine {
            engine.cancel_local(id);
        }
        self.publish(RunEvent::Deleted(id));
        Ok(())
    }

    /// A run's log lines after sequence number `after`.
    pub async fn logs(&self, id: RunId, after: u64, limit: u32) -> Result<Vec<StoredLogLine>, ClientError> {
        Ok(self.store.logs(id, after, limit).await?)
    }

    /// Waits until the run is final and returns it; at most `timeout`.
    pub async fn wait(&self, id: RunId, timeout: Duration) -> Result<Run, ClientError> {
        let mut events = self.events.subscribe();
        // A timeout too long to add is as good as none.
        let deadline = Deadline::after(timeout);
        loop {
            let run = self.get(id).await?;
            if run.status.is_final() {
                return Ok(run);
            }
            // Wake on this run's next event; re-read at least every 250 ms
            // in case it finished in another process.
            let next = async {
                loop {
                    match events.recv().await {
                        Ok(event) if event.run_id() == id => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                () = next => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = deadline.reached() => {
                    let run = self.get(id).await?;
                    if run.status.is_final() {
                        return Ok(run);
                    }
                    return Err(ClientError::WaitTimedOut { id, after: timeout, status: run.status });
                }
            }
        }
    }

    /// Submits and waits: the run's result, or why it has none.
    pub async fn call(&self, title: &str, payload: Value, timeout: Duration) -> Result<Value, CallError> {
        let run = self.submit(title, payload).await?;
        let run = self.wait(run.id, timeout).await?;
        match run.status {
            RunStatus::Completed => Ok(run.result.unwrap_or(Value::Null)),
            _ => Err(CallError::Run(run.error.map_or_else(|| TaskError::Cancelled.to_string(), |e| e.message))),
        }
    }

    /// Every status change and log line from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.events.subscribe()
    }
}

/// Why [`Client::call`] has no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Submitting or waiting failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The run failed or was cancelled, with this message.
    #[error("{0}")]
    Run(String),
    /// The result could not be turned into the typed helper's output type.
    #[error("{0}")]
    Decode(String),
}

/// A run submitted through a task's typed helper (`add_numbers::submit`):
/// its [`wait`](Self::wait) returns the task's own output type.
///
/// ```
/// # extern crate taskflow_core as taskflow;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use taskflow::{client::Client, engine::{Engine, EngineConfig}, store::SqliteStore};
///
/// /// Add two numbers
/// #[taskflow::task]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// let dir = std::env::temp_dir().join(format!("taskflow-typed-{}", std::process::id()));
/// let client = Client::new(Engine::start(Arc::new(SqliteStore::open_in(&dir).unwrap()), EngineConfig::default()).unwrap());
/// assert_eq!(add::submit(&client, 2, 3).await.unwrap().wait().await.unwrap(), 5);
/// # std::fs::remove_dir_all(&dir).ok();
/// # });
/// ```
pub struct TypedRun<T> {
    run: Run,
    client: Client,
    decode: fn(Value) -> Result<T, String>,
}

impl<T> std::fmt::Debug for TypedRun<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRun").field("run", &self.run).finish_non_exhaustive()
    }
}

impl<T> TypedRun<T> {
    #[doc(hidden)]
    pub fn new(run: Run, client: Client, decode: fn(Value) -> Result<T, String>) -> TypedRun<T> {
        TypedRun { run, client, decode }
    }

    /// The run as submitted.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Waits (up to a day) for the run to finish and returns its result.
    pub async fn wait(self) -> Result<T, CallError> {
        self.wait_for(Duration::from_secs(24 * 3600)).await
    }

    /// Waits at most `timeout` for the run to finish and returns its result.
    pub async fn wait_for(self, timeout: Duration) -> Result<T, CallError> {
        let run = self.client.wait(self.run.id, timeout).await?;
        match run.status {
            RunStatus::Completed => (self.decode)(run.result.unwrap_or(Value::Null)).map_err(CallError::Decode),
            _ => Err(CallError::Run(run.error.map_or_else(|| TaskError::Cancelled.to_string(), |e| e.message))),
        }
    }
}
