//! Who may do what: [`Auth`] holds the token secret, the configured
//! credentials and API keys; the middleware here lets a request through
//! only with a bearer token (an access JWT or an API key) or the browser's
//! session cookie; `/token` and `/token/refresh` issue tokens.
//!
//! Secure by default: every route but `/health` needs one of those. With no
//! secret configured, the first start generates one in the data directory
//! and `serve` prints a one-click login link, so the local quick start is
//! one click and still closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::jwt::{Purpose, Signer, TokenError, WeakSecret, now_seconds};

/// The name of the browser's session cookie.
pub const SESSION_COOKIE: &str = "taskflow_session";

/// Failed logins allowed per client within [`FAILURE_WINDOW`] before 429.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How the control plane authenticates.
#[derive(Clone)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The HS256 secret (at least 32 bytes).
    pub secret: Vec<u8>,
    /// `(user, password)` pairs accepted by `POST /token` and the login page.
    pub users: Vec<(String, String)>,
    /// Keys accepted as bearer tokens and by `POST /token`.
    pub api_keys: Vec<String>,
    /// How long an access token lives.
    pub access_ttl: Duration,
    /// How long a refresh token lives.
    pub refresh_ttl: Duration,
    /// How long a browser session lives.
    pub session_ttl: Duration,
    /// How long the printed login link works.
    pub login_ttl: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("users", &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>())
            .field("api_keys", &self.api_keys.len())
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

/// Why the auth configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The secret is too short.
    #[error(transparent)]
    WeakSecret(#[from] WeakSecret),
    /// A file could not be read or written.
    #[error("{context} `{path}`: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A credentials line is not `user:password`.
    #[error("{origin}: `{line}` is not `user:password`")]
    BadCredential {
        /// Where it came from.
        origin: String,
        /// The offending entry, password hidden.
        line: String,
    },
}

impl AuthConfig {
    /// A configuration with this secret, no users or keys, and the default
    /// lifetimes (access 15 min, refresh 7 days, session 12 h, login link
    /// 24 h).
    pub fn with_secret(secret: Vec<u8>) -> Result<AuthConfig, WeakSecret> {
        Signer::new(&secret)?;
        Ok(AuthConfig {
            secret,
            users: Vec::new(),
            api_keys: Vec::new(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 86_400),
            session_ttl: Duration::from_secs(12 * 3600),
            login_ttl: Duration::from_secs(24 * 3600),
        })
    }

    /// Reads the configuration from the environment, keeping a generated
    /// secret in `data_dir`:
    ///
    /// - `TASKFLOW_SECRET`: the token secret; otherwise `<data_dir>/secret`,
    ///   created (mode 0600) with 256 random bits on first start.
    /// - `TASKFLOW_USERS` (`ada:pw,bob:pw`) and `TASKFLOW_USERS_FILE` (one
    ///   `user:password` a line).
    /// - `TASKFLOW_API_KEYS` (comma-separated) and `TASKFLOW_API_KEYS_FILE`
    ///   (one a line).
    pub fn load(data_dir: &Path) -> Result<AuthConfig, AuthConfigError> {
        let secret = match std::env::var("TASKFLOW_SECRET") {
            Ok(secret) if !secret.is_empty() => secret.into_bytes(),
            _ => secret_file(&data_dir.join("secret"))?,
        };
        let mut config = AuthConfig::with_secret(secret)?;
        let mut users = Vec::new();
        if let Ok(list) = std::env::var("TASKFLOW_USERS") {
            users.extend(parse_users("TASKFLOW_USERS", list.split(','))?);
        }
        if let Some(path) = std::env::var_os("TASKFLOW_USERS_FILE") {
            let path = PathBuf::from(path);
            let text = read(&path)?;
            users.extend(parse_users(&path.display().to_string(), text.lines())?);
        }
        let mut keys: Vec<String> = Vec::new();
        if let Ok(list) = std::env::var("TASKFLOW_API_KEYS") {
            keys.extend(list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned));
        }
        if let Some(path) = std::env::var_os("TASKFLOW_API_KEYS_FILE") {
            let text = read(Path::new(&path))?;
            keys.extend(text.lines().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned));
        }
        config.users = users;
        config.api_keys = keys;
        Ok(config)
    }
}

fn read(path: &Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Io {
        context: "reading",
        path: path.to_owned(),
        source,
    })
}

fn parse_users<'a>(
    origin: &str,
    entries: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, AuthConfigError> {
    let mut users = Vec::new();
    for entry in entries.map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#')) {
        match entry.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                users.push((user.to_owned(), password.to_owned()));
            }
            _ => {
                let shown = entry.split(':').next().unwrap_or_default();
                return Err(AuthConfigError::BadCredential { origin: origin.to_owned(), line: format!("{shown}:…") });
            }
        }
    }
    Ok(users)
}

/// The secret kept in the data directory, generated on first use.
fn secret_file(path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    let io = |context: &'static str| move |source| AuthConfigError::Io { context, path: path.to_owned(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io("creating the data directory for"))?;
            }
            let secret = crate::jwt::hex(&crate::jwt::random_bytes::<32>());
            write_private(path, &secret).map_err(io("writing the token secret to"))?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(io("reading the token secret from")(e)),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// The authenticator of a running server.
#[derive(Debug)]
pub struct Auth {
    signer: Signer,
    config: AuthConfig,
    /// Refresh tokens already exchanged (jti → exp), so each works once.
    used_refresh: Mutex<HashMap<String, i64>>,
    /// Failed logins per client.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

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

/// Equality in time independent of where (or whether) the two differ and
/// of their lengths: compares their SHA-256 digests.
fn constant_eq(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a.as_bytes()), sha2::Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// The authenticator for `config`.
    pub fn new(config: AuthConfig) -> Result<Auth, WeakSecret> {
        Ok(Auth {
            signer: Signer::new(&config.secret)?,
            config,
            used_refresh: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The signer, for CSRF tags.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// A bearer token for scripts (`<app> token`), valid for `ttl`.
    pub fn access_token(&self, subject: &str, ttl: Duration) -> String {
        self.signer.issue(subject, Purpose::Access, secs(ttl))
    }

    /// The token of the one-click login link `serve` prints.
    pub fn login_token(&self) -> String {
        self.signer.issue("local", Purpose::Login, secs(self.config.login_ttl))
    }

    /// A fresh pair for `subject`.
    pub fn token_pair(&self, subject: &str) -> TokenPair {
        TokenPair {
            access_token: self.signer.issue(subject, Purpose::Access, secs(self.config.access_ttl)),
            token_type: "bearer".to_owned(),
            expires_in: self.config.access_ttl.as_secs(),
            refresh_token: self.signer.issue(subject, Purpose::Refresh, secs(self.config.refresh_ttl)),
            refresh_expires_in: self.config.refresh_ttl.as_secs(),
        }
    }

    /// A session cookie's value for `subject`.
    pub fn session_token(&self, subject: &str) -> String {
        self.signer.issue(subject, Purpose::Session, secs(self.config.session_ttl))
    }

    /// The `Set-Cookie` header that starts a session for `subject`.
    pub fn session_cookie(&self, subject: &str) -> HeaderValue {
        let value = format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
            self.session_token(subject),
            self.config.session_ttl.as_secs()
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The `Set-Cookie` header that ends a session.
    pub fn clear_cookie() -> HeaderValue {
        HeaderValue::from_static("taskflow_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, session: &str) -> String {
        self.signer.tag(session)
    }

    /// Whether `token` is the CSRF token of `session`.
    pub fn check_csrf(&self, session: &str, token: &str) -> bool {
        self.signer.check_tag(session, token)
    }

    /// Checks a user's password or an API key; the subject on success.
    pub fn check_credentials(&self, request: &TokenRequest) -> Option<String> {
        match (&request.username, &request.password, &request.api_key) {
            (Some(user), Some(password), None) => {
                // Compare against every user, so timing does not tell which exist.
                let mut found = None;
                for (u, p) in &self.config.users {
                    if constant_eq(u, user) & constant_eq(p, password) {
                        found = Some(u.clone());
                    }
                }
                found
            }
            (None, None, Some(key)) => self.check_api_key(key).then(|| "api-key".to_owned()),
            _ => None,
        }
    }

    fn check_api_key(&self, key: &str) -> bool {
        self.config.api_keys.iter().fold(false, |found, k| found | constant_eq(k, key))
    }

    /// The subject of an access token or an API key.
    pub fn check_token(&self, token: &str) -> Option<String> {
        if self.check_api_key(token) {
            return Some("api-key".to_owned());
        }
        self.signer.verify(token, Purpose::Access).ok().map(|c| c.sub)
    }

    /// The subject of a login link's token.
    pub fn check_login(&self, token: &str) -> Result<String, TokenError> {
        self.signer.verify(token, Purpose::Login).map(|c| c.sub)
    }

    /// Refuses a client with too many recent failures (429).
    pub fn check_rate(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = client else { return Ok(()) };
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&ip) {
            Some((count, since)) if *count >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW => {
                Err(ApiError::too_many_requests(format!(
                    "too many failed logins from this client; wait {}s and try again",
                    FAILURE_WINDOW.saturating_sub(since.elapsed()).as_secs().max(1)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `client`.
    pub fn record_failure(&self, client: Option<IpAddr>) {
        let Some(ip) = client else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Exchanges a refresh token, once, for a new pair.
    fn refresh(&self, token: &str) -> Result<TokenPair, ApiError> {
        let claims = self.signer.verify(token, Purpose::Refresh).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let mut used = self.used_refresh.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_seconds();
        used.retain(|_, exp| *exp > now);
        if used.insert(claims.jti.clone(), claims.exp).is_some() {
            return Err(ApiError::unauthorized(
                "this refresh token was already used; log in again with your credentials",
            ));
        }
        Ok(self.token_pair(&claims.sub))
    }

    /// Who sent this request, from its bearer token or session cookie.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, TokenError> {
        // A bearer token decides; another scheme (a proxy's `Basic`) is
        // not ours and leaves the session cookie to decide.
        let bearer = headers.get(header::AUTHORIZATION).and_then(|value| {
            let text = value.to_str().ok()?;
            let (scheme, token) = text.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
        });
        if let Some(token) = bearer {
            let token = token.as_str();
            if self.check_api_key(token) {
                return Ok(Some(Principal { subject: "api-key".to_owned(), session: None }));
            }
            let claims = self.signer.verify(token, Purpose::Access)?;
            return Ok(Some(Principal { subject: claims.sub, session: None }));
        }
        match session_cookie(headers) {
            Some(token) => {
                let claims = self.signer.verify(token, Purpose::Session)?;
                Ok(Some(Principal { subject: claims.sub, session: Some(claims.jti) }))
            }
            None => Ok(None),
        }
    }
}

fn secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
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
            let target = format!("/login?next={}", crate::ui::encode_component(next_path));
            let mut response = Redirect::to(&target).into_response();
            if session_cookie(request.headers()).is_some() {
                // An expired or forged cookie: drop it.
                response.headers_mut().insert(header::SET_COOKIE, Auth::clear_cookie());
            }
            response
        }
    }
}

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

/// The client address, if the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectInfoOpt(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoOpt {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoOpt(client_ip(&parts.extensions)))
    }
}

/// `/token` and `/token/refresh`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/token", post(token)).route("/token/refresh", post(refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let mut config = AuthConfig::with_secret(vec![1; 32]).unwrap();
        config.users = vec![("ada".into(), "lovelace".into())];
        config.api_keys = vec!["key-1".into()];
        Auth::new(config).unwrap()
    }

    #[test]
    fn credentials_and_keys_are_checked() {
        let auth = auth();
        let user =
            |u: &str, p: &str| TokenRequest { username: Some(u.into()), password: Some(p.into()), api_key: None };
        assert_eq!(auth.check_credentials(&user("ada", "lovelace")), Some("ada".into()));
        assert_eq!(auth.check_credentials(&user("ada", "wrong")), None);
        assert_eq!(auth.check_credentials(&user("bob", "lovelace")), None);
        let key = TokenRequest { username: None, password: None, api_key: Some("key-1".into()) };
        assert_eq!(auth.check_credentials(&key), Some("api-key".into()));
    }

    #[test]
    fn a_refresh_token_works_once() {
        let auth = auth();
        let pair = auth.token_pair("ada");
        let next = auth.refresh(&pair.refresh_token).unwrap();
        assert_eq!(auth.refresh(&pair.refresh_token).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        assert!(auth.refresh(&next.refresh_token).is_ok());
        assert_eq!(auth.refresh(&pair.access_token).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn failed_logins_are_limited_per_client() {
        let auth = auth();
        let ip = Some(IpAddr::from([127, 0, 0, 9]));
        for _ in 0..MAX_FAILURES {
            assert!(auth.check_rate(ip).is_ok());
            auth.record_failure(ip);
        }
        assert_eq!(auth.check_rate(ip).unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(auth.check_rate(Some(IpAddr::from([127, 0, 0, 10]))).is_ok());
    }

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

    #[test]
    fn users_parse_and_bad_lines_are_named() {
        assert_eq!(
            parse_users("x", ["a:b", " c:d:e "].into_iter()).unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        let error = parse_users("TASKFLOW_USERS", ["nopassword"].into_iter()).unwrap_err();
        assert!(error.to_string().contains("is not `user:password`"), "{error}");
    }
}
