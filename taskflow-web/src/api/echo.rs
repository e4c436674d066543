//! `POST /api/v1/echo`: answers with the JSON it was sent, behind the same
//! token check, body limit and JSON parsing as every API route. For a
//! client to check its token, its connection and its JSON without touching
//! any run; and the HTTP stack's own cost in the benchmark (B3's ceiling),
//! since it does everything a submit does at the edge and nothing behind it.

use axum::Router;
use axum::routing::post;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiJson, ErrorBody};

/// `POST /api/v1/echo`
#[utoipa::path(
    post,
    path = "/api/v1/echo",
    operation_id = "echo",
    tag = "health",
    security(("bearer" = [])),
    description = "Answers with the JSON document it was sent. Nothing is stored or run.",
    request_body(content = Object, description = "Any JSON document"),
    responses(
        (status = 200, description = "The document sent", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
pub(crate) async fn echo(ApiJson(document): ApiJson<Value>) -> ApiJson<Value> {
    ApiJson(document)
}

/// The echo route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/echo", post(echo))
}
