//! The [`DockerExecutor`]: its connection to the engine, its availability,
//! and the execution of one run (in a warm container, or a fresh one).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::DockerExecutorConfig;
use super::containers::attach_and_start;
use super::contents::BinaryInputs;
use super::leftovers::process_owner;
use super::warm::Warm;
use super::warm_pool::WarmPool;
use crate::error::TaskError;
use crate::executor::frame;
use crate::executor::{Availability, Error, Executor};
use crate::future::BoxFuture;
use crate::task::context::TaskContext;
use crate::task::registry::{ExecutorKind, TaskDef, TaskResult};

/// The socket tried when neither the configuration nor `DOCKER_HOST` names
/// one.
pub(super) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long a request to the engine may take (a build, a create); waiting
/// for a container has no such limit, only the run's timeout.
pub(super) const REQUEST_TIMEOUT_SECS: u64 = 600;

/// How long [`DockerExecutor::availability`] waits for the engine.
pub(super) const AVAILABILITY_WAIT: Duration = Duration::from_secs(5);

/// Executes runs in containers. Cheap to clone; clones share the
/// connection and the image cache.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: DockerExecutorConfig,
    /// The connection, once one succeeded (a failure is tried again next
    /// time: the daemon may come up).
    pub(super) docker: OnceCell<Docker>,
    /// The binary's inputs, read once.
    pub(super) inputs: OnceCell<BinaryInputs>,
    /// This process's mark on its containers: `<host>/<pid>/<start>`, the
    /// same for every executor of the process.
    pub(super) owner: String,
    /// Containers started ahead, per task, keyed by image tag.
    pub(super) warm: std::sync::Mutex<WarmPool<Warm>>,
    /// Whether the task removing idle warm containers runs.
    pub(super) reaping: std::sync::atomic::AtomicBool,
}

impl DockerExecutor {
    /// An executor with `config`. Connects on first use.
    pub fn new(config: DockerExecutorConfig) -> DockerExecutor {
        let owner = process_owner().to_owned();
        DockerExecutor {
            inner: Arc::new(Inner {
                config,
                docker: OnceCell::new(),
                inputs: OnceCell::new(),
                owner,
                warm: std::sync::Mutex::new(WarmPool::new()),
                reaping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &DockerExecutorConfig {
        &self.inner.config
    }

    /// The engine address used: the configuration's, `DOCKER_HOST`, or the
    /// default socket.
    pub fn endpoint(&self) -> String {
        self.inner
            .config
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned())
    }

    /// The app's name in image names and labels.
    pub fn app(&self) -> Result<String, Error> {
        if let Some(app) = &self.inner.config.app {
            return Ok(app.clone());
        }
        let program = self.program()?;
        Ok(program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".to_owned()))
    }

    pub(super) fn program(&self) -> Result<PathBuf, Error> {
        match &self.inner.config.program {
            Some(program) => Ok(program.clone()),
            None => std::env::current_exe()
                .map_err(|e| Error::Assembly { message: format!("the path of this binary is unknown: {e}") }),
        }
    }

    /// Whether the engine answers (within 5 seconds, so a health check
    /// never hangs on a dead `tcp://` host), with its version or the reason
    /// it does not.
    pub async fn availability(&self) -> Availability {
        match tokio::time::timeout(AVAILABILITY_WAIT, self.check()).await {
            Ok(availability) => availability,
            Err(_) => Availability {
                kind: ExecutorKind::Docker,
                available: false,
                detail: Error::DockerUnavailable {
                    endpoint: self.endpoint(),
                    message: format!("no answer within {}s", AVAILABILITY_WAIT.as_secs()),
                }
                .to_string(),
            },
        }
    }

    pub(super) async fn check(&self) -> Availability {
        let (available, detail) = match self.connect().await {
            Ok(docker) => match docker.version().await {
                Ok(version) => (
                    true,
                    format!(
                        "Docker Engine {} (API {}) at {}",
                        version.version.unwrap_or_default(),
                        version.api_version.unwrap_or_default(),
                        self.endpoint()
                    ),
                ),
                Err(error) => (false, self.unreachable(&error).to_string()),
            },
            Err(error) => (false, error.to_string()),
        };
        Availability { kind: ExecutorKind::Docker, available, detail }
    }

    pub(super) fn unreachable(&self, error: &bollard::errors::Error) -> Error {
        Error::DockerUnavailable { endpoint: self.endpoint(), message: error.to_string() }
    }

    /// The connection, made (and the version negotiated) on first use.
    pub(super) async fn connect(&self) -> Result<&Docker, Error> {
        self.inner
            .docker
            .get_or_try_init(|| async {
                let endpoint = self.endpoint();
                let unreachable = |message: String| Error::DockerUnavailable { endpoint: endpoint.clone(), message };
                let version = bollard::API_DEFAULT_VERSION;
                let docker = if endpoint.starts_with("unix://") || endpoint.starts_with('/') {
                    let path = endpoint.trim_start_matches("unix://");
                    if !std::path::Path::new(path).exists() {
                        return Err(unreachable(format!("the socket {path} does not exist")));
                    }
                    Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
                } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
                    Docker::connect_with_http(&endpoint, REQUEST_TIMEOUT_SECS, version)
                } else {
                    return Err(unreachable("only unix:// and tcp:// addresses are supported".to_owned()));
                }
                .map_err(|e| unreachable(e.to_string()))?;
                // The engine may speak an older API than bollard's default.
                docker.negotiate_version().await.map_err(|e| unreachable(e.to_string()))
            })
            .await
    }

    /// Runs `def` with `payload` in a fresh container and waits for its
    /// outcome, at most `timeout` (the task's own `timeout` option when
    /// `None`) from the container's start: building the image on a task's
    /// first run does not count. Cancelling `ctx` kills the container and ends with
    /// [`TaskError::Cancelled`]. The container is removed in every case.
    ///
    /// Must be called from within a Tokio runtime.
    pub async fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> TaskResult {
        let payload = def.prepare(payload)?;
        let timeout = timeout.or(def.options().timeout);
        if ctx.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        // A build is not cut off by a cancel: it finishes (and cleans up)
        // on its own, and the next run finds the image.
        let preparing = {
            let executor = self.clone();
            tokio::spawn(async move { executor.image_for(def).await })
        };
        let image = tokio::select! {
            image = preparing => image.map_err(|e| Error::Assembly { message: e.to_string() })??,
            () = ctx.cancelled() => return Err(TaskError::Cancelled),
        };
        let docker = self.connect().await?.clone();
        if self.inner.config.warm_containers > 0 {
            if let Some(Warm { container, attached }) = self.take_live(&docker, def, &image).await {
                let envelope = frame::Envelope { run_id: ctx.run_id().to_owned(), attempt: ctx.attempt(), payload };
                let body = serde_json::to_vec(&envelope).map_err(|e| TaskError::Output { message: e.to_string() })?;
                let outcome = self.drive(&docker, &container, attached, &ctx, (body, true), timeout).await;
                // The outcome is known: the run need not wait for the
                // removal, nor share the engine with the refill.
                tokio::spawn(container.remove());
                self.refill(def, &image);
                return outcome;
            }
        }
        let container = self.create_container(&docker, def, Some(&ctx), &image).await?;
        let body = serde_json::to_vec(&payload).map_err(|e| TaskError::Output { message: e.to_string() })?;
        let outcome = match attach_and_start(&docker, &container.id).await {
            Ok(attached) => self.drive(&docker, &container, attached, &ctx, (body, false), timeout).await,
            Err(error) => Err(error.into()),
        };
        container.remove().await;
        if self.inner.config.warm_containers > 0 {
            self.refill(def, &image);
        }
        outcome
    }
}

impl Executor for DockerExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Docker
    }

    fn availability(&self) -> BoxFuture<Availability> {
        let this = self.clone();
        Box::pin(async move { DockerExecutor::availability(&this).await })
    }

    /// Removes the containers an earlier, crashed process of this app left
    /// behind, then starts the warm containers.
    fn start(&self) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            match this.remove_leftovers().await {
                Ok(0) => {}
                Ok(n) => tracing::info!("taskflow engine: removed {n} containers left behind by an earlier process"),
                // No Docker here is normal: its runs fail with the reason.
                Err(error) => tracing::debug!(%error, "taskflow engine: not looking for leftover containers"),
            }
            if let Err(error) = this.warm_up().await {
                tracing::warn!(%error, "taskflow engine: cannot start the warm containers ahead of their runs");
            }
        })
    }

    /// Removes the warm containers.
    fn shutdown(&self) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move { this.remove_warm().await })
    }

    fn execute(
        &self,
        def: &'static TaskDef,
        ctx: TaskContext,
        payload: Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<TaskResult> {
        let this = self.clone();
        Box::pin(async move { DockerExecutor::execute(&this, def, ctx, payload, timeout).await })
    }
}
