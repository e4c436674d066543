//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route,
//! generated from the handlers' `#[utoipa::path]` annotations and the wire
//! types, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::AppState;
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "TaskFlow", description = "Run tasks and watch them: the control plane's REST API."),
    paths(
        crate::health,
        crate::auth::token,
        crate::auth::refresh,
        crate::api::functions::list,
        crate::api::functions::show,
        crate::api::functions::call,
        crate::api::tasks::submit,
        crate::api::tasks::list,
        crate::api::tasks::show,
        crate::api::tasks::download,
        crate::api::tasks::logs,
        crate::api::tasks::cancel,
        crate::api::tasks::delete,
        crate::ws::task_ws,
        crate::ws::events_ws,
        openapi_json,
    ),
    components(schemas(crate::port::Event, crate::port::LogLine)),
    modifiers(&BearerAuth),
    tags(
        (name = "functions", description = "The tasks this server runs"),
        (name = "tasks", description = "Runs of tasks"),
        (name = "auth", description = "Tokens"),
        (name = "health", description = "Liveness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "This document", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The document's route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}
