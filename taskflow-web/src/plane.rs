//! [`Plane`]: what the control plane does, over the core's [`Client`] and
//! the registry, in the wire's types: the routes and pages call it, and
//! [`convert`](crate::convert) translates. It also turns the client's
//! events into wire events in each run's order, for the WebSockets.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use taskflow_core::ExecutorKind;
use taskflow_core::client::{Client, ClientError, SubmitOptions};
use taskflow_core::engine::StatusOrder;
use taskflow_core::registry;
use taskflow_core::run::RunId;
use taskflow_core::store::{self, RunFilter};
use taskflow_proto::{
    self as proto, Event, ExecutorHealth, FieldIssue, Function, Health, SubmitRequest, TaskPage, TaskRun,
};
use tokio::sync::broadcast;

use crate::convert::{parse_id, plane_error, wire_event, wire_function, wire_line, wire_run};

/// How many events a slow WebSocket may fall behind before it catches up
/// from the store.
const EVENT_BUFFER: usize = 4096;

/// How long the executors' availability is reused: `/health`, every form
/// and the OpenAPI document ask for it, and asking the Docker engine each
/// time would make them as slow as the engine's answer.
const AVAILABILITY_TTL: Duration = Duration::from_secs(2);

/// The control plane of this process: its client, its tasks, and its
/// events in wire form.
#[derive(Debug, Clone)]
pub struct Plane {
    client: Client,
    events: broadcast::Sender<Event>,
    /// The executors' availability and when it was asked; one caller asks
    /// at a time, the others wait for its answer.
    availability: Arc<tokio::sync::Mutex<Option<Asked>>>,
}

/// The executors' availability, and when it was asked.
type Asked = (tokio::time::Instant, Vec<ExecutorHealth>);

impl Plane {
    /// The plane over `client`. Starts a task forwarding the client's
    /// events, so it must be called inside a Tokio runtime.
    pub fn new(client: Client) -> Arc<Plane> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut source = client.subscribe();
        let sink = events.clone();
        tokio::spawn(async move {
            let mut order = StatusOrder::default();
            loop {
                match source.recv().await {
                    Ok(event) => {
                        if order.is_current(&event) {
                            let _ = sink.send(wire_event(event));
                        }
                    }
                    // A lagging forwarder passes the lag on: subscribers
                    // re-read what they follow.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = sink.send(Event::Resync);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Arc::new(Plane { client, events, availability: Arc::default() })
    }

    /// The executors' availability: this engine's (which knows its own
    /// Docker host), or the defaults' without one; asked at most every
    /// [`AVAILABILITY_TTL`].
    async fn executors(&self) -> Vec<ExecutorHealth> {
        let mut cached = self.availability.lock().await;
        if let Some((at, executors)) = cached.as_ref()
            && at.elapsed() < AVAILABILITY_TTL
        {
            return executors.clone();
        }
        let availability = match self.client.engine() {
            Some(engine) => engine.availability().await,
            None => taskflow_core::executor::availability().await,
        };
        let executors: Vec<ExecutorHealth> = availability
            .into_iter()
            .map(|a| ExecutorHealth { name: a.kind.as_str().to_owned(), available: a.available, detail: a.detail })
            .collect();
        *cached = Some((tokio::time::Instant::now(), executors.clone()));
        executors
    }
}

impl Plane {
    /// The core's client the plane works through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every task this server can run, in a stable order (by title).
    pub fn functions(&self) -> Vec<Function> {
        let mut functions: Vec<Function> = registry::tasks().map(wire_function).collect();
        functions.sort_by(|a, b| a.title.cmp(&b.title));
        functions
    }

    /// One task by title.
    pub fn function(&self, title: &str) -> Option<Function> {
        registry::task_def(title).map(wire_function)
    }

    /// Validates the payload and stores a run (or finds the one it
    /// de-duplicates onto).
    pub async fn submit(&self, request: SubmitRequest) -> Result<TaskRun, PlaneError> {
        let mut options = SubmitOptions::default();
        options.priority = request.priority;
        if let Some(executor) = &request.executor {
            let kind = ExecutorKind::from_str(executor).map_err(|message| PlaneError::Invalid {
                message: message.clone(),
                issues: vec![FieldIssue { path: "executor".to_owned(), message }],
            })?;
            options.executor = Some(kind);
        }
        if !request.payload.is_object() {
            let message = "payload: expected an object of the task's arguments".to_owned();
            return Err(PlaneError::Invalid {
                issues: vec![FieldIssue { path: "payload".to_owned(), message: "expected an object".to_owned() }],
                message,
            });
        }
        options.delay = request.delay_seconds.map(Duration::from_secs);
        options.no_dedup = !request.unique;
        options.idempotency_key = request.idempotency_key;
        self.client.submit_with(&request.task_title, request.payload, options).await.map(wire_run).map_err(plane_error)
    }

    /// One run.
    pub async fn get(&self, task_id: &str) -> Result<TaskRun, PlaneError> {
        let id = parse_id(task_id)?;
        self.client.get(id).await.map(wire_run).map_err(plane_error)
    }

    /// Runs, newest first.
    pub async fn list(&self, query: ListQuery) -> Result<TaskPage, PlaneError> {
        let mut filter = RunFilter::default();
        filter.statuses = query.statuses.into_iter().map(crate::convert::core_status).collect();
        filter.task_title = query.task_title;
        filter.limit = Some(query.limit);
        filter.offset = Some(query.offset);
        let page = self.client.list(filter).await.map_err(plane_error)?;
        Ok(TaskPage {
            items: page.items.into_iter().map(|run| wire_run(run).summary()).collect(),
            total: page.total,
            limit: query.limit,
            offset: query.offset,
        })
    }

    /// Cancels a pending or running run.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskRun, PlaneError> {
        let id = parse_id(task_id)?;
        self.client.cancel(id).await.map(wire_run).map_err(plane_error)
    }

    /// Deletes a run and its log; an active one only with `force`.
    pub async fn delete(&self, task_id: &str, force: bool) -> Result<(), PlaneError> {
        let id = parse_id(task_id)?;
        self.client.delete(id, force).await.map_err(plane_error)
    }

    /// A run's log lines after sequence number `after`, at most `limit`.
    pub async fn logs(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<proto::LogLine>, PlaneError> {
        let id = parse_id(task_id)?;
        let lines = self.client.logs(id, after, limit).await.map_err(plane_error)?;
        Ok(lines.into_iter().map(wire_line).collect())
    }

    /// Waits at most `timeout` for the run to be final; returns it as it is
    /// then, final or not.
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<TaskRun, PlaneError> {
        let id = parse_id(task_id)?;
        match self.client.wait(id, timeout).await {
            Ok(run) => Ok(wire_run(run)),
            Err(ClientError::WaitTimedOut { .. }) => self.get(task_id).await,
            Err(error) => Err(plane_error(error)),
        }
    }

    /// Every status change, log line and progress report from now on, each
    /// run's statuses in their order.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// How the store and the executors are.
    pub async fn health(&self) -> Health {
        // A lookup by primary key: cheap however many runs there are.
        let nobody = RunId::from_str("00000000-0000-0000-0000-000000000000").unwrap_or_default();
        let store = match self.client.get(nobody).await {
            Ok(_) | Err(ClientError::Store(store::Error::NotFound(_))) => {
                proto::Component { available: true, detail: "answers".to_owned() }
            }
            Err(error) => {
                tracing::warn!(%error, "taskflow health: the store does not answer");
                proto::Component { available: false, detail: "does not answer".to_owned() }
            }
        };
        let executors = self.executors().await;
        Health { status: if store.available { "ok" } else { "unavailable" }.to_owned(), store, executors }
    }
}

/// Why the control plane refused or failed; the HTTP edge turns each into
/// its status code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaneError {
    /// No task has this title (404).
    #[error("unknown task `{0}`")]
    UnknownTask(String),
    /// No run has this id (404).
    #[error("no run with id `{0}`")]
    NotFound(String),
    /// The request does not fit: a payload against the task's schema, an
    /// executor this server lacks (422).
    #[error("{message}")]
    Invalid {
        /// The whole problem in one sentence.
        message: String,
        /// Each problem at its path (`payload.b`).
        issues: Vec<FieldIssue>,
    },
    /// The change is not allowed now: an illegal status transition, an
    /// active run deleted without force, a reused idempotency key (409).
    #[error("{0}")]
    Conflict(String),
    /// A credential of the request's body was refused: a provision token
    /// unknown, used or expired (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The store or an executor is not reachable now; try again (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store has no room left (its disk or size limit is full) (507).
    #[error("{0}")]
    StoreFull(String),
    /// Stored data the server cannot read back, a run's record damaged
    /// (500, with this message: it names the run, and retrying cannot help).
    #[error("{0}")]
    Corrupt(String),
    /// A fault of the server (500; the detail is logged, not sent).
    #[error("{0}")]
    Internal(String),
}

/// Which runs `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only runs in one of these statuses; empty for any.
    pub statuses: Vec<proto::RunStatus>,
    /// Only runs of this task.
    pub task_title: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Skipping this many.
    pub offset: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_asks_this_engines_executors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(taskflow_core::store::SqliteStore::open_in(dir.path()).unwrap());
        let mut config = taskflow_core::engine::EngineConfig::default();
        config.docker.host = Some("tcp://127.0.0.1:9".to_owned());
        let engine = taskflow_core::engine::Engine::start(store, config).unwrap();
        let plane = Plane::new(Client::new(engine.clone()));
        let health = plane.health().await;
        assert_eq!(health.status, "ok");
        let docker = health.executors.iter().find(|e| e.name == "docker").unwrap();
        assert!(!docker.available && docker.detail.contains("127.0.0.1:9"), "the engine's own host: {docker:?}");
        engine.shutdown(Duration::ZERO).await;
    }
}
