//! Runs each run in a fresh, hardened container of its task's own worker
//! image, on the Docker engine (feature `docker`).
//!
//! The image `taskflow-<app>/<title>:<hash>` is built on first use from the
//! app binary alone ([`super::image`]): on the app's layer image
//! `taskflow-<app>:<hash>` (`FROM scratch`: the binary, its libraries, a
//! passwd, `/tmp`) or on the task's local `image`, with the entry point
//! `__run <title>`, labelled with app, task and hash.
//! It is found again by its tag (so neither a second run nor a restart
//! rebuilds it); a binary with another hash gets a new image, and the images
//! of the app's older binaries are removed.
//!
//! A container gets no network unless the task asks (`network = true`), a
//! read-only root with a small `/tmp` tmpfs, no capabilities,
//! `no-new-privileges`, user 65534, memory (swap included), CPU and pids
//! limits, and only the environment the task declares. Its standard output
//! carries the result frame, its standard error the log lines, streamed
//! into the run's log as they come. A timeout or cancel kills it; every
//! container is removed, and containers left behind by an earlier process
//! of this app (a crash) are removed when the engine starts.
//!
//! With a warm pool (`warm_containers` > 0) each Docker task keeps that
//! many containers created, attached and started ahead, their worker
//! waiting on standard input: a run takes one and writes it an envelope
//! (run id, attempt, payload; [`frame::Envelope`]) instead of creating
//! a container. Each serves one run and is removed like any other; the
//! pool is refilled behind it, and containers idle past `warm_idle` are
//! removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{
    AttachContainerOptions, Config, KillContainerOptions, ListContainersOptions, LogOutput, RemoveContainerOptions,
    StartContainerOptions, WaitContainerOptions,
};
use bollard::image::{BuildImageOptions, ListImagesOptions, RemoveImageOptions};
use bollard::models::HostConfig;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, OnceCell};

use super::frame::{self, LineSplitter};
use super::image::{self, BinaryInputs};
use super::process::{MAX_LOG_LINE, short, telling};
use super::warm_pool::WarmPool;
use super::{Availability, Error};
use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::task::context::TaskContext;
use crate::task::registry::{ExecutorKind, TaskDef, TaskResult};

/// The socket tried when neither the configuration nor `DOCKER_HOST` names
/// one.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long a request to the engine may take (a build, a create); waiting
/// for a container has no such limit, only the run's timeout.
const REQUEST_TIMEOUT_SECS: u64 = 600;

/// One image preparation at a time in this process: two first runs of a
/// task build once, the second finding the image the first built.
static BUILDING: Mutex<()> = Mutex::const_new(());

/// How long [`DockerExecutor::availability`] waits for the engine.
const AVAILABILITY_WAIT: Duration = Duration::from_secs(5);

/// How long output is still read after the container ended: a hang guard.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Settings of a [`DockerExecutor`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerExecutorConfig {
    /// The engine's address: `unix:///path/docker.sock` or `tcp://host:2375`.
    /// `None`: `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub host: Option<String>,
    /// The binary put into images; `None` is this binary.
    pub program: Option<PathBuf>,
    /// The app's name in image names and labels; `None` is the binary's
    /// file name.
    pub app: Option<String>,
    /// More labels for every image and container (tests mark theirs).
    pub labels: Vec<(String, String)>,
    /// The memory limit of tasks without a `memory` option, in bytes
    /// (default 512 MiB).
    pub default_memory_bytes: u64,
    /// The CPU limit of tasks without a `cpus` option, in billionths of a CPU
    /// (default 1 CPU).
    pub default_nano_cpus: u64,
    /// The process limit of tasks without a `pids` option (default 128).
    pub default_pids: u32,
    /// The size of each container's `/tmp` tmpfs, in bytes (default 64 MiB).
    pub tmp_bytes: u64,
    /// The largest result frame accepted, in bytes (default 16 MiB).
    pub max_result_bytes: usize,
    /// How many containers each Docker task keeps started ahead, waiting for
    /// a run (default 0: every run creates its container).
    pub warm_containers: usize,
    /// How long a warm container may wait for a run before it is removed
    /// (default 5 minutes).
    pub warm_idle: Duration,
}

impl Default for DockerExecutorConfig {
    fn default() -> Self {
        DockerExecutorConfig {
            host: None,
            program: None,
            app: None,
            labels: Vec::new(),
            default_memory_bytes: 512 * 1024 * 1024,
            default_nano_cpus: 1_000_000_000,
            default_pids: 128,
            tmp_bytes: 64 * 1024 * 1024,
            max_result_bytes: 16 * 1024 * 1024,
            warm_containers: 0,
            warm_idle: Duration::from_secs(300),
        }
    }
}

/// A task's worker image, as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerImage {
    /// `taskflow-<app>/<title>:<hash>`.
    pub tag: String,
    /// The engine's id of the image.
    pub id: String,
    /// The binary's hash in the tag.
    pub hash: String,
    /// Whether this call built it (`false`: it was there already).
    pub built: bool,
}

/// Executes runs in containers. Cheap to clone; clones share the
/// connection and the image cache.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DockerExecutorConfig,
    /// The connection, once one succeeded (a failure is tried again next
    /// time: the daemon may come up).
    docker: OnceCell<Docker>,
    /// The binary's inputs, read once.
    inputs: OnceCell<BinaryInputs>,
    /// This process's mark on its containers: `<host>/<pid>/<start>`, the
    /// same for every executor of the process.
    owner: String,
    /// Containers started ahead, per task, keyed by image tag.
    warm: std::sync::Mutex<WarmPool<Warm>>,
    /// Whether the task removing idle warm containers runs.
    reaping: std::sync::atomic::AtomicBool,
}

/// A container started ahead: attached, its worker waiting for an envelope.
struct Warm {
    container: ContainerGuard,
    attached: bollard::container::AttachContainerResults,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm").field("container", &self.container.id).finish_non_exhaustive()
    }
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

    fn program(&self) -> Result<PathBuf, Error> {
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

    async fn check(&self) -> Availability {
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

    fn unreachable(&self, error: &bollard::errors::Error) -> Error {
        Error::DockerUnavailable { endpoint: self.endpoint(), message: error.to_string() }
    }

    /// The connection, made (and the version negotiated) on first use.
    async fn connect(&self) -> Result<&Docker, Error> {
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

    /// Connects and removes the containers earlier processes of this app
    /// left behind (a crash, a kill): those of a process of this host that
    /// is gone.
    ///
    /// # Errors
    /// When the engine cannot be reached or listed.
    pub async fn remove_leftovers(&self) -> Result<usize, Error> {
        let docker = self.connect().await?;
        let app = self.app()?;
        let filters = HashMap::from([("label".to_owned(), vec![format!("taskflow.app={app}")])]);
        let options = ListContainersOptions { all: true, filters, ..Default::default() };
        let containers = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| Error::Docker { doing: "listing containers".to_owned(), message: e.to_string() })?;
        let mut removed = 0;
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let Some(owner) = labels.get("taskflow.owner") else { continue };
            if owner == &self.inner.owner || !owner_is_gone(owner) {
                continue;
            }
            if let Some(id) = container.id {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                if docker.remove_container(&id, Some(options)).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The image of `def`'s task for this binary: found by its tag, or built
    /// (and the app's images of other binaries removed).
    ///
    /// # Errors
    /// When the engine is unreachable, the base image is missing, or the
    /// build fails.
    pub async fn image_for(&self, def: &'static TaskDef) -> Result<WorkerImage, Error> {
        let docker = self.connect().await?;
        let program = self.program()?;
        // This process's own bytes, even after a deploy replaced the file.
        let source = match &self.inner.config.program {
            None if Path::new("/proc/self/exe").exists() => PathBuf::from("/proc/self/exe"),
            _ => program.clone(),
        };
        let inputs = self.inner.inputs.get_or_try_init(|| BinaryInputs::of(&program, &source)).await?;
        let app = self.app()?;
        let tag =
            format!("taskflow-{}/{}:{}", image::name_component(&app), image::name_component(def.title()), inputs.hash);
        // Found without waiting for another task's build; looked for again
        // under the lock, which a build of this very image may have held.
        if let Ok(found) = docker.inspect_image(&tag).await {
            return Ok(WorkerImage { tag, id: found.id.unwrap_or_default(), hash: inputs.hash.clone(), built: false });
        }
        let _building = BUILDING.lock().await;
        if let Ok(found) = docker.inspect_image(&tag).await {
            return Ok(WorkerImage { tag, id: found.id.unwrap_or_default(), hash: inputs.hash.clone(), built: false });
        }
        let base = def.options().container.image;
        let title = def.title().to_owned();
        let mut labels: HashMap<String, String> = self.inner.config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), app.clone());
        labels.insert("taskflow.task".to_owned(), def.title().to_owned());
        labels.insert("taskflow.hash".to_owned(), inputs.hash.clone());
        let id = match base {
            Some(base) => {
                if docker.inspect_image(base).await.is_err() {
                    return Err(Error::BaseImageMissing { image: base.to_owned(), title });
                }
                let inputs = inputs.clone();
                build(docker, &tag, labels, move |label_line| {
                    image::build_context(&inputs, &title, Some(base), label_line)
                })
                .await?
            }
            None => {
                let layer = self.layer(docker, inputs, &app).await?;
                let entrypoint = image::entrypoint(inputs, &title, false);
                build(docker, &tag, labels, move |label_line| image::entry_context(&layer, &entrypoint, label_line))
                    .await?
            }
        };
        self.prune(docker, &app, &inputs.hash).await;
        Ok(WorkerImage { tag, id, hash: inputs.hash.clone(), built: true })
    }

    /// The app's layer image `taskflow-<app>:<hash>`: the binary, its
    /// libraries, `/etc/passwd`, `/tmp`, the user; no entry point. Each
    /// task's image adds only its entry point on top, so the binary is sent
    /// and stored once per build of it, not once per task. Called under the
    /// build lock.
    async fn layer(&self, docker: &Docker, inputs: &BinaryInputs, app: &str) -> Result<String, Error> {
        let tag = format!("taskflow-{}:{}", image::name_component(app), inputs.hash);
        if docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let mut labels: HashMap<String, String> = self.inner.config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), app.to_owned());
        labels.insert("taskflow.hash".to_owned(), inputs.hash.clone());
        let inputs = inputs.clone();
        build(docker, &tag, labels, move |label_line| image::build_context(&inputs, "", None, label_line)).await?;
        Ok(tag)
    }

    /// Removes the images of this app built from other binaries; an image
    /// still in use stays (best effort).
    async fn prune(&self, docker: &Docker, app: &str, hash: &str) {
        let filters = HashMap::from([("label".to_owned(), vec![format!("taskflow.app={app}")])]);
        let options = ListImagesOptions { filters, ..Default::default() };
        let Ok(mut images) = docker.list_images(Some(options)).await else { return };
        // Task images first: a layer image with children cannot go.
        images.sort_by_key(|image| !image.labels.contains_key("taskflow.task"));
        for image in images {
            if image.labels.get("taskflow.hash").is_some_and(|h| h != hash) {
                for tag in image.repo_tags.iter().filter(|t| t.as_str() != "<none>:<none>") {
                    let _ = docker.remove_image(tag, Some(RemoveImageOptions::default()), None).await;
                }
                let _ = docker.remove_image(&image.id, Some(RemoveImageOptions::default()), None).await;
            }
        }
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

    /// A warm container of `def` that still runs, if the pool has one: one
    /// that died while waiting (killed, the engine restarted) is removed
    /// rather than handed a run, which would fail for nothing and spend an
    /// attempt.
    async fn take_live(&self, docker: &Docker, def: &'static TaskDef, image: &WorkerImage) -> Option<Warm> {
        loop {
            let (warm, stale) = self.lock_warm().take(def.title(), &image.tag);
            drop(stale);
            let warm = warm?;
            let running = docker
                .inspect_container(&warm.container.id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|state| state.running)
                .unwrap_or(false);
            if running {
                return Some(warm);
            }
            tracing::warn!(container = %warm.container.id, task = def.title(), "taskflow docker executor: a warm container died while waiting; not using it");
            tokio::spawn(warm.container.remove());
        }
    }

    /// How many containers of `task` wait started ahead.
    pub fn warm_ready(&self, task: &str) -> usize {
        self.lock_warm().ready(task)
    }

    /// Starts the warm containers of every Docker task linked in (building
    /// their images first), so the first runs find them ready. Does nothing
    /// without a warm pool.
    ///
    /// # Errors
    /// When the engine is unreachable or an image cannot be built.
    pub async fn warm_up(&self) -> Result<(), Error> {
        if self.inner.config.warm_containers == 0 {
            return Ok(());
        }
        for def in crate::task::registry::tasks().filter(|def| def.options().executor == ExecutorKind::Docker) {
            let image = self.image_for(def).await?;
            self.refill(def, &image);
        }
        Ok(())
    }

    /// Removes every warm container (the engine is stopping).
    pub async fn remove_warm(&self) {
        let drained = self.lock_warm().drain();
        for warm in drained {
            warm.container.remove().await;
        }
    }

    fn lock_warm(&self) -> std::sync::MutexGuard<'_, WarmPool<Warm>> {
        self.inner.warm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts, in the background, the containers that bring `def`'s pool
    /// back to its size.
    fn refill(&self, def: &'static TaskDef, image: &WorkerImage) {
        let missing = self.lock_warm().reserve(def.title(), &image.tag, self.inner.config.warm_containers);
        for _ in 0..missing {
            let (executor, image) = (self.clone(), image.clone());
            tokio::spawn(async move {
                match executor.start_warm(def, &image).await {
                    Ok(warm) => {
                        let unwanted = executor.lock_warm().put(def.title(), &image.tag, warm, Instant::now());
                        if let Some(unwanted) = unwanted {
                            unwanted.container.remove().await;
                        }
                    }
                    Err(error) => {
                        executor.lock_warm().give_up(def.title(), &image.tag);
                        tracing::warn!(%error, task = def.title(), "taskflow docker executor: starting a warm container failed");
                    }
                }
            });
        }
        if missing > 0 && !self.inner.reaping.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::spawn(reap_idle(Arc::downgrade(&self.inner)));
        }
    }

    async fn start_warm(&self, def: &'static TaskDef, image: &WorkerImage) -> Result<Warm, Error> {
        let docker = self.connect().await?.clone();
        let container = self.create_container(&docker, def, None, image).await?;
        let attached = attach_and_start(&docker, &container.id).await?;
        Ok(Warm { container, attached })
    }

    async fn create_container(
        &self,
        docker: &Docker,
        def: &'static TaskDef,
        ctx: Option<&TaskContext>,
        image: &WorkerImage,
    ) -> Result<ContainerGuard, Error> {
        let config = &self.inner.config;
        let options = def.options().container;
        let memory = options.memory_bytes.unwrap_or(config.default_memory_bytes);
        let memory = i64::try_from(memory).unwrap_or(i64::MAX);
        // A warm container learns its run from the envelope on its stdin.
        let mut env = match ctx {
            Some(ctx) => {
                vec![format!("TASKFLOW_RUN_ID={}", ctx.run_id()), format!("TASKFLOW_ATTEMPT={}", ctx.attempt())]
            }
            None => vec![format!("{}=1", frame::ENVELOPE_ENV)],
        };
        for name in options.env {
            if let Ok(value) = std::env::var(name) {
                env.push(format!("{name}={value}"));
            }
        }
        let mut labels: HashMap<String, String> = config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), self.app()?);
        labels.insert("taskflow.task".to_owned(), def.title().to_owned());
        match ctx {
            Some(ctx) => {
                labels.insert("taskflow.run".to_owned(), ctx.run_id().to_owned());
                labels.insert("taskflow.attempt".to_owned(), ctx.attempt().to_string());
            }
            None => {
                labels.insert("taskflow.warm".to_owned(), "true".to_owned());
            }
        }
        labels.insert("taskflow.owner".to_owned(), self.inner.owner.clone());
        let host_config = HostConfig {
            network_mode: Some(if options.network { "bridge" } else { "none" }.to_owned()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,size={},mode=1777", config.tmp_bytes),
            )])),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            privileged: Some(false),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(i64::try_from(options.nano_cpus.unwrap_or(config.default_nano_cpus)).unwrap_or(i64::MAX)),
            pids_limit: Some(i64::from(options.pids.unwrap_or(config.default_pids))),
            ..Default::default()
        };
        let container_config = Config {
            image: Some(image.tag.clone()),
            user: Some(image::USER.to_owned()),
            env: Some(env),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(!options.network),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = docker
            .create_container::<String, String>(None, container_config)
            .await
            .map_err(|e| Error::Docker { doing: "creating the container".to_owned(), message: e.to_string() })?;
        Ok(ContainerGuard { docker: docker.clone(), id: created.id, armed: true, memory: memory as u64 })
    }

    /// Writes `body` (an [`frame::Envelope`] when `enveloped`) to the
    /// attached, started `container`, streams its output into the run and
    /// waits for its end: the run's outcome.
    async fn drive(
        &self,
        docker: &Docker,
        container: &ContainerGuard,
        attached: bollard::container::AttachContainerResults,
        ctx: &TaskContext,
        (body, enveloped): (Vec<u8>, bool),
        timeout: Option<Duration>,
    ) -> TaskResult {
        let id = container.id.as_str();
        let unbounded = unbounded(docker);
        let mut input = attached.input;
        // Closing our half of the connection closes the container's stdin
        // (`stdin_once`); a worker that exits early makes these fail, which
        // its exit explains.
        // Written beside the wait, so a worker that does not read cannot
        // stall the run past its timeout.
        let writer = tokio::spawn(async move {
            let _ = input.write_all(&body).await;
            let _ = input.flush().await;
            let _ = input.shutdown().await;
        });

        let cap = self.inner.config.max_result_bytes;
        let log_ctx = ctx.clone();
        let mut output = attached.output;
        let mut reader = tokio::spawn(async move {
            let mut stdout = Vec::new();
            let mut splitter = LineSplitter::new(MAX_LOG_LINE);
            let mut last = None;
            let ended = std::sync::atomic::AtomicBool::new(false);
            let mut forward = |line: &[u8]| {
                if enveloped && line == frame::END_LINE.as_bytes() {
                    ended.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                frame::forward_stderr_line(&log_ctx, line);
                if telling(line) {
                    last = Some(short(line));
                }
            };
            let mut too_large = false;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        if stdout.len() + message.len() > cap {
                            too_large = true;
                            break;
                        }
                        stdout.extend_from_slice(&message);
                    }
                    Ok(LogOutput::StdErr { message } | LogOutput::Console { message }) => {
                        splitter.push(&message, &mut forward);
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(_) => break,
                }
                // A worker given an envelope says when its output is
                // complete: the frame, then the end line after every log
                // line. No need to wait for the engine to close the stream.
                if ended.load(std::sync::atomic::Ordering::Relaxed) && stdout.contains(&b'\n') {
                    break;
                }
            }
            splitter.finish(&mut forward);
            (if too_large { None } else { Some(stdout) }, last)
        });

        let mut wait = unbounded.wait_container(id, None::<WaitContainerOptions<String>>);
        let deadline = Deadline::within(timeout).reached();
        tokio::pin!(deadline);
        let mut read: Option<(Option<Vec<u8>>, Option<String>)> = None;
        let end = loop {
            tokio::select! {
                waited = wait.next() => break match waited {
                    Some(Ok(response)) => End::Exited(response.status_code),
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => End::Exited(code),
                    Some(Err(error)) => End::Failed(Error::Docker { doing: "waiting for the container".to_owned(), message: error.to_string() }),
                    None => End::Failed(Error::Docker { doing: "waiting for the container".to_owned(), message: "the engine ended the wait without a status".to_owned() }),
                },
                joined = &mut reader, if read.is_none() => {
                    let joined = joined.unwrap_or((Some(Vec::new()), None));
                    match &joined.0 {
                        None => break End::TooLarge,
                        // The frame is the outcome: no need to wait for the
                        // engine to see the container exit.
                        Some(stdout) if !stdout.iter().all(u8::is_ascii_whitespace) => {
                            writer.abort();
                            return frame::decode_frame(stdout)?;
                        }
                        Some(_) => read = Some(joined),
                    }
                }
                () = &mut deadline => break End::TimedOut,
                () = ctx.cancelled() => break End::Cancelled,
            }
        };
        writer.abort();
        let code = match end {
            End::Exited(code) => code,
            other => {
                let options = KillContainerOptions { signal: "SIGKILL".to_owned() };
                let _ = docker.kill_container(id, Some(options)).await;
                reader.abort();
                return Err(match other {
                    End::TooLarge => Error::ResultTooLarge { limit: cap }.into(),
                    End::TimedOut => TaskError::TimedOut { after: timeout.unwrap_or_default() },
                    End::Failed(error) => error.into(),
                    _ => TaskError::Cancelled,
                });
            }
        };
        let (stdout, last_output) = match read {
            Some(read) => read,
            None => match tokio::time::timeout(DRAIN_GRACE, &mut reader).await {
                Ok(joined) => joined.unwrap_or((Some(Vec::new()), None)),
                Err(_) => {
                    reader.abort();
                    (Some(Vec::new()), None)
                }
            },
        };
        let Some(stdout) = stdout else {
            return Err(Error::ResultTooLarge { limit: cap }.into());
        };
        if !stdout.iter().all(u8::is_ascii_whitespace) {
            return frame::decode_frame(&stdout)?;
        }
        let oom_killed = docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        if oom_killed {
            return Err(Error::OutOfMemory { limit: format_bytes(container.memory) }.into());
        }
        let how = match code {
            // SIGKILL from inside the container, the flag unset: most often
            // the kernel's OOM killer, but the task may have exited so itself.
            137 => format!(
                "exited with code 137 (killed by SIGKILL; if it used its memory limit of {}, raise the task's `memory` option)",
                format_bytes(container.memory)
            ),
            code if code > 128 && code < 160 => {
                super::describe_exit(None, Some(i32::try_from(code - 128).unwrap_or_default()))
            }
            code => format!("exited with code {code}"),
        };
        Err(Error::Crashed { how, last_output }.into())
    }
}

/// The engine without a request timeout: waiting and streaming last as
/// long as the run (whose own [`Deadline`] bounds them). bollard takes a
/// `Duration`, not an `Option`, so "none" is spelled as a century.
fn unbounded(docker: &Docker) -> Docker {
    const NO_REQUEST_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);
    docker.clone().with_timeout(NO_REQUEST_TIMEOUT)
}

/// Attaches to the created container `id` (before it starts, so no output
/// is missed) and starts it.
async fn attach_and_start(docker: &Docker, id: &str) -> Result<bollard::container::AttachContainerResults, Error> {
    let docker_error = |doing: &str| {
        let doing = doing.to_owned();
        move |e: bollard::errors::Error| Error::Docker { doing, message: e.to_string() }
    };
    let attach = AttachContainerOptions::<String> {
        stdin: Some(true),
        stdout: Some(true),
        stderr: Some(true),
        stream: Some(true),
        logs: Some(false),
        ..Default::default()
    };
    let attached = unbounded(docker)
        .attach_container(id, Some(attach))
        .await
        .map_err(docker_error("attaching to the container"))?;
    docker
        .start_container(id, None::<StartContainerOptions<String>>)
        .await
        .map_err(docker_error("starting the container"))?;
    Ok(attached)
}

/// Removes warm containers idle past the pool's limit, until the executor
/// is dropped.
async fn reap_idle(inner: Weak<Inner>) {
    loop {
        let every = match inner.upgrade() {
            Some(inner) => (inner.config.warm_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let idle = inner.config.warm_idle;
        let reaped = inner.warm.lock().unwrap_or_else(PoisonError::into_inner).reap(idle, Instant::now());
        drop(inner);
        for warm in reaped {
            warm.container.remove().await;
        }
    }
}

/// Builds the context `make` writes (given the `LABEL` line) as `tag` with
/// `labels`; the image's id.
///
/// The engine's classic builder makes a container per step and does not
/// always remove them all, so every step container of this build is
/// removed afterwards, whatever happened: those carrying the build's own
/// label `taskflow.build=<id>` (the steps after the `LABEL` line), and the
/// `LABEL` step's, whose command names that id.
async fn build<F>(docker: &Docker, tag: &str, mut labels: HashMap<String, String>, make: F) -> Result<String, Error>
where
    F: FnOnce(&str) -> Result<Vec<u8>, Error> + Send + 'static,
{
    use std::hash::{BuildHasher, Hasher};
    let build_id = format!("{:016x}", std::collections::hash_map::RandomState::new().build_hasher().finish());
    labels.insert("taskflow.build".to_owned(), build_id.clone());
    let label_line = image::label_line(&labels);
    let context = tokio::task::spawn_blocking(move || make(&label_line))
        .await
        .map_err(|e| Error::Assembly { message: e.to_string() })??;
    let built = build_labelled(docker, tag, context).await;
    let filters = HashMap::from([("status".to_owned(), vec!["created".to_owned()])]);
    let options = ListContainersOptions { all: true, filters, ..Default::default() };
    if let Ok(containers) = docker.list_containers(Some(options)).await {
        let ours = |c: &bollard::models::ContainerSummary| {
            c.labels.as_ref().and_then(|l| l.get("taskflow.build")).is_some_and(|b| *b == build_id)
                || c.command.as_ref().is_some_and(|command| command.contains(&build_id))
        };
        for id in containers.iter().filter(|c| ours(c)).filter_map(|c| c.id.clone()) {
            let options = RemoveContainerOptions { force: true, ..Default::default() };
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
    built
}

async fn build_labelled(docker: &Docker, tag: &str, context: Vec<u8>) -> Result<String, Error> {
    let failed = |message: String| Error::ImageBuild { tag: tag.to_owned(), message };
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_owned(),
        t: tag.to_owned(),
        rm: true,
        forcerm: true,
        pull: false,
        networkmode: "none".to_owned(),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(context.into()));
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(error) = info.error {
                    return Err(failed(error.trim().to_owned()));
                }
                if let Some(line) = info.stream.filter(|s| !s.trim().is_empty()) {
                    last = line.trim().to_owned();
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(error)),
            Err(error) => return Err(failed(error.to_string())),
        }
    }
    let found = docker.inspect_image(tag).await.map_err(|e| failed(format!("{e} (last output: {last})")))?;
    Ok(found.id.unwrap_or_default())
}

/// How a wait for a container ended.
enum End {
    Exited(i64),
    Failed(Error),
    TooLarge,
    TimedOut,
    Cancelled,
}

/// A created container, removed when the run is over; if the run's future
/// is dropped first, removed in the background.
#[derive(Debug)]
struct ContainerGuard {
    docker: Docker,
    id: String,
    armed: bool,
    /// Its memory limit in bytes, for an out-of-memory message.
    memory: u64,
}

impl ContainerGuard {
    async fn remove(mut self) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(error) = self.docker.remove_container(&self.id, Some(options)).await {
            tracing::warn!(%error, container = %self.id, "taskflow docker executor: removing a container failed");
        }
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let id = std::mem::take(&mut self.id);
            runtime.spawn(async move {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                let _ = docker.remove_container(&id, Some(options)).await;
            });
        }
    }
}

/// `268435456` → `256 MiB`.
fn format_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= 1024 * MIB && bytes % (1024 * MIB) == 0 {
        format!("{} GiB", bytes / (1024 * MIB))
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether the process that marked a container (`<host>/<pid>/<start>`) is
/// gone: a process of this host that no longer runs, or an earlier one with
/// this process's pid (a restarted container's PID 1). Containers of other
/// hosts are never touched.
fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.splitn(3, '/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return false };
    if host != hostname() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid == std::process::id() => true,
        Ok(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// This process's mark, the same for all its executors:
/// `<host>/<pid>/<start ms>`.
fn process_owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| format!("{}/{}/{}", hostname(), std::process::id(), crate::run::Timestamp::now().millis()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_options() {
        assert_eq!(format_bytes(256 * 1024 * 1024), "256 MiB");
        assert_eq!(format_bytes(2 * 1024 * 1024 * 1024), "2 GiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }

    #[test]
    fn only_gone_owners_of_this_host_are_gone() {
        assert!(!owner_is_gone("another-host/1/0"));
        assert!(!owner_is_gone(&format!("{}/1/0", hostname())), "pid 1 runs");
        assert!(owner_is_gone(&format!("{}/{}/0", hostname(), std::process::id())));
        assert!(!owner_is_gone("garbage"));
    }
}
