//! What authentication is configured with: [`AuthConfig`], read from the
//! environment, with the token secret generated into the data directory
//! on first start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jwt::{Signer, WeakSecret};

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
    /// There is no secret to sign with: `TASKFLOW_SECRET` is not set and
    /// the data directory has no `secret` file (see
    /// [`AuthConfig::load_existing`]).
    #[error("no token secret: TASKFLOW_SECRET is not set and `{path}` does not exist")]
    NoSecret {
        /// The secret file looked for.
        path: PathBuf,
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
        AuthConfig::load_secret(data_dir, true)
    }

    /// As [`load`](AuthConfig::load), but never creates a secret: without
    /// `TASKFLOW_SECRET` and `<data_dir>/secret` it is
    /// [`AuthConfigError::NoSecret`], since tokens signed with a new secret
    /// would be accepted by no running server.
    pub fn load_existing(data_dir: &Path) -> Result<AuthConfig, AuthConfigError> {
        AuthConfig::load_secret(data_dir, false)
    }

    fn load_secret(data_dir: &Path, create: bool) -> Result<AuthConfig, AuthConfigError> {
        let secret = match std::env::var("TASKFLOW_SECRET") {
            Ok(secret) if !secret.is_empty() => secret.into_bytes(),
            _ => secret_file(&data_dir.join("secret"), create)?,
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

/// The secret kept in the data directory, generated on first use if
/// `create`.
fn secret_file(path: &Path, create: bool) -> Result<Vec<u8>, AuthConfigError> {
    let io = |context: &'static str| move |source| AuthConfigError::Io { context, path: path.to_owned(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            Err(AuthConfigError::NoSecret { path: path.to_owned() })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_bad_lines_are_named() {
        assert_eq!(
            parse_users("x", ["a:b", " c:d:e "].into_iter()).unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        let error = parse_users("TASKFLOW_USERS", ["nopassword"].into_iter()).unwrap_err();
        assert!(error.to_string().contains("is not `user:password`"), "{error}");
    }

    #[test]
    fn only_load_creates_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let error = secret_file(&path, false).unwrap_err();
        assert!(matches!(&error, AuthConfigError::NoSecret { path: p } if *p == path), "{error}");
        assert!(!path.exists(), "nothing was created");
        let created = secret_file(&path, true).unwrap();
        assert_eq!(secret_file(&path, false).unwrap(), created, "an existing secret is read");
    }
}
