//! Who may do what: [`Auth`] holds the token secret, the configured
//! credentials and API keys; the middleware here lets a request through
//! only with a bearer token (an access JWT or an API key) or the browser's
//! session cookie; `/token` and `/token/refresh` issue tokens.
//!
//! Secure by default: every route but `/health` needs one of those. With no
//! secret configured, the first start generates one in the data directory
//! and `serve` prints a one-click login link, so the local quick start is
//! one click and still closed.
//!
//! One concept a file, each depending only on those above it:
//! `config` (what is configured, and loading it), `tokens` (what travels:
//! the `/token` bodies, the session cookie, the [`Principal`]), `service`
//! ([`Auth`]: credentials, issuing and verifying tokens, failed-login
//! limits, CSRF), `gate` (the middleware) and `routes` (the handlers).

mod config;
pub(crate) mod gate;
pub(crate) mod routes;
mod service;
mod tokens;

pub use config::{AuthConfig, AuthConfigError};
pub use service::Auth;
pub use tokens::{Principal, RefreshRequest, SESSION_COOKIE, TokenPair, TokenRequest};
