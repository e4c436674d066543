//! The control plane's part of `serve` and `token`: loads the auth
//! configuration from the environment and the data directory, binds the
//! listener, prints the login link, and stops the server before the engine.
//! Built without the `web` feature, `serve` runs the engine alone and says
//! how to submit from the command line.

use std::io::Write;
use std::time::Duration;

use super::error::{Error, Result};
use super::{ServeArgs, StoreArgs};
use crate::engine::Engine;

/// How long requests in flight (open WebSockets included) may take to end
/// once the server stops.
#[cfg(feature = "web")]
const DRAIN: Duration = Duration::from_secs(3);

/// The running control plane.
#[cfg(feature = "web")]
pub(super) struct Web {
    url: String,
    login: String,
    /// `--data-dir <dir>` for the commands the banner shows, if not `.`.
    data_dir: Option<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[cfg(feature = "web")]
fn auth(config: taskflow_web::AuthConfig) -> Result<taskflow_web::Auth> {
    taskflow_web::Auth::new(config).map_err(|e| Error::Usage(e.to_string()))
}

/// The data directory as messages show it: absolute, so it names one place
/// wherever the reader runs a command.
#[cfg(feature = "web")]
fn absolute_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned())
}

/// Binds `args.addr` and serves the control plane over `engine`;
/// `remote_workers`: whether the polling routes take workers.
#[cfg(feature = "web")]
pub(super) async fn start(
    engine: &Engine,
    store_args: &StoreArgs,
    args: &ServeArgs,
    remote_workers: bool,
) -> Result<Web> {
    use std::sync::Arc;

    let config = taskflow_web::AuthConfig::load(&store_args.data_dir).map_err(|e| Error::Usage(e.to_string()))?;
    let auth = Arc::new(auth(config)?);
    let listener = tokio::net::TcpListener::bind(args.addr).await.map_err(|source| Error::Io {
        context: format!(
            "listening on {}: is another server using it? choose another with --addr or TASKFLOW_ADDR",
            args.addr
        ),
        source,
    })?;
    let local = listener
        .local_addr()
        .map_err(|source| Error::Io { context: "reading the listening address".to_owned(), source })?;
    let shown = if local.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let url = format!("http://{shown}");
    let login = format!("{url}/login?token={}", auth.login_token());
    let mut config = taskflow_web::WebConfig::default();
    config.max_body_bytes = args.max_body_bytes;
    config.max_concurrent_requests = args.max_concurrent_requests;
    config.read_timeout = Duration::from_secs(args.read_timeout_seconds.max(1));
    config.remote_workers = remote_workers;
    let plane = taskflow_web::Plane::new(crate::client::Client::new(engine.clone()));
    let router = taskflow_web::router(plane, auth, &config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        taskflow_web::serve(listener, router, &config, async move {
            let _ = stopped.await;
        })
        .await
    });
    let data_dir = (store_args.data_dir != std::path::Path::new("."))
        .then(|| shell_word(&absolute_dir(&store_args.data_dir).display().to_string()));
    Ok(Web { url, login, data_dir, stop, server })
}

#[cfg(feature = "web")]
impl Web {
    /// The lines `serve` prints about the control plane.
    pub(super) fn banner(&self, out: &mut impl Write, program: &str) -> std::io::Result<()> {
        writeln!(out, "Control plane: {}", self.url)?;
        writeln!(out, "Log in: {}", self.login)?;
        let data_dir = self.data_dir.as_ref().map(|dir| format!(" --data-dir {dir}")).unwrap_or_default();
        writeln!(out, "API: {}/api/v1 (bearer token: `{program}{data_dir} token`)", self.url)
    }

    /// Stops accepting requests and lets those in flight end, briefly.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(DRAIN, self.server).await {
            Ok(Ok(Err(error))) => tracing::error!(%error, "taskflow: the control plane failed"),
            Ok(_) => {}
            Err(_) => tracing::warn!("taskflow: connections still open after {DRAIN:?}; closing them"),
        }
    }
}

/// `dir` as one word of a shell command: quoted unless it is plain.
#[cfg(feature = "web")]
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A bearer token signed with the data directory's secret. Without one (and
/// without `TASKFLOW_SECRET`) it refuses unless `create`: a token signed
/// with a secret of its own would be accepted by no server.
#[cfg(feature = "web")]
pub(super) fn token(program: &str, store_args: &StoreArgs, ttl: Duration, create: bool) -> Result<String> {
    let config = if create {
        taskflow_web::AuthConfig::load(&store_args.data_dir)
    } else {
        taskflow_web::AuthConfig::load_existing(&store_args.data_dir)
    };
    let config = config.map_err(|error| match error {
        taskflow_web::AuthConfigError::NoSecret { path } => Error::Usage(format!(
            "no token secret in the data directory {dir} (`{path}` does not exist, and TASKFLOW_SECRET is not set), so \
             no server would accept a token; give the server's data directory, as its banner shows \
             (`{program} --data-dir <dir> token`, or TASKFLOW_DATA_DIR), or add `--create` to create a secret here \
             for a server you will start on this data directory",
            dir = absolute_dir(&store_args.data_dir).display(),
            path = path.display(),
        )),
        error => Error::Usage(error.to_string()),
    })?;
    Ok(auth(config)?.access_token("cli", ttl))
}

/// `serve` without the control plane.
#[cfg(not(feature = "web"))]
pub(super) struct Web;

#[cfg(not(feature = "web"))]
pub(super) async fn start(_: &Engine, _: &StoreArgs, _: &ServeArgs, _: bool) -> Result<Web> {
    Ok(Web)
}

#[cfg(not(feature = "web"))]
impl Web {
    pub(super) fn banner(&self, out: &mut impl Write, program: &str) -> std::io::Result<()> {
        writeln!(out, "This binary was built without taskflow's `web` feature: no control plane. Meanwhile:")?;
        for def in crate::registry::tasks() {
            writeln!(out, "  {program} submit {}", super::example_call(def))?;
        }
        writeln!(out, "queues a run for this engine; `{program} status <id>` follows it.")
    }

    pub(super) async fn stop(self) {}
}

#[cfg(not(feature = "web"))]
pub(super) fn token(_: &str, _: &StoreArgs, _: Duration, _: bool) -> Result<String> {
    Err(Error::Usage(
        "this binary was built without taskflow's `web` feature, so it has no control plane to issue tokens for"
            .to_owned(),
    ))
}

#[cfg(all(test, feature = "web"))]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_are_shown_as_one_shell_word() {
        assert_eq!(shell_word("/srv/taskflow-data"), "/srv/taskflow-data");
        assert_eq!(shell_word("/home/ada/my data"), "'/home/ada/my data'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
