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
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[cfg(feature = "web")]
fn auth(store_args: &StoreArgs) -> Result<taskflow_web::Auth> {
    let config = taskflow_web::AuthConfig::load(&store_args.data_dir).map_err(|e| Error::Usage(e.to_string()))?;
    taskflow_web::Auth::new(config).map_err(|e| Error::Usage(e.to_string()))
}

/// Binds `args.addr` and serves the control plane over `engine`.
#[cfg(feature = "web")]
pub(super) async fn start(engine: &Engine, store_args: &StoreArgs, args: &ServeArgs) -> Result<Web> {
    use std::sync::Arc;

    let auth = Arc::new(auth(store_args)?);
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
    let plane = taskflow_web::Plane::new(crate::client::Client::new(engine.clone()));
    let router = taskflow_web::router(plane, auth, &config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        taskflow_web::serve(listener, router, &config, async move {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Web { url, login, stop, server })
}

#[cfg(feature = "web")]
impl Web {
    /// The lines `serve` prints about the control plane.
    pub(super) fn banner(&self, out: &mut impl Write, program: &str) -> std::io::Result<()> {
        writeln!(out, "Control plane: {}", self.url)?;
        writeln!(out, "Log in: {}", self.login)?;
        writeln!(out, "API: {}/api/v1 (bearer token: `{program} token`)", self.url)
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

/// A bearer token signed with the data directory's secret.
#[cfg(feature = "web")]
pub(super) fn token(store_args: &StoreArgs, ttl: Duration) -> Result<String> {
    Ok(auth(store_args)?.access_token("cli", ttl))
}

/// `serve` without the control plane.
#[cfg(not(feature = "web"))]
pub(super) struct Web;

#[cfg(not(feature = "web"))]
pub(super) async fn start(_: &Engine, _: &StoreArgs, _: &ServeArgs) -> Result<Web> {
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
pub(super) fn token(_: &StoreArgs, _: Duration) -> Result<String> {
    Err(Error::Usage(
        "this binary was built without taskflow's `web` feature, so it has no control plane to issue tokens for"
            .to_owned(),
    ))
}
