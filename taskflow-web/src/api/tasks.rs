//! `/api/v1/tasks`: runs — submit, list, get, download the result, logs,
//! cancel, delete.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use taskflow_proto::{FieldIssue, LogLine, RunStatus, SubmitRequest, TaskPage, TaskRun};

use crate::plane::ListQuery;

/// The largest page `list` returns.
pub(crate) const MAX_PAGE: u32 = 500;
/// The page `list` returns unless told.
pub(crate) const DEFAULT_PAGE: u32 = 50;
/// The most log lines one `logs` call returns: the store's limit.
pub(crate) const MAX_LOG_PAGE: u32 = taskflow_core::store::MAX_LOG_LIMIT;

/// Filters and page of `GET /api/v1/tasks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Statuses, comma-separated (`completed,failed`): `pending`, `running`,
    /// `completed`, `failed` or `cancelled`; runs in any of them.
    #[param(
        pattern = r"^(pending|running|completed|failed|cancelled)(,(pending|running|completed|failed|cancelled))*$"
    )]
    pub status: Option<String>,
    /// A task's title: only runs of this task.
    pub task_title: Option<String>,
    /// The page size, an integer from 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// How many runs to skip, an integer from 0 (the default) to 2147483647.
    #[param(minimum = 0, maximum = 2_147_483_647)]
    pub offset: Option<u32>,
}

impl ListParams {
    /// Checks the filters and turns them into the port's query.
    pub(crate) fn into_query(self) -> Result<ListQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::bad_request(format!("limit={limit}: ask for 1 to {MAX_PAGE} runs a page")));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > i32::MAX as u32 {
            return Err(ApiError::bad_request(format!("offset={offset}: at most {}", i32::MAX)));
        }
        let mut statuses = Vec::new();
        // Exactly the documented pattern: no empty word, no spaces.
        for word in self.status.iter().flat_map(|list| list.split(',')) {
            let status: RunStatus = word.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `status={word}` is not accepted; `status` takes pending, running, completed, \
                     failed or cancelled, several comma-separated"
                ))
            })?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
        Ok(ListQuery { statuses, task_title: self.task_title.filter(|t| !t.is_empty()), limit, offset })
    }
}

/// Which log lines `logs` returns.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// A sequence number, an integer from 0 (the default: from the start):
    /// only lines after it.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub after: Option<u64>,
    /// The most lines to return, an integer from 1 to 10000 (the default).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// A run's log lines.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// The run.
    pub task_id: String,
    /// The lines, in order.
    pub items: Vec<LogLine>,
    /// Pass as `after` to get the lines that follow.
    pub next_after: u64,
}

/// `?force=true` deletes an active run as well.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `true` to delete even a pending or running run (it is stopped), or
    /// `false` (the default).
    pub force: Option<bool>,
}

/// `POST /api/v1/tasks`: validates and stores a run; 202 with it (or with
/// the existing run a `unique` or idempotent submit found).
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    operation_id = "submit_task",
    tag = "tasks",
    security(("bearer" = [])),
    description = "Validates the payload against the task's schema and stores a run. An `Idempotency-Key` header works as the body's `idempotency_key` (when both are sent they must be equal).",
    request_body = SubmitRequest,
    responses(
        (status = 202, description = "Stored (or found); it runs when a worker claims it", body = TaskRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for another submit", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The payload does not fit the task's schema, or a field is wrong", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
        (status = 507, description = "The store is full; nothing was stored", body = ErrorBody),
    )
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(mut request): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    if let Some(value) = headers.get("idempotency-key") {
        let key = value.to_str().map_err(|_| ApiError::bad_request("the Idempotency-Key header must be ASCII"))?;
        match &request.idempotency_key {
            Some(body_key) if body_key != key => {
                return Err(ApiError::invalid(
                    "the Idempotency-Key header and the body's idempotency_key differ; send one",
                    &[FieldIssue { path: "idempotency_key".to_owned(), message: "differs from the header".to_owned() }],
                ));
            }
            _ => request.idempotency_key = Some(key.to_owned()),
        }
    }
    let submitted = state.plane.submit(request).await?;
    let location = format!("/api/v1/tasks/{}", submitted.task_id);
    let mut response = (StatusCode::ACCEPTED, Json(submitted)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/tasks`: runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of runs", body = TaskPage),
        (status = 400, description = "Unknown status or bad page", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<TaskPage>, ApiError> {
    Ok(Json(state.plane.list(params.into_query()?).await?))
}

/// `GET /api/v1/tasks/{task_id}`
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}",
    operation_id = "get_task",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = TaskRun),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<TaskRun>, ApiError> {
    Ok(Json(state.plane.get(&task_id).await?))
}

/// `GET /api/v1/tasks/{task_id}/download`: the result as a file — a string
/// result as text, anything else as JSON.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/download",
    operation_id = "download_task_result",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The result as an attachment: JSON, or text for a string result",
            content((serde_json::Value = "application/json"), (String = "text/plain"))),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has no result (not completed)", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run = state.plane.get(&task_id).await?;
    let Some(result) = run.result.filter(|_| run.status == RunStatus::Completed) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("run {task_id} has no result to download: it is {}", run.status),
        ));
    };
    let stem: String = run
        .task_title
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    let (body, content_type, extension) = match result {
        serde_json::Value::String(text) => (text, "text/plain; charset=utf-8", "txt"),
        other => (serde_json::to_string_pretty(&other).unwrap_or_default(), "application/json", "json"),
    };
    let disposition = format!("attachment; filename=\"{stem}-{}.{extension}\"", run.task_id);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(ApiError::internal)?),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/tasks/{task_id}/logs`
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}/logs",
    operation_id = "get_task_logs",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id"), LogParams),
    responses(
        (status = 200, description = "The run's log lines", body = LogPage),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Json<LogPage>, ApiError> {
    let after = params.after.unwrap_or(0);
    if after > i64::MAX as u64 {
        return Err(ApiError::bad_request(format!("after={after}: at most {}", i64::MAX)));
    }
    let limit = params.limit.unwrap_or(MAX_LOG_PAGE);
    if limit == 0 || limit > MAX_LOG_PAGE {
        return Err(ApiError::bad_request(format!("limit={limit}: ask for 1 to {MAX_LOG_PAGE} lines")));
    }
    // A deleted or unknown run is a 404, not an empty log.
    state.plane.get(&task_id).await?;
    let items = state.plane.logs(&task_id, after, limit).await?;
    let next_after = items.last().map_or(after, |l| l.seq);
    Ok(Json(LogPage { task_id, items, next_after }))
}

/// `POST /api/v1/tasks/{task_id}/cancel`
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{task_id}/cancel",
    operation_id = "cancel_task",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Cancelled", body = TaskRun),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is already final", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<TaskRun>, ApiError> {
    Ok(Json(state.plane.cancel(&task_id).await?))
}

/// `DELETE /api/v1/tasks/{task_id}`
#[utoipa::path(
    delete,
    path = "/api/v1/tasks/{task_id}",
    operation_id = "delete_task",
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The run's id"), DeleteParams),
    responses(
        (status = 204, description = "Deleted with its log"),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is active; cancel it first or pass force=true", body = ErrorBody),
        (status = 503, description = "The store is not reachable", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    state.plane.delete(&task_id, params.force.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `/api/v1/tasks` routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tasks", post(submit).get(list))
        .route("/api/v1/tasks/{task_id}", get(show).delete(delete))
        .route("/api/v1/tasks/{task_id}/download", get(download))
        .route("/api/v1/tasks/{task_id}/logs", get(logs))
        .route("/api/v1/tasks/{task_id}/cancel", post(cancel))
}
