//! The web UI: server-rendered `askama` pages (task list, task form, run,
//! history, workers, login), CSS and a little hand-written JavaScript served from
//! the binary. Listing and submitting work without JavaScript; the script
//! adds the live updates (over the WebSockets), the filter box and checks
//! in the browser.

pub mod form;
mod pages;
mod workers;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
pub use crate::url::encode_component;

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");

/// The pages behind the session gate.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::tasks))
        .route("/functions/{title}", get(pages::task_form).post(pages::submit))
        .route("/runs", get(pages::history))
        .route("/runs/{task_id}", get(pages::run))
        .route("/runs/{task_id}/cancel", post(pages::cancel))
        .route("/runs/{task_id}/again", post(pages::again))
        .route("/workers", get(workers::workers))
        .route("/workers/{worker_id}/revoke", post(workers::revoke))
        .route("/logout", post(pages::logout))
}

/// What needs no session: the login page and the static files.
pub(crate) fn public_router() -> Router<AppState> {
    Router::new()
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/static/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route("/static/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        body,
    )
        .into_response()
}

/// The HTML 404 page.
pub(crate) fn not_found_page(path: &str) -> Response {
    pages::error_page(StatusCode::NOT_FOUND, "Not found", &format!("There is no page at {path}."))
}

/// A rendered page, or a plain 500 when a template fails (it cannot, with
/// compiled templates, but the server must not panic if it did).
fn html(status: StatusCode, rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => {
            tracing::error!(%error, "taskflow web: rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
