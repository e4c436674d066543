//! The control plane of TaskFlow: REST API, web UI and WebSockets.
//!
//! This crate defines the port it serves, [`ControlPlane`], with its own
//! wire types, and never depends on `taskflow`: `taskflow` implements the
//! port, which keeps the crate graph acyclic and this crate testable alone.
//! [`router`] builds the whole site for a port and an [`Auth`]; [`serve`]
//! runs it on a listener.
//!
//! Every route but `/health` needs a token: a bearer token (an access JWT
//! from `POST /token`, or a configured API key) or the session cookie the
//! login page sets.

pub mod api;
pub mod auth;
pub mod error;
pub mod jwt;
pub mod openapi;
pub mod port;
pub mod time;
pub mod ui;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use auth::{Auth, AuthConfig, AuthConfigError};
pub use error::ApiError;
pub use port::{ControlPlane, PortError};

/// The version of the REST API this crate serves, as in `/api/v1`.
pub const API_VERSION: &str = "v1";

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebConfig {
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { max_body_bytes: 1024 * 1024 }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The port.
    pub plane: Arc<dyn ControlPlane>,
    /// Who may do what.
    pub auth: Arc<Auth>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("auth", &self.auth).finish_non_exhaustive()
    }
}

/// The whole site: `/health`, `/token`, the API, the WebSockets, the UI and
/// its static files, with security headers on every response.
pub fn router(plane: Arc<dyn ControlPlane>, auth: Arc<Auth>, config: &WebConfig) -> Router {
    let state = AppState { plane, auth };
    let api = api::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::require_api));
    let pages = ui::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::require_session));
    Router::new()
        .route("/health", get(health))
        .merge(auth::router())
        .merge(api)
        .merge(pages)
        .merge(ui::public_router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /health`: no auth; 200 when the store answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = port::Health),
        (status = 503, description = "The store does not answer", body = port::Health),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<port::Health>) {
    let health = state.plane.health().await;
    let status = if health.store.available { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(health))
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/api/") || path.starts_with("/token") {
        ApiError::not_found(format!("no route `{} {path}`; see /api/v1/openapi.json", request.method())).into_response()
    } else {
        ui::not_found_page(&path)
    }
}

async fn method_not_allowed(request: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("`{}` is not allowed on `{}`; see /api/v1/openapi.json", request.method(), request.uri().path()),
    )
    .into_response()
}

/// No inline script or style, no framing, no sniffing: a title or result
/// that slipped past escaping still could not run.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}
