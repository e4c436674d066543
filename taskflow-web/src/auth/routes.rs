//! `POST /token` and `POST /token/refresh`: credentials, or a refresh
//! token, for a new token pair.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::gate::ConnectInfoOpt;
use super::tokens::{RefreshRequest, TokenPair, TokenRequest};
use crate::AppState;
use crate::error::{ApiError, ApiJson};

/// `POST /token`: credentials for a token pair.
#[utoipa::path(
    post,
    path = "/token",
    operation_id = "create_token",
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 401, description = "Wrong credentials", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "Wrong shape", body = crate::error::ErrorBody),
        (status = 429, description = "Too many failed logins", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    ConnectInfoOpt(client): ConnectInfoOpt,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    state.auth.check_rate(client)?;
    match state.auth.check_credentials(&request) {
        Some(subject) => Ok(Json(state.auth.token_pair(&subject))),
        None => {
            state.auth.record_failure(client);
            Err(ApiError::unauthorized(
                "wrong credentials: send {\"username\", \"password\"} of a configured user, or {\"api_key\"}",
            ))
        }
    }
}

/// `POST /token/refresh`: a refresh token, once, for a new pair.
#[utoipa::path(
    post,
    path = "/token/refresh",
    operation_id = "refresh_token",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 401, description = "Invalid, expired or already used refresh token", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::error::ErrorBody),
        (status = 422, description = "Wrong shape", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    state.auth.refresh(&request.refresh_token).map(Json)
}

/// `/token` and `/token/refresh`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/token", post(token)).route("/token/refresh", post(refresh))
}
