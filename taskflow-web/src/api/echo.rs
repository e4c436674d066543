//! `POST /api/v1/echo`: answers with the JSON object it was sent, behind the same
//! token check, body limit and JSON parsing as every API route. For a
//! client to check its token, its connection and its JSON without touching
//! any run; and the HTTP stack's own cost in the benchmark (B3's ceiling),
//! since it does everything a submit does at the edge and nothing behind it.

use axum::Router;
use axum::routing::post;
use serde_json::{Map, Value};

use crate::AppState;
use crate::error::{ApiJson, ErrorBody};

/// `POST /api/v1/echo`
#[utoipa::path(
    post,
    path = "/api/v1/echo",
    operation_id = "echo",
    tag = "health",
    security(("bearer" = [])),
    description = "Answers with the JSON object it was sent. Nothing is stored or run.",
    request_body(content = Object, description = "Any JSON object"),
    responses(
        (status = 200, description = "The object sent", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON, but not an object", body = ErrorBody),
    )
)]
pub(crate) async fn echo(ApiJson(document): ApiJson<Map<String, Value>>) -> ApiJson<Map<String, Value>> {
    ApiJson(document)
}

/// The echo route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/echo", post(echo))
}
