//! The REST API under `/api/v1`: task definitions (`functions`), runs
//! (`tasks`) and `echo`, each module a router merged here behind the API's
//! auth gate.

pub(crate) mod echo;
pub(crate) mod functions;
pub(crate) mod tasks;

use axum::Router;

use crate::AppState;

/// Every `/api/v1` route.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(functions::router())
        .merge(tasks::router())
        .merge(echo::router())
        .merge(crate::polling::router())
        .merge(crate::ws::router())
        .merge(crate::openapi::router())
}
