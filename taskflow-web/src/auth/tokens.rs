//! What travels between client and server: the bodies of `POST /token` and
//! `POST /token/refresh`, the session cookie, and the [`Principal`] a
//! verified token stands for.

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The name of the browser's session cookie.
pub const SESSION_COOKIE: &str = "taskflow_session";

/// Who made a request, as the middleware found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user, `api-key`, or `local`.
    pub subject: String,
    /// The session's id when the request came with the session cookie;
    /// state-changing forms must then carry its CSRF token.
    pub session: Option<String>,
}

/// An access token, and the refresh token that renews it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    /// The bearer token: `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Exchanged once at `/token/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: u64,
}

/// Credentials for `POST /token`: a user and password, or an API key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A configured user.
    #[serde(default)]
    pub username: Option<String>,
    /// Their password.
    #[serde(default)]
    pub password: Option<String>,
    /// A configured API key, instead of user and password.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// The body of `POST /token/refresh`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last pair.
    pub refresh_token: String,
}

/// The session cookie's value, if the request has one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}
