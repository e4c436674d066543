//! [`Auth`], the authenticator of a running server: it checks credentials
//! and API keys, issues and verifies tokens (refresh tokens once each),
//! limits failed logins per client, and makes and checks CSRF tokens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};

use super::config::AuthConfig;
use super::tokens::{Principal, SESSION_COOKIE, TokenPair, TokenRequest, session_cookie};
use crate::error::ApiError;
use crate::jwt::{Purpose, Signer, TokenError, WeakSecret, now_seconds};

/// Failed logins allowed per client within [`FAILURE_WINDOW`] before 429.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

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
    pub(super) fn refresh(&self, token: &str) -> Result<TokenPair, ApiError> {
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
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, TokenError> {
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

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
}
