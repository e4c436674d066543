//! The control plane of TaskFlow: REST API, web UI and WebSockets.
//!
//! It serves the library (`taskflow-core`) through its [`Client`]: the
//! [`Plane`] does what a route asks in the wire's types (`taskflow-proto`),
//! which the core's `wire` module makes from its own (the command line
//! prints the same shapes); `convert.rs` maps the core's errors.
//! [`router`] builds the whole site for a plane and an [`Auth`]; [`serve`]
//! runs it on a listener. Only this crate knows HTTP.
//!
//! Every route but `/health` needs a token: a bearer token (an access JWT
//! from `POST /token`, or a configured API key) or the session cookie the
//! login page sets.

pub mod api;
pub mod auth;
mod body;
pub mod convert;
pub mod error;
pub mod jwt;
pub mod openapi;
pub mod plane;
pub mod polling;
pub mod ui;
mod url;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub use auth::{Auth, AuthConfig, AuthConfigError};
pub use error::ApiError;
pub use plane::{Plane, PlaneError};
pub use taskflow_core::client::Client;
/// The wire types the API speaks, for clients written in Rust.
pub use taskflow_proto as proto;

/// The version of the REST API this crate serves, as in `/api/v1`.
pub const API_VERSION: &str = "v1";

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebConfig {
    /// The largest request body accepted (413 beyond, naming the limit and
    /// `serve`'s `--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Requests handled at once by the API and the pages; more are refused
    /// at once with 503 rather than queued (`/health` is never limited).
    pub max_concurrent_requests: usize,
    /// How long a client may take to send a request's headers, and then
    /// its body, before the connection is cut (a slow client holds nothing
    /// for long).
    pub read_timeout: Duration,
    /// Whether remote workers may register and work (`/api/v1/polling/*`);
    /// when not, those routes answer 403 naming the assignment mode.
    pub remote_workers: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_body_bytes: 1024 * 1024,
            max_concurrent_requests: 512,
            read_timeout: Duration::from_secs(10),
            remote_workers: true,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// What the routes do, over the core's client.
    pub plane: Arc<Plane>,
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
/// `plane` is [`Plane::new`] over the core's [`Client`].
pub fn router(plane: Arc<Plane>, auth: Arc<Auth>, config: &WebConfig) -> Router {
    let state = AppState { plane, auth };
    let api = api::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::gate::require_api));
    let pages = ui::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::gate::require_session));
    // Beyond the cap, refuse at once: a queue would only make every
    // request slow, `/health` included.
    let shed = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is at capacity; retry shortly")
        }))
        .load_shed()
        // One semaphore for all routes (a plain `concurrency_limit` would
        // give each route its own).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(config.max_concurrent_requests.max(1)));
    let limited = Router::new()
        .merge(auth::routes::router())
        .merge(polling::worker_router(state.clone(), config.remote_workers))
        .merge(api)
        .merge(pages)
        .merge(ui::public_router())
        .layer(shed);
    Router::new()
        .route("/health", get(health))
        .merge(limited)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `body::limit` enforces the size, so a 413 can name the limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            body::BodyLimits { deadline: config.read_timeout, max_bytes: config.max_body_bytes },
            body::limit,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish (the caller bounds how long it waits).
///
/// An HTTP/1.1 server of our own over `hyper` rather than `axum::serve`,
/// for the one thing the latter lacks: a deadline on reading a request's
/// headers (`read_timeout`), so a client trickling bytes is cut off.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Each connection holds a sender; when all are gone, all have closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let read_timeout = config.read_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(%error, "taskflow web: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move { tower::Service::call(&mut router, request).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(read_timeout);
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// `GET /health`: no auth; 200 when the store answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = taskflow_proto::Health),
        (status = 503, description = "The store does not answer", body = taskflow_proto::Health),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<taskflow_proto::Health>) {
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
