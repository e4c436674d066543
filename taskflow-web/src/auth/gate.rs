//! The gates in front of the routes: [`require_api`] for the API and the
//! WebSockets, [`require_session`] for the pages, and what they read off a
//! request (the client's address, whether it comes from another site).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::service::Auth;
use super::tokens::session_cookie;
use crate::AppState;
use crate::error::ApiError;
use crate::url::encode_component;

/// The client's address, when the server knows it.
pub(crate) fn client_ip(request_extensions: &axum::http::Extensions) -> Option<IpAddr> {
    request_extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

/// Whether a request comes from another site: `Sec-Fetch-Site: cross-site`,
/// or an `Origin` whose host is not this server's `Host`.
pub(crate) fn is_cross_site(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// The API's gate: a bearer token, or the session cookie for reads and
/// WebSockets of this site. Anything else is 401.
pub(crate) async fn require_api(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match state.auth.authenticate(request.headers()) {
        Ok(Some(principal)) => {
            if principal.session.is_some() {
                // A cookie rides along with any request the browser makes,
                // other sites' included: only safe methods may use it, and
                // a WebSocket (which has no CORS) only from this site.
                let safe = matches!(*request.method(), Method::GET | Method::HEAD);
                if !safe {
                    return ApiError::forbidden(
                        "the session cookie only reads the API; send `Authorization: Bearer <token>` to change things",
                    )
                    .into_response();
                }
                if is_cross_site(request.headers()) {
                    return ApiError::forbidden("cross-site requests are refused").into_response();
                }
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(None) => ApiError::unauthorized(
            "authentication required: send `Authorization: Bearer <token>` (get one from `POST /token` or `<app> token`)",
        )
        .into_response(),
        Err(error) => ApiError::unauthorized(error.to_string()).into_response(),
    }
}

/// The UI's gate: the session cookie (or a bearer token); without one, the
/// login page. A cross-site state change is refused outright (403); the
/// handlers check the form's CSRF token as well.
pub(crate) async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*request.method(), Method::GET | Method::HEAD);
    if unsafe_method && is_cross_site(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-site form submissions are refused").into_response();
    }
    match state.auth.authenticate(request.headers()) {
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        _ => {
            let next_path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let target = format!("/login?next={}", encode_component(next_path));
            let mut response = Redirect::to(&target).into_response();
            if session_cookie(request.headers()).is_some() {
                // An expired or forged cookie: drop it.
                response.headers_mut().insert(header::SET_COOKIE, Auth::clear_cookie());
            }
            response
        }
    }
}

/// The client address, if the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectInfoOpt(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoOpt {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoOpt(client_ip(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn cross_site_is_told_by_origin_and_fetch_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        assert!(!is_cross_site(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8000"));
        assert!(!is_cross_site(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(is_cross_site(&headers));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&headers));
    }
}
