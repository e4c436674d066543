//! [`Plane`]: `taskflow`'s implementation of the web layer's
//! [`ControlPlane`] port, over a [`Client`] and the registry — the
//! translation between the core's types and the wire's.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use taskflow_web::port::{
    self, ControlPlane, Event, ExecutorHealth, FieldIssue, Function, FunctionOptions, Health, ListQuery, PortError,
    SubmitRequest, TaskPage, TaskRun,
};
use taskflow_web::time::rfc3339;
use tokio::sync::broadcast;

use crate::client::{Client, ClientError, SubmitOptions};
use crate::engine::{RunEvent, StatusOrder};
use crate::registry::{self, ExecutorKind, TaskDef};
use crate::run::{Run, RunId, RunStatus};
use crate::store::{self, RunFilter, StoredLogLine};

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
                            if let Some(event) = wire_event(event) {
                                let _ = sink.send(event);
                            }
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
            None => crate::executor::availability().await,
        };
        let executors: Vec<ExecutorHealth> = availability
            .into_iter()
            .map(|a| ExecutorHealth { name: a.kind.as_str().to_owned(), available: a.available, detail: a.detail })
            .collect();
        *cached = Some((tokio::time::Instant::now(), executors.clone()));
        executors
    }
}

/// An event in wire form; `None` for a kind of event the wire has no word
/// for yet (`RunEvent` may grow).
fn wire_event(event: RunEvent) -> Option<Event> {
    Some(match event {
        RunEvent::Status(run) => Event::Status { task: Box::new(wire_run(*run)) },
        RunEvent::Log(line) => Event::Log { line: wire_line(line) },
        RunEvent::Progress { run_id, progress } => {
            Event::Progress { task_id: run_id.to_string(), done: progress.done, total: progress.total }
        }
        RunEvent::Deleted(id) => Event::Deleted { task_id: id.to_string() },
        _ => return None,
    })
}

/// A run as the wire shows it.
pub fn wire_run(run: Run) -> TaskRun {
    TaskRun {
        task_id: run.id.to_string(),
        task_title: run.task_title,
        status: run.status.as_str().to_owned(),
        payload: run.payload,
        result: run.result,
        error: run.error.map(|e| port::RunFailure { kind: e.kind, message: e.message }),
        attempt: run.attempt,
        max_attempts: run.max_attempts,
        executor: run.executor.as_str().to_owned(),
        priority: run.priority,
        created_at: rfc3339(run.created_at.millis()),
        started_at: run.started_at.map(|t| rfc3339(t.millis())),
        finished_at: run.finished_at.map(|t| rfc3339(t.millis())),
        idempotency_key: run.idempotency_key,
        worker_id: run.worker_id,
    }
}

fn wire_line(line: StoredLogLine) -> port::LogLine {
    port::LogLine {
        task_id: line.run_id.to_string(),
        seq: line.seq,
        at: rfc3339(line.at.millis()),
        level: line.level.to_string(),
        message: line.message,
    }
}

/// A task definition as the wire shows it.
pub fn wire_function(def: &TaskDef) -> Function {
    let options = def.options();
    Function {
        title: def.title().to_owned(),
        description: def.description().to_owned(),
        signature: def.signature().to_owned(),
        tags: options.tags.iter().map(|t| (*t).to_owned()).collect(),
        is_async: def.is_async(),
        options: FunctionOptions {
            timeout_ms: options.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            retries: options.retries,
            retry_delay_ms: u64::try_from(options.retry_delay.as_millis()).unwrap_or(u64::MAX),
            concurrency: options.concurrency,
            executor: options.executor.as_str().to_owned(),
        },
        args_schema: def.args_schema().clone(),
        output_schema: def.output_schema().clone(),
    }
}

fn parse_id(task_id: &str) -> Result<RunId, PortError> {
    RunId::from_str(task_id).map_err(|_| PortError::NotFound(task_id.to_owned()))
}

fn port_error(error: ClientError) -> PortError {
    match error {
        ClientError::UnknownTask(title) => PortError::UnknownTask(title),
        ClientError::Payload(payload) => PortError::Invalid {
            message: payload.to_string(),
            issues: payload.issues.into_iter().map(|i| FieldIssue { path: i.path, message: i.message }).collect(),
        },
        error @ ClientError::ExecutorUnavailable(_) => {
            let message = error.to_string();
            PortError::Invalid {
                issues: vec![FieldIssue { path: "executor".to_owned(), message: message.clone() }],
                message,
            }
        }
        ClientError::Encode { argument, message } => PortError::Invalid {
            message: format!("argument `{argument}`: {message}"),
            issues: vec![FieldIssue { path: format!("payload.{argument}"), message }],
        },
        ClientError::Store(error) => store_error(error),
        other => PortError::Internal(other.to_string()),
    }
}

fn store_error(error: store::Error) -> PortError {
    match error {
        store::Error::NotFound(id) => PortError::NotFound(id.to_string()),
        error @ (store::Error::IllegalTransition { .. }
        | store::Error::Active(_)
        | store::Error::IdempotencyConflict { .. }
        | store::Error::StaleAttempt { .. }) => PortError::Conflict(error.to_string()),
        store::Error::Database(error) => database_error(&error),
        store::Error::Closed => PortError::Unavailable("the server is shutting down".to_owned()),
        other => PortError::Internal(other.to_string()),
    }
}

/// A database's failure by its kind: worth retrying (503, the database's
/// words in the server's log only), out of room (507), a damaged run's
/// record (500 naming the run: retrying reads the same bytes), or a fault
/// of the server (500).
fn database_error(error: &store::DatabaseError) -> PortError {
    match error.kind() {
        kind if kind.is_transient() => {
            tracing::warn!(%error, "taskflow control plane: the store failed");
            PortError::Unavailable("the store is not available right now; try again shortly".to_owned())
        }
        store::DatabaseErrorKind::Full => {
            tracing::error!(%error, "taskflow control plane: the store is full");
            PortError::StoreFull(
                "the store is full (its disk, or its size limit): nothing was stored; free space and retry".to_owned(),
            )
        }
        store::DatabaseErrorKind::Corrupt => {
            tracing::error!(%error, "taskflow control plane: stored data is damaged");
            let what = match error.run() {
                Some(run) => format!("the stored record of run {run} is damaged"),
                None => "stored data is damaged".to_owned(),
            };
            PortError::Corrupt(format!(
                "{what} and cannot be read; retrying will not help: restore the database from a backup, \
                 or delete the run"
            ))
        }
        _ => PortError::Internal(error.to_string()),
    }
}

#[async_trait::async_trait]
impl ControlPlane for Plane {
    fn functions(&self) -> Vec<Function> {
        let mut functions: Vec<Function> = registry::tasks().map(wire_function).collect();
        functions.sort_by(|a, b| a.title.cmp(&b.title));
        functions
    }

    fn function(&self, title: &str) -> Option<Function> {
        registry::task_def(title).map(wire_function)
    }

    async fn submit(&self, request: SubmitRequest) -> Result<TaskRun, PortError> {
        let mut options = SubmitOptions::default();
        options.priority = request.priority;
        if let Some(executor) = &request.executor {
            let kind = ExecutorKind::from_str(executor).map_err(|message| PortError::Invalid {
                message: message.clone(),
                issues: vec![FieldIssue { path: "executor".to_owned(), message }],
            })?;
            options.executor = Some(kind);
        }
        if !request.payload.is_object() {
            let message = "payload: expected an object of the task's arguments".to_owned();
            return Err(PortError::Invalid {
                issues: vec![FieldIssue { path: "payload".to_owned(), message: "expected an object".to_owned() }],
                message,
            });
        }
        options.delay = request.delay_seconds.map(Duration::from_secs);
        options.no_dedup = !request.unique;
        options.idempotency_key = request.idempotency_key;
        self.client.submit_with(&request.task_title, request.payload, options).await.map(wire_run).map_err(port_error)
    }

    async fn get(&self, task_id: &str) -> Result<TaskRun, PortError> {
        let id = parse_id(task_id)?;
        self.client.get(id).await.map(wire_run).map_err(port_error)
    }

    async fn list(&self, query: ListQuery) -> Result<TaskPage, PortError> {
        let status = match query.status.as_deref() {
            Some(status) => Some(RunStatus::from_str(status).map_err(|message| PortError::Invalid {
                message: message.clone(),
                issues: vec![FieldIssue { path: "status".to_owned(), message }],
            })?),
            None => None,
        };
        let mut filter = RunFilter::default();
        filter.status = status;
        filter.task_title = query.task_title;
        filter.limit = Some(query.limit);
        filter.offset = Some(query.offset);
        let page = self.client.list(filter).await.map_err(port_error)?;
        Ok(TaskPage {
            items: page.items.into_iter().map(wire_run).collect(),
            total: page.total,
            limit: query.limit,
            offset: query.offset,
        })
    }

    async fn cancel(&self, task_id: &str) -> Result<TaskRun, PortError> {
        let id = parse_id(task_id)?;
        self.client.cancel(id).await.map(wire_run).map_err(port_error)
    }

    async fn delete(&self, task_id: &str, force: bool) -> Result<(), PortError> {
        let id = parse_id(task_id)?;
        self.client.delete(id, force).await.map_err(port_error)
    }

    async fn logs(&self, task_id: &str, after: u64, limit: u32) -> Result<Vec<port::LogLine>, PortError> {
        let id = parse_id(task_id)?;
        let lines = self.client.logs(id, after, limit).await.map_err(port_error)?;
        Ok(lines.into_iter().map(wire_line).collect())
    }

    async fn wait(&self, task_id: &str, timeout: Duration) -> Result<TaskRun, PortError> {
        let id = parse_id(task_id)?;
        match self.client.wait(id, timeout).await {
            Ok(run) => Ok(wire_run(run)),
            Err(ClientError::WaitTimedOut { .. }) => self.get(task_id).await,
            Err(error) => Err(port_error(error)),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn health(&self) -> Health {
        // A lookup by primary key: cheap however many runs there are.
        let nobody = RunId::from_str("00000000-0000-0000-0000-000000000000").unwrap_or_default();
        let store = match self.client.get(nobody).await {
            Ok(_) | Err(ClientError::Store(store::Error::NotFound(_))) => {
                port::Component { available: true, detail: "answers".to_owned() }
            }
            Err(error) => {
                tracing::warn!(%error, "taskflow health: the store does not answer");
                port::Component { available: false, detail: "does not answer".to_owned() }
            }
        };
        let executors = self.executors().await;
        Health { status: if store.available { "ok" } else { "unavailable" }.to_owned(), store, executors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_report_is_a_conflict_at_the_edge() {
        // The edge answers a conflict with 409 (`taskflow_web::error`).
        let stale = store::Error::StaleAttempt { id: RunId::new(), attempt: 1, worker_id: "w".into() };
        assert!(matches!(store_error(stale), PortError::Conflict(message) if message.contains("attempt 1")));
    }

    #[test]
    fn a_database_failure_answers_by_its_kind() {
        use store::{DatabaseError, DatabaseErrorKind as Kind};
        let failure =
            |kind| store::Error::from(DatabaseError::new(kind, "cannot begin a transaction: database is locked"));
        for kind in [Kind::Unavailable, Kind::Busy, Kind::Deadlock] {
            // The database's words stay in the log.
            assert!(
                matches!(store_error(failure(kind)), PortError::Unavailable(m) if !m.contains("locked")),
                "{kind:?}"
            );
        }
        assert!(matches!(store_error(failure(Kind::Full)), PortError::StoreFull(_)));
        assert!(matches!(store_error(failure(Kind::Other)), PortError::Internal(_)));
        assert!(matches!(store_error(failure(Kind::Conflict)), PortError::Internal(_)));
        let id = RunId::new();
        let corrupt =
            store::Error::from(DatabaseError::new(Kind::Corrupt, "the stored payload is invalid").for_run(id));
        assert!(
            matches!(store_error(corrupt), PortError::Corrupt(m) if m.contains(&id.to_string()) && m.contains("retrying will not help"))
        );
    }

    #[cfg(feature = "docker")]
    #[tokio::test]
    async fn health_asks_this_engines_executors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open_in(dir.path()).unwrap());
        let mut config = crate::engine::EngineConfig::default();
        config.docker.host = Some("tcp://127.0.0.1:9".to_owned());
        let engine = crate::engine::Engine::start(store, config).unwrap();
        let plane = Plane::new(Client::new(engine.clone()));
        let health = plane.health().await;
        assert_eq!(health.status, "ok");
        let docker = health.executors.iter().find(|e| e.name == "docker").unwrap();
        assert!(!docker.available && docker.detail.contains("127.0.0.1:9"), "the engine's own host: {docker:?}");
        engine.shutdown(Duration::ZERO).await;
    }
}
