//! Remote workers at the HTTP edge: provision tokens, registration
//! (`POST /api/v1/polling/register`) and the list of workers
//! (`GET /api/v1/workers`).
//!
//! Registration is the one route a user's token does not open: the
//! provision token in its body is the credential, used up by the
//! registration it allows. Everything else a worker does goes through
//! routes that take only its worker token.

mod limit;
mod source;
pub mod tokens;
pub(crate) mod work;

pub use source::{HttpSource, register as register_at};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use taskflow_core::registry;
use taskflow_core::run::Timestamp;
use taskflow_core::store::{self, NewProvisionToken, Registration, Store, WorkerProfile, WorkerRecord};
use taskflow_proto::worker::PROTOCOL_VERSION;
use taskflow_proto::{RefusedTask, RegisterRequest, Registered, TaskDigest, WorkerInfo, WorkerState};

use crate::AppState;
use crate::auth::gate::ConnectInfoOpt;
use crate::convert::store_error;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// How long after its last word a worker counts as lost, in leases.
const LOST_AFTER_LEASES: u32 = 2;

/// The most tasks, queues and executors a registration may name.
const MAX_LISTED: usize = 10_000;

/// Stores a new provision token for a worker called `name`, good for one
/// registration within `ttl`; returns the token, which exists nowhere else.
pub async fn create_provision_token(store: &dyn Store, name: &str, ttl: Duration) -> Result<String, ProvisionError> {
    check_name(name).map_err(ProvisionError::Name)?;
    if ttl.is_zero() {
        return Err(ProvisionError::Ttl);
    }
    let token = tokens::mint(tokens::PROVISION_PREFIX);
    let now = Timestamp::now();
    store
        .add_provision_token(NewProvisionToken {
            token_hash: tokens::digest(&token),
            name: name.to_owned(),
            created_at: now,
            expires_at: now.plus(ttl),
        })
        .await?;
    Ok(token)
}

/// Why a provision token was not created.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The worker's name does not fit.
    #[error("{0}")]
    Name(String),
    /// A token that expires at once.
    #[error("the token's time to live must be more than zero, e.g. `--ttl 1h`")]
    Ttl,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Names appear on the Workers page and in logs: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "the worker name `{name}` is not accepted: use 1 to 64 letters, digits, `-`, `_` or `.` (e.g. `build-box`)"
        ));
    }
    Ok(())
}

/// `POST /api/v1/polling/register`: a provision token for a worker token.
#[utoipa::path(
    post,
    path = "/api/v1/polling/register",
    operation_id = "register_worker",
    tag = "workers",
    description = "Registers a remote worker with a one-time provision token (from `worker-token create`), which this uses up. Needs no bearer token: the provision token is the credential. The answer's `worker_token` is shown once.",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "The provision token is unknown, used or expired", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is wrong: the protocol version, an executor, a name", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address; retry after the Retry-After seconds", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    ConnectInfoOpt(ip): ConnectInfoOpt,
    Extension(limiter): Extension<Arc<limit::Limiter>>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    if let Err(wait) = limiter.admit(ip, tokio::time::Instant::now()) {
        let seconds = wait.as_secs().max(1);
        let message =
            format!("over {} registrations a minute from this address; try again in {seconds}s", limit::PER_WINDOW);
        let mut response = ApiError::too_many_requests(message).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    let profile = check_registration(&request)?;
    let (accepted, refused) = judge_tasks(&request.tasks);
    let token = tokens::mint(tokens::WORKER_PREFIX);
    let registration = Registration {
        provision_hash: tokens::digest(&request.provision_token),
        token_hash: tokens::digest(&token),
        worker_id: format!("worker-{}", crate::jwt::random_id()),
        profile: WorkerProfile {
            tasks: accepted.clone(),
            refused: refused.iter().map(|r| (r.title.clone(), r.reason.clone())).collect(),
            ..profile
        },
        now: Timestamp::now(),
    };
    let store = state.plane.client().store();
    let worker = store.register_worker(registration).await.map_err(|e| ApiError::from(store_error(e)))?;
    tracing::info!(worker = %worker.id, name = %worker.name, host = %worker.profile.host, "taskflow: a worker registered");
    let registered = Registered { worker_id: worker.id, name: worker.name, worker_token: token, accepted, refused };
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

/// The profile a registration describes, or a 422 naming what is wrong.
fn check_registration(request: &RegisterRequest) -> Result<WorkerProfile, ApiError> {
    let invalid = work::invalid;
    if request.protocol_version != PROTOCOL_VERSION {
        let mismatch =
            taskflow_proto::worker::VersionMismatch { worker: request.protocol_version, server: PROTOCOL_VERSION };
        return Err(invalid("protocol_version", mismatch.to_string()));
    }
    for (path, text) in [("host", &request.host), ("version", &request.version)] {
        if text.is_empty() || text.chars().count() > 255 || text.chars().any(char::is_control) {
            return Err(invalid(path, "give 1 to 255 printable characters".to_owned()));
        }
    }
    if request.executors.is_empty() {
        return Err(invalid("executors", "name at least one: `thread`, `process` or `docker`".to_owned()));
    }
    if [request.executors.len(), request.tasks.len(), request.queues.len()].iter().any(|n| *n > MAX_LISTED) {
        return Err(invalid("body", format!("name at most {MAX_LISTED} executors, tasks and queues each")));
    }
    let mut executors = Vec::new();
    for kind in request.executors.iter().map(|kind| taskflow_core::wire::core_executor(*kind)) {
        if !executors.contains(&kind) {
            executors.push(kind);
        }
    }
    let mut queues: Vec<String> = Vec::new();
    for (i, taskflow_proto::QueueName(queue)) in request.queues.iter().enumerate() {
        check_name(queue).map_err(|_| {
            invalid(&format!("queues[{i}]"), format!("`{queue}`: use 1 to 64 letters, digits, `-`, `_` or `.`"))
        })?;
        if !queues.contains(queue) {
            queues.push(queue.clone());
        }
    }
    if queues.is_empty() {
        queues.push("default".to_owned());
    }
    Ok(WorkerProfile {
        host: request.host.clone(),
        version: request.version.clone(),
        executors,
        tasks: Vec::new(),
        queues,
        refused: Vec::new(),
    })
}

/// Which of a worker's tasks it may be given runs of: those this server
/// has with the same argument schema.
fn judge_tasks(tasks: &[TaskDigest]) -> (Vec<String>, Vec<RefusedTask>) {
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        let reason = match registry::task_def(&task.title) {
            None => format!("this server has no task `{}`: run the same build of the app on both", task.title),
            Some(def) if tokens::schema_digest(def.args_schema()) != task.schema_digest => format!(
                "the arguments of `{}` differ between this worker's build and the server's: run the same build on both",
                task.title
            ),
            Some(_) => {
                if !accepted.contains(&task.title) {
                    accepted.push(task.title.clone());
                }
                continue;
            }
        };
        refused.push(RefusedTask { title: task.title.clone(), reason });
    }
    (accepted, refused)
}

/// `GET /api/v1/workers`: the registered workers, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/workers",
    operation_id = "list_workers",
    tag = "workers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The registered workers", body = Vec<WorkerInfo>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<WorkerInfo>>, ApiError> {
    let workers = state.plane.client().store().workers().await.map_err(|e| ApiError::from(store_error(e)))?;
    let lease = state.plane.client().engine().map_or(Duration::from_secs(30), |engine| engine.config().lease);
    let now = Timestamp::now();
    Ok(Json(workers.into_iter().map(|worker| worker_info(worker, now, lease)).collect()))
}

/// A worker as the API shows it: lost when not heard from within
/// [`LOST_AFTER_LEASES`] leases.
pub(crate) fn worker_info(worker: WorkerRecord, now: Timestamp, lease: Duration) -> WorkerInfo {
    let lost_before = Timestamp(now.0.saturating_sub(duration_ms(lease.saturating_mul(LOST_AFTER_LEASES))));
    let state = match worker.revoked_at {
        Some(_) => WorkerState::Revoked,
        None if worker.last_seen < lost_before => WorkerState::Lost,
        None => WorkerState::Active,
    };
    let rfc3339 = |t: Timestamp| taskflow_core::wire::rfc3339(t.millis());
    WorkerInfo {
        worker_id: worker.id,
        name: worker.name,
        host: worker.profile.host,
        version: worker.profile.version,
        executors: worker.profile.executors.iter().map(|e| e.as_str().to_owned()).collect(),
        tasks: worker.profile.tasks,
        queues: worker.profile.queues,
        refused: worker.profile.refused.into_iter().map(|(title, reason)| RefusedTask { title, reason }).collect(),
        registered_at: rfc3339(worker.registered_at),
        last_seen: rfc3339(worker.last_seen),
        state,
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The routes of workers: registration, public (its body the
/// credential), and the rest behind the worker gate; or, when this server
/// takes no remote workers, a 403 for each that names the mode.
pub(crate) fn worker_router(state: AppState, enabled: bool) -> Router<AppState> {
    if !enabled {
        let refuse = || async {
            ApiError::forbidden(
                "this server executes its runs itself (`--assignment-mode push`) and takes no remote workers; \
                 start it with `--assignment-mode hybrid` or `polling`",
            )
        };
        let mut refusing = Router::new();
        for path in WORKER_PATHS {
            refusing = refusing.route(path, axum::routing::any(refuse));
        }
        return refusing;
    }
    let working = Router::new()
        .route("/api/v1/polling/config", get(work::config))
        .route("/api/v1/polling/config/statuses", get(work::statuses))
        .route("/api/v1/polling/claim", post(work::claim))
        .route("/api/v1/polling/update", post(work::update))
        .route_layer(axum::middleware::from_fn_with_state(state, work::require_worker));
    Router::new()
        .route("/api/v1/polling/register", post(register))
        .layer(Extension(Arc::new(limit::Limiter::default())))
        .merge(working)
}

/// The routes a worker calls.
const WORKER_PATHS: [&str; 5] = [
    "/api/v1/polling/register",
    "/api/v1/polling/config",
    "/api/v1/polling/config/statuses",
    "/api/v1/polling/claim",
    "/api/v1/polling/update",
];

/// The routes behind the API's gate: the workers, and revoking one.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/workers", get(list)).route("/api/v1/polling/revoke", post(work::revoke))
}
