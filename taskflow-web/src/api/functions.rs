//! `/api/v1/functions`: the tasks this server runs, with their schemas, and
//! the synchronous call of one.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use taskflow_proto::{Function, SubmitRequest, TaskRun};

/// How long `call` waits unless told, and at most.
pub(crate) const CALL_WAIT: (u64, u64) = (30, 300);

/// The tasks of this server.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    /// Every task, by title.
    pub items: Vec<Function>,
}

/// Options of a synchronous call.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallQuery {
    /// The seconds to wait for the result, an integer from 0 to 300
    /// (default 30).
    #[param(minimum = 0, maximum = 300)]
    pub timeout: Option<u64>,
    /// `thread`, `process` or `docker`; the task's default when absent.
    #[param(value_type = Option<taskflow_proto::ExecutorKind>)]
    pub executor: Option<String>,
}

/// `GET /api/v1/functions`
#[utoipa::path(
    get,
    path = "/api/v1/functions",
    operation_id = "list_functions",
    tag = "functions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every task", body = FunctionList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Json<FunctionList> {
    Json(FunctionList { items: state.plane.functions() })
}

/// `GET /api/v1/functions/{title}`
#[utoipa::path(
    get,
    path = "/api/v1/functions/{title}",
    operation_id = "get_function",
    tag = "functions",
    security(("bearer" = [])),
    params(("title" = String, Path, description = "The task's title")),
    responses(
        (status = 200, description = "The task", body = Function),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(title): ApiPath<String>,
) -> Result<Json<Function>, ApiError> {
    state.plane.function(&title).map(Json).ok_or_else(|| ApiError::not_found(format!("unknown task `{title}`")))
}

/// `POST /api/v1/functions/{title}/call`: submits the body as the payload
/// and waits; 200 with the final run, or 202 with the run still going when
/// the wait ends.
#[utoipa::path(
    post,
    path = "/api/v1/functions/{title}/call",
    operation_id = "call_function",
    tag = "functions",
    security(("bearer" = [])),
    params(("title" = String, Path, description = "The task's title"), CallQuery),
    request_body(content = Object, description = "The payload: the task's arguments"),
    responses(
        (status = 200, description = "The run finished: completed, failed or cancelled", body = TaskRun),
        (status = 202, description = "Still running when the wait ended; follow `task_id`", body = TaskRun),
        (status = 400, description = "Malformed JSON or query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The payload does not fit the task's schema", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
        (status = 507, description = "The store is full; nothing was stored", body = ErrorBody),
    )
)]
pub(crate) async fn call(
    State(state): State<AppState>,
    ApiPath(title): ApiPath<String>,
    ApiQuery(query): ApiQuery<CallQuery>,
    ApiJson(payload): ApiJson<Value>,
) -> Result<(StatusCode, Json<TaskRun>), ApiError> {
    let wait = query.timeout.unwrap_or(CALL_WAIT.0);
    if wait > CALL_WAIT.1 {
        return Err(ApiError::bad_request(format!(
            "timeout={wait} is too long; wait at most {} seconds, then follow the task_id",
            CALL_WAIT.1
        )));
    }
    let mut request = SubmitRequest::new(title, payload);
    request.executor = query.executor;
    // A call wants its own result: never the result of someone else's run.
    request.unique = false;
    let submitted = state.plane.submit(request).await?;
    let run = state.plane.wait(&submitted.task_id, Duration::from_secs(wait)).await?;
    let status = if run.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(run)))
}

/// The `/api/v1/functions` routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/functions", get(list))
        .route("/api/v1/functions/{title}", get(show))
        .route("/api/v1/functions/{title}/call", post(call))
}
